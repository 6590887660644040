"""V-EMO: EMOv2 in three dimensions for video (the authors' unreleased ``EMO2_3D``).

Rebuilt from the authors' training log (its parameter names and shapes): the EMOv2 network
with every conv gaining a temporal kernel dimension equal to its spatial one (3x3x3 stem,
1x1x1 projections, 5x5x5 depth-wise convs), BatchNorm3d in stages 1-2, channel LayerNorm in
stages 3-4, spanning window attention over (t, h, w) windows (2, 5, 5), LayerScale and a
final LayerNorm. Parameter names are the 2-D checkpoint's, so 2-D weights inflate into it.

Choices the log does not show, stated here: temporal strides are 1 everywhere by default
(a 4-frame clip keeps 4 time steps; ``temporal_strides`` changes that), and 2-D kernels are
inflated by placing them at the temporal centre (``inflate='center'``, default) or by
spreading them evenly (``inflate='mean'``, I3D-style).
"""
import functools
from typing import Dict, Mapping, Sequence, Union

import torch

from ...registry import MODELS
from .base import I2RMBBackbone

INFLATE_MODES = ('center', 'mean')


def check_inflate_mode(mode: str) -> str:
    if mode not in INFLATE_MODES:
        raise ValueError(f"inflate must be 'center' or 'mean', got {mode!r}.")
    return mode


def inflate_2d_state(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                     mode: str = 'center') -> Dict[str, torch.Tensor]:
    """Inflates a 2-D EMO state dict to the 3-D shapes of ``own``.

    A conv kernel ``[O, I, kh, kw]`` becomes ``[O, I, kt, kh, kw]``: with ``'center'`` the
    2-D kernel sits at the middle time step and the others are zero, so a clip of
    identical frames gives the 2-D features at every time step (whatever the temporal
    zero padding); with ``'mean'`` every time step holds ``kernel / kt``, which gives the
    same only where the temporal kernel does not reach the zero padding. LayerScale
    gammas gain a singleton axis; norms are unchanged. Tensors already 3-D pass through.
    """
    check_inflate_mode(mode)
    out = {}
    for key, value in state.items():
        target = own.get(key)
        if target is None or value.dim() == target.dim() or value.dim() + 1 != target.dim():
            out[key] = value
            continue
        if key.endswith('ls.gamma'):
            out[key] = value.unsqueeze(-1)
            continue
        kt = target.shape[2]
        if tuple(target.shape[:2]) + tuple(target.shape[3:]) != tuple(value.shape):
            out[key] = value  # wrong variant: the shape check of load_pretrained reports it
            continue
        if mode == 'center':
            inflated = value.new_zeros(target.shape)
            inflated[:, :, kt // 2] = value
        else:
            inflated = value.unsqueeze(2).expand(target.shape) / kt
        out[key] = inflated.contiguous()
    return out


@MODELS.register_module()
class VEMO(I2RMBBackbone):
    """V-EMO backbone for clips (N, C, T, H, W).

    Takes every argument of :class:`~emo_mm.models.EMOv2` with video defaults:
    ``window_size=(2, 5, 5)`` (t, h, w), ``out_indices=-1``, ``final_norm=True`` and
    ``return_tuple=False`` (one tensor, as mmaction2's heads expect), plus

    Args:
        global_pool (bool): Average the final map over (t, h, w) and return (N, C), the
            input mmaction2's ``UniFormerHead`` takes (the authors' Kinetics model). False
            returns the (N, C, T, H, W) map (for heads that pool, such as ``I3DHead``).
            Needs a single output and ``return_tuple=False``. Defaults to True.
        temporal_strides (Sequence[int]): Temporal stride of the stem and of each stage's
            first block (spatial strides are 2). Defaults to all 1.
        inflate (str): How 2-D checkpoints loaded through ``init_cfg`` are inflated:
            ``'center'`` or ``'mean'``, see :func:`inflate_2d_state`.
        num_frames (int, optional): Clip length the model is configured for; other
            lengths are rejected (the data checks of ``tools/train.py`` compare it with
            the pipeline). None accepts any length (shorter than the temporal window
            or not a multiple of it: padded). Defaults to None.

    Example:
        >>> import torch
        >>> from emo_mm.models import VEMO
        >>> model = VEMO('5M', global_pool=False).eval()
        >>> tuple(model(torch.rand(1, 3, 4, 160, 160)).shape)
        (1, 288, 4, 5, 5)
    """

    spatial_dims = 3
    head_prefixes = ('head.', )

    def __init__(self,
                 arch: Union[str, dict] = '5M',
                 window_size: Sequence[int] = (2, 5, 5),
                 out_indices=-1,
                 final_norm: bool = True,
                 return_tuple: bool = False,
                 temporal_strides: Sequence[int] = (1, 1, 1, 1, 1),
                 inflate: str = 'center',
                 global_pool: bool = True,
                 num_frames: int = None,
                 in_channels: int = 3,
                 **kwargs):
        super().__init__(arch, window_size=window_size, out_indices=out_indices,
                         final_norm=final_norm, return_tuple=return_tuple,
                         in_channels=in_channels, **kwargs)
        if len(temporal_strides) != self.num_stages + 1 or not all(
                isinstance(s, int) and s >= 1 for s in temporal_strides):
            raise ValueError(f'temporal_strides needs {self.num_stages + 1} positive ints '
                             f'(stem and each stage), got {tuple(temporal_strides)}.')
        if global_pool and return_tuple:
            raise ValueError('global_pool returns one (N, C) tensor: set return_tuple=False.')
        self.temporal_strides = tuple(temporal_strides)
        self.inflate = check_inflate_mode(inflate)
        self.global_pool = global_pool
        self.num_frames = num_frames
        self.build_stages()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_frames and x.dim() == 5 and x.shape[2] != self.num_frames:
            raise ValueError(f'VEMO is configured for {self.num_frames}-frame clips '
                             f'(num_frames), got {x.shape[2]} frames; sample clip_len='
                             f'{self.num_frames} in the pipeline or change num_frames.')
        out = super().forward(x)
        return out.mean(dim=(2, 3, 4)) if self.global_pool else out

    def downsample_stride(self, stage: int):
        return (self.temporal_strides[stage], 2, 2)

    def check_window_size(self, window_size):
        # Clips have far fewer frames than pixels per side: one length for all three axes
        # is almost surely a mistake.
        if not isinstance(window_size, Sequence) or len(window_size) != 3:
            raise ValueError(f'window_size must be (t, h, w), got {window_size!r}.')
        return super().check_window_size(window_size)

    def checkpoint_drop_prefixes(self):
        return self.head_prefixes

    def convert_checkpoint(self):
        """2-D checkpoints are inflated (3-D ones pass through unchanged)."""
        return functools.partial(inflate_2d_state, mode=self.inflate)
