"""The base every EMO backbone stands on, and the i2RMB network EMOv2 and V-EMO share.

:class:`EMOBackbone` owns everything that is not architecture: arch resolution and
validation, ``out_indices`` / ``frozen_stages`` / ``norm_eval``, input checks, the stage
loop of ``forward``, memory format, checkpoint loading through ``init_cfg`` and deploy mode.
A subclass declares ``arch_settings`` (and what its arch dicts may hold), implements
:meth:`~EMOBackbone.make_stem` and :meth:`~EMOBackbone.make_block`, and builds its network
with :meth:`~EMOBackbone.build_stages` at the end of its ``__init__``, after it has set
what those two need.

:class:`I2RMBBackbone` is the EMOv2 network (stem + stages of i2RMBs) for 2-D images and
3-D clips; ``EMOv2`` and ``VEMO`` are its registered, declarative faces.
"""
import warnings
from numbers import Integral
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch import resolve_arch
from ..attention import MIXERS
from ..blocks import I2RMB
from ..layers import ChannelLayerNorm, ConvNormAct, DeployMixin
from ..weights import load_pretrained_from_init_cfg

NORMS = ('bn', 'ln')
ACTS = ('silu', 'gelu', 'relu')


def resolve_init_cfg(init_cfg: Optional[dict], pretrained: Optional[str]) -> Optional[dict]:
    """``init_cfg``, or the deprecated ``pretrained=PATH`` turned into one."""
    if pretrained is None:
        return init_cfg
    if init_cfg is not None:
        raise ValueError('Give either init_cfg or the deprecated pretrained, not both.')
    warnings.warn('pretrained=PATH is deprecated; use init_cfg=dict(type="Pretrained", '
                  'checkpoint=PATH).', DeprecationWarning, stacklevel=4)
    return dict(type='Pretrained', checkpoint=pretrained)


class EMOBackbone(DeployMixin, BaseModule):
    """What every EMO backbone shares (see the module docstring).

    Every argument but ``arch`` has a default, so a variant states only what differs.

    Args:
        arch (str | dict): A name of ``arch_settings`` or a dict with ``required_keys``
            and any of ``common`` / ``optional_keys``.
        in_channels (int): Input channels.
        window_size (int | Sequence[int]): Attention window per spatial axis (<= 0: the
            whole axis).
        out_indices (int | Sequence[int]): 0 is the stem, 1..N the stages; negatives
            count from the end.
        frozen_stages (int): Freeze the stem and stages 1..k; -1 freezes nothing.
        norm_eval (bool): Keep every BatchNorm in eval mode during training.
        drop_path_rate (float): Stochastic depth, linearly increasing over all blocks.
        final_norm (bool): LayerNorm on the last stage's output (classifier).
        channels_last (bool): Run in channels-last memory format.
        return_tuple (bool): Return a tuple even for one output.
        pretrained (str, optional): Deprecated, use ``init_cfg``.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` and
            optionally ``prefix`` and ``weights_only``.

    Attributes:
        out_channels (list[int]): Channels of the outputs ``forward`` returns, in the order
            of ``out_indices`` (what a neck's ``in_channels`` must list).
        stage_channels (list[int]): Channels of the stem and of every stage (output
            indices 0..N), whatever ``out_indices``.
    """

    arch_settings: Dict[str, dict] = {}
    #: Keys an arch dict must give, keys it may give (besides those of ``common``).
    required_keys: Sequence[str] = ('depths', 'embed_dims', 'exp_ratios', 'dim_heads')
    optional_keys: Sequence[str] = ()
    #: Per-stage settings every variant shares unless an arch dict overrides them.
    common: dict = {}
    #: Parts of a classifier checkpoint that a backbone without them drops on purpose.
    head_prefixes = ('norm.', 'head.')
    spatial_dims = 2

    def __init__(self,
                 arch: Union[str, dict],
                 in_channels: int = 3,
                 window_size: Union[int, Sequence[int]] = 7,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.,
                 final_norm: bool = False,
                 channels_last: bool = True,
                 return_tuple: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=resolve_init_cfg(init_cfg, pretrained))
        self.arch = self.resolve_arch(arch)
        self.num_stages = len(self.arch['depths'])
        if not isinstance(in_channels, Integral) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int (RGB images: 3), got '
                             f'{in_channels!r}.')
        self.in_channels = int(in_channels)
        self.window_size = self.check_window_size(window_size)
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        self.drop_path_rate = drop_path_rate
        self.out_indices = self.normalize_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {self.num_stages}] (-1: '
                             f'none, k: stem and stages 1..k), got {frozen_stages!r}.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if not return_tuple and len(self.out_indices) != 1:
            raise ValueError('return_tuple=False returns a single tensor, so out_indices must '
                             f'name one output, got {self.out_indices}.')
        self.return_tuple = return_tuple
        if final_norm and self.num_stages not in self.out_indices:
            raise ValueError(f'final_norm normalises the last stage; out_indices '
                             f'{self.out_indices} must include {self.num_stages} (or -1).')
        self.final_norm = final_norm
        self.channels_last = channels_last
        self.embed_dims = list(self.arch['embed_dims'])

    # ----------------------------------------------------------------------------------
    # Arch settings.
    # ----------------------------------------------------------------------------------
    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """Returns the full, validated setting dict for ``arch`` (a name or a dict)."""
        setting = resolve_arch(cls.__name__, arch, cls.arch_settings, cls.common,
                               cls.required_keys, cls.optional_keys)
        if not isinstance(arch, str):
            cls.validate_arch(setting)
        return setting

    @classmethod
    def validate_arch(cls, setting: dict) -> None:
        """Checks an arch dict; subclasses add their own keys' checks."""
        num_stages = len(setting['depths'])
        for key, value in setting.items():
            if isinstance(value, (list, tuple)) and len(value) != num_stages:
                raise ValueError(f'arch[{key!r}] has {len(value)} entries but there are '
                                 f'{num_stages} stages (len(depths)).')
        for key in ('depths', 'embed_dims', 'dim_heads'):
            if key in setting and not all(isinstance(v, int) and v > 0 for v in setting[key]):
                raise ValueError(f'arch[{key!r}] must hold positive ints, got {setting[key]}.')
        if not all(float(v) > 0 for v in setting['exp_ratios']):
            raise ValueError(f"arch['exp_ratios'] must be positive, got {setting['exp_ratios']}.")
        for key, choices in (('norms', NORMS), ('acts', ACTS)):
            for i, value in enumerate(setting.get(key, ())):
                if value not in choices:
                    raise ValueError(f'arch {key}[{i}] = {value!r}; choose one of {choices}.')

    def check_window_size(self, window_size) -> Tuple[int, ...]:
        """One window length per spatial axis (an int applies to all)."""
        values = window_size if isinstance(window_size, Sequence) else (window_size, )
        if (not all(isinstance(v, Integral) for v in values)
                or len(values) not in (1, self.spatial_dims)):
            axes = 'an int or (h, w)' if self.spatial_dims == 2 else 'an int or (t, h, w)'
            raise ValueError(f'window_size must be {axes} of whole numbers (<= 0: the whole '
                             f'axis), got {window_size!r}.')
        values = tuple(int(v) for v in values)
        return values * self.spatial_dims if len(values) == 1 else values

    def normalize_out_indices(self, out_indices) -> Tuple[int, ...]:
        num_outputs = self.num_stages + 1  # stem + stages
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise TypeError(f'out_indices must be an int or a non-empty sequence, got '
                            f'{out_indices!r}.')
        indices = []
        for index in out_indices:
            if not isinstance(index, int) or not -num_outputs <= index < num_outputs:
                raise ValueError(f'out_indices entry {index!r} is out of range: 0 is the stem, '
                                 f'1..{self.num_stages} the stages (negatives count from the '
                                 f'end, down to {-num_outputs}).')
            indices.append(index % num_outputs)
        if len(set(indices)) != len(indices):
            raise ValueError(f'out_indices {tuple(out_indices)} name an output twice.')
        return tuple(indices)

    # ----------------------------------------------------------------------------------
    # Building.
    # ----------------------------------------------------------------------------------
    @property
    def stem_channels(self) -> int:
        return self.arch['stem_channels']

    def make_stem(self) -> nn.Module:
        """The stem (``stage0``), in_channels -> stem_channels, stride 2."""
        raise NotImplementedError

    def make_block(self, stage: int, first: bool, in_channels: int, out_channels: int,
                   drop_path: float) -> nn.Module:
        """Block of stage ``stage`` (0-based); ``first`` blocks downsample."""
        raise NotImplementedError

    def downsample_stride(self, stage: int):
        """Stride of the stem (stage 0) or of a stage's first block."""
        return 2

    def build_stages(self) -> None:
        """Builds ``stage0 .. stageN`` (and the final norm); call at the end of __init__."""
        # Channels of every output (stem, stages), and of those forward returns, in order.
        self.stage_channels = [self.stem_channels] + self.embed_dims
        self.out_channels = [self.stage_channels[i] for i in self.out_indices]
        self.stage0 = self.make_stem()
        rates = iter(np.linspace(0, self.drop_path_rate, sum(self.arch['depths'])).tolist())
        in_dim = self.stem_channels
        for i, depth in enumerate(self.arch['depths']):
            blocks = []
            for j in range(depth):
                blocks.append(self.make_block(i, j == 0, in_dim, self.embed_dims[i], next(rates)))
                in_dim = self.embed_dims[i]
            self.add_module(f'stage{i + 1}', nn.Sequential(*blocks))
        if self.final_norm:
            self.norm = ChannelLayerNorm(self.embed_dims[-1])
        if self.channels_last:
            # Conv weights stored channels-last make every conv run (and output) so.
            self.to(memory_format=self.memory_format)
        self._freeze_stages()

    @property
    def stages(self):
        return [getattr(self, f'stage{i}') for i in range(self.num_stages + 1)]

    def set_channels_last(self, enabled: bool) -> None:
        """Switches the memory format the stages run in (weights included)."""
        self.channels_last = bool(enabled)
        self.to(memory_format=self.memory_format)

    @property
    def memory_format(self):
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last if self.spatial_dims == 2 else torch.channels_last_3d

    # ----------------------------------------------------------------------------------
    # Running.
    # ----------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        expected = 2 + self.spatial_dims
        layout = 'NCHW' if self.spatial_dims == 2 else 'NCTHW'
        if not isinstance(x, torch.Tensor) or x.dim() != expected or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'{type(self).__name__} expects {layout} input with '
                             f'{self.in_channels} channels, got {shape}. Set in_channels to '
                             f'match the data (RGB images: 3).')
        if not x.is_floating_point():
            raise TypeError(f'{type(self).__name__} expects floating-point input, got '
                            f'{x.dtype}: convert and normalise it first (x.float(), or a '
                            f'data preprocessor with mean/std).')
        weight = next(self.parameters(), None)
        if (weight is not None and x.dtype != weight.dtype
                and not torch.is_autocast_enabled(x.device.type)):
            raise TypeError(f'{type(self).__name__} has {weight.dtype} weights but got '
                            f'{x.dtype} input: use x.to({weight.dtype}) or model.to({x.dtype}).')

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        x = x.contiguous(memory_format=self.memory_format)
        outs = {}
        # Stages after the deepest requested output are not run.
        for index, stage in enumerate(self.stages[:max(self.out_indices) + 1]):
            x = stage(x)
            if index in self.out_indices:
                if index == self.num_stages and self.final_norm:
                    x = self.norm(x)
                outs[index] = x
        # Outputs leave in the standard layout: some consumers (mmcv's RoIAlign on CPU)
        # read raw NCHW memory.
        outs = tuple(outs[i].contiguous() for i in self.out_indices)
        return outs if self.return_tuple else outs[0]

    # ----------------------------------------------------------------------------------
    # Training state.
    # ----------------------------------------------------------------------------------
    def _freeze_stages(self) -> None:
        frozen = self.stages[:self.frozen_stages + 1]
        if self.frozen_stages == self.num_stages and self.final_norm:
            frozen.append(self.norm)
        for stage in frozen:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)  # DeployMixin refuses training a deployed model
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ----------------------------------------------------------------------------------
    # Checkpoints.
    # ----------------------------------------------------------------------------------
    def checkpoint_drop_prefixes(self) -> Sequence[str]:
        """Checkpoint keys this backbone lacks on purpose (dropped with an info line)."""
        return () if self.final_norm else self.head_prefixes

    def convert_checkpoint(self) -> Optional[Callable]:
        """``convert(state, own_state) -> state`` applied before loading, or None."""
        return None

    def init_weights(self) -> None:
        """Default init (PyTorch's, as the authors'), or a checkpoint via ``init_cfg``.

        ``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=None)`` (optionally
        ``weights_only=False`` for a trusted full training checkpoint) loads with
        :func:`emo_mm.models.weights.load_pretrained`: container formats unwrapped,
        shapes checked, every skipped key reported.
        """
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        load_pretrained_from_init_cfg(self, cfg, drop_prefixes=self.checkpoint_drop_prefixes(),
                                      convert=self.convert_checkpoint())
        self._is_init = True


#: Settings every i2RMB network shares per stage; an ``arch`` dict may override them.
I2RMB_COMMON = dict(
    norms=('bn', 'bn', 'ln', 'ln'),
    acts=('silu', 'silu', 'gelu', 'gelu'),
    mixers=('conv', 'conv', 'spanning', 'spanning'),
    dw_kernels=(5, 5, 5, 5),
)


class I2RMBBackbone(EMOBackbone):
    """The EMOv2 network: a 3-conv stem and four stages of i2RMBs (2-D or 3-D).

    The first block of every stage downsamples with a 1x1-conv mixer and twice the
    stage's expansion ratio; the others use the stage's mixer. See ``EMOv2`` for the
    arguments.
    """

    arch_settings = {
        '1M': dict(depths=[2, 2, 8, 3], embed_dims=[32, 48, 80, 180],
                   exp_ratios=[2., 2.5, 3., 3.5], dim_heads=[16, 16, 20, 20]),
        '2M': dict(depths=[3, 3, 9, 3], embed_dims=[32, 48, 120, 200],
                   exp_ratios=[2., 2.5, 3., 3.5], dim_heads=[16, 16, 20, 20]),
        '5M': dict(depths=[3, 3, 9, 3], embed_dims=[48, 72, 160, 288],
                   exp_ratios=[2., 3., 4., 4.], dim_heads=[16, 24, 32, 32]),
        '20M': dict(depths=[3, 3, 13, 3], embed_dims=[64, 128, 320, 448],
                    exp_ratios=[2., 3., 4., 4.], dim_heads=[16, 32, 32, 32]),
        '50M': dict(depths=[5, 8, 20, 7], embed_dims=[64, 128, 384, 512],
                    exp_ratios=[2., 3., 4., 4.], dim_heads=[16, 32, 32, 32]),
    }
    common = I2RMB_COMMON
    optional_keys = ('stem_channels', )

    @classmethod
    def validate_arch(cls, setting: dict) -> None:
        super().validate_arch(setting)
        for i, mixer in enumerate(setting['mixers']):
            if mixer not in MIXERS:
                raise ValueError(f'arch mixers[{i}] = {mixer!r}; choose from {sorted(MIXERS)}.')
            if mixer != 'conv' and setting['embed_dims'][i] % setting['dim_heads'][i]:
                raise ValueError(f'arch embed_dims[{i}] = {setting["embed_dims"][i]} is not a '
                                 f'multiple of dim_heads[{i}] = {setting["dim_heads"][i]}.')

    def __init__(self,
                 arch: Union[str, dict],
                 local_norm: str = 'bn',
                 layer_scale: float = 1e-6,
                 qkv_bias: bool = True,
                 attn_drop_rate: float = 0.,
                 fused_attn: Optional[bool] = None,
                 **kwargs):
        super().__init__(arch, **kwargs)
        if local_norm not in NORMS:
            raise ValueError(f"local_norm must be 'bn' or 'ln', got {local_norm!r}.")
        self.local_norm = local_norm
        self.layer_scale = layer_scale
        self.qkv_bias = qkv_bias
        self.attn_drop_rate = attn_drop_rate
        self.fused_attn = fused_attn

    @property
    def stem_channels(self) -> int:
        return self.arch.get('stem_channels', self.embed_dims[0] // 2)

    def make_stem(self) -> nn.Module:
        stem, dims = self.stem_channels, dict(spatial_dims=self.spatial_dims)
        return nn.Sequential(
            ConvNormAct(self.in_channels, stem, 3, self.downsample_stride(0), bias=True,
                        norm='bn', act='silu', **dims),
            ConvNormAct(stem, stem, 3, 1, groups=stem, norm='bn', act='silu', **dims),
            ConvNormAct(stem, stem, 1, **dims))

    def make_block(self, stage, first, in_channels, out_channels, drop_path):
        arch = self.arch
        return I2RMB(
            in_channels, out_channels,
            exp_ratio=arch['exp_ratios'][stage] * (2 if first else 1),
            norm=arch['norms'][stage],
            act=arch['acts'][stage],
            mixer='conv' if first else arch['mixers'][stage],
            dw_kernel=arch['dw_kernels'][stage],
            stride=self.downsample_stride(stage + 1) if first else 1,
            dim_head=arch['dim_heads'][stage],
            window_size=self.window_size,
            local_norm=self.local_norm,
            local_act='silu' if self.local_norm == 'bn' else 'gelu',
            qkv_bias=self.qkv_bias,
            layer_scale=self.layer_scale,
            drop_path=drop_path,
            attn_drop=self.attn_drop_rate,
            fused_attn=self.fused_attn,
            spatial_dims=self.spatial_dims)
