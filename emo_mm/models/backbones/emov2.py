"""EMOv2: the i2RMB backbone family (1M, 2M, 5M, 20M, 50M).

Zhang et al., "EMOv2: Pushing 5M Vision Model Frontier". The module layout and names are
the authors' (``stage0`` stem, ``stage1..stage4`` of i2RMBs, optional final ``norm``), so
their ImageNet checkpoints load as they are.
"""
import copy
import warnings
from typing import Dict, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ...registry import MODELS
from ..blocks import MIXERS, I2RMB, set_fused_attention
from ..checkpoint import load_pretrained
from ..layers import ChannelLayerNorm, ConvNormAct

#: Settings every EMOv2 variant shares (per stage). Any of them may be overridden in an
#: ``arch`` dict.
EMOV2_COMMON = dict(
    norms=('bn', 'bn', 'ln', 'ln'),
    acts=('silu', 'silu', 'gelu', 'gelu'),
    mixers=('conv', 'conv', 'spanning', 'spanning'),
    dw_kernels=(5, 5, 5, 5),
)


class _EMOBackbone(BaseModule):
    """What every EMO backbone shares: arch resolution, out_indices, freezing, norm_eval,
    input checks and pretrained loading. Subclasses build ``stage0 .. stageN``."""

    arch_settings: Dict[str, dict] = {}
    required_keys: Sequence[str] = ()
    common: dict = {}
    #: parts of a classifier checkpoint that a backbone without them drops on purpose
    head_prefixes = ('norm.', 'head.')
    spatial_dims = 2

    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """Returns the full, validated setting dict for ``arch`` (a name or a dict)."""
        if isinstance(arch, str):
            if arch not in cls.arch_settings:
                raise KeyError(f'Unknown {cls.__name__} arch {arch!r}; choose one of '
                               f'{list(cls.arch_settings)} or pass a dict.')
            return {**copy.deepcopy(cls.common), **copy.deepcopy(cls.arch_settings[arch])}
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}.')
        allowed = set(cls.required_keys) | set(cls.common) | set(cls.optional_keys())
        missing = [k for k in cls.required_keys if k not in arch]
        unknown = sorted(set(arch) - allowed)
        if missing or unknown:
            raise ValueError(f'Malformed {cls.__name__} arch dict: missing keys {missing}, '
                             f'unknown keys {unknown}; required {list(cls.required_keys)}, '
                             f'optional {sorted(allowed - set(cls.required_keys))}.')
        setting = {**copy.deepcopy(cls.common), **copy.deepcopy(arch)}
        cls.validate_arch(setting)
        return setting

    @classmethod
    def optional_keys(cls) -> Sequence[str]:
        return ()

    @classmethod
    def validate_arch(cls, setting: dict) -> None:
        num_stages = len(setting['depths'])
        per_stage = [k for k, v in setting.items() if isinstance(v, (list, tuple))]
        for key in per_stage:
            if len(setting[key]) != num_stages:
                raise ValueError(f'arch[{key!r}] has {len(setting[key])} entries but there '
                                 f'are {num_stages} stages (len(depths)).')
        for key in ('depths', 'embed_dims', 'dim_heads'):
            if key in setting and not all(isinstance(v, int) and v > 0 for v in setting[key]):
                raise ValueError(f'arch[{key!r}] must hold positive ints, got {setting[key]}.')
        if not all(float(v) > 0 for v in setting['exp_ratios']):
            raise ValueError(f"arch['exp_ratios'] must be positive, got {setting['exp_ratios']}.")

    def _init_common(self, out_indices, frozen_stages, norm_eval, return_tuple, channels_last,
                     pretrained, init_cfg):
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
        self.out_indices = tuple(indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {self.num_stages}] (-1: '
                             f'none, k: stem and stages 1..k), got {frozen_stages!r}.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if not return_tuple and len(self.out_indices) != 1:
            raise ValueError('return_tuple=False returns a single tensor, so out_indices must '
                             f'name one output, got {self.out_indices}.')
        self.return_tuple = return_tuple
        self.channels_last = channels_last
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('Give either init_cfg or the deprecated pretrained, not both.')
            warnings.warn('pretrained=PATH is deprecated; use init_cfg=dict(type="Pretrained", '
                          'checkpoint=PATH).', DeprecationWarning, stacklevel=3)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        return init_cfg

    @property
    def stages(self):
        return [getattr(self, f'stage{i}') for i in range(self.num_stages + 1)]

    def check_input(self, x: torch.Tensor) -> None:
        expected = 2 + self.spatial_dims
        if x.dim() != expected or x.shape[1] != self.in_channels:
            layout = 'NCHW' if self.spatial_dims == 2 else 'NCTHW'
            raise ValueError(f'{type(self).__name__} expects {layout} input with '
                             f'{self.in_channels} channels, got shape {tuple(x.shape)}. Set '
                             f'in_channels to match the data (RGB images: 3).')

    def downsample_stride(self, stage: int):
        """Stride of the stem (stage 0) or of a stage's first block."""
        return 2

    @property
    def memory_format(self):
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last if self.spatial_dims == 2 else torch.channels_last_3d

    def _to_memory_format(self) -> None:
        """Stores conv weights channels-last, so every conv runs (and outputs) channels-last."""
        if self.channels_last:
            self.to(memory_format=self.memory_format)

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

    def _freeze_stages(self) -> None:
        frozen = self.stages[:self.frozen_stages + 1]
        if self.frozen_stages == self.num_stages and self.final_norm:
            frozen.append(self.norm)
        for stage in frozen:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        """Default init (PyTorch's, as the authors'), or a checkpoint via ``init_cfg``.

        ``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=None)`` (optionally
        ``weights_only=False`` for a trusted full training checkpoint) loads with
        :func:`emo_mm.models.checkpoint.load_pretrained`: container formats unwrapped,
        shapes checked, every skipped key reported.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            drop_prefixes=() if self.final_norm else self.head_prefixes,
                            weights_only=cfg.get('weights_only', True))
            self._is_init = True
            return
        super().init_weights()


@MODELS.register_module()
class EMOv2(_EMOBackbone):
    """EMOv2 backbone.

    A PyTorch implementation of `EMOv2: Pushing 5M Vision Model Frontier
    <https://arxiv.org/abs/2412.06674>`_, built from i2RMB blocks whose spanning window
    attention sums attention over contiguous (near) and strided (far) windows that share
    q/k/v. Weights are interchangeable with the authors' release.

    Args:
        arch (str | dict): ``'1M'``, ``'2M'``, ``'5M'``, ``'20M'``, ``'50M'`` or a dict
            with the per-stage lists

            - depths (list[int]): blocks per stage.
            - embed_dims (list[int]): output channels per stage.
            - exp_ratios (list[float]): expansion of the non-first blocks (first blocks
              use twice the ratio); relative to the block *input* width.
            - dim_heads (list[int]): q/k channels per attention head.

            and optionally ``norms`` (``'bn'``/``'ln'``), ``acts``, ``mixers`` (one of
            ``'conv'``, ``'strided'``, ``'contiguous'``, ``'spanning'``), ``dw_kernels``
            and ``stem_channels`` (default ``embed_dims[0] // 2``). Defaults to ``'5M'``.
        in_channels (int): Input channels. Defaults to 3.
        window_size (int): Attention window length (<= 0: global). 10 in every
            downstream config, 7 for ImageNet at 224, 8 at 256/512. Defaults to 10.
        out_indices (int | Sequence[int]): Outputs to return: 0 is the stem (stride 2),
            1..4 the stages (strides 4..32); negatives count from the end.
            Defaults to (1, 2, 3, 4).
        frozen_stages (int): Freeze the stem and stages 1..k (eval mode, no grad);
            -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, linearly increasing over all blocks.
            Defaults to 0.
        final_norm (bool): Apply the classifier's final LayerNorm to the last stage's
            output (ImageNet classifier). Defaults to False.
        local_norm (str): Norm of the depth-wise conv in every block: ``'bn'`` (with SiLU;
            the ImageNet, detection and reported ADE20K models) or ``'ln'`` (with GELU; the
            authors' segmentation file and U-EMO). Defaults to ``'bn'``.
        layer_scale (float): Initial LayerScale value. Defaults to 1e-6.
        qkv_bias (bool): Bias in q/k/v and the 1x1 mixers. Defaults to True.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        fused_attn (bool): Use torch's ``scaled_dot_product_attention`` where it has a fused
            kernel for the shapes at hand (CUDA; CPU when q/k and v widths agree) and the
            eager path otherwise; both give the same outputs. Defaults to True.
        channels_last (bool): Run in channels-last memory format (faster with oneDNN on
            CPU and cuDNN on GPUs); outputs are returned in the standard contiguous NCHW
            layout either way. Defaults to True.
        return_tuple (bool): Return a tuple even for one output. False returns the tensor
            itself (mmaction2 heads need that). Defaults to True.
        pretrained (str, optional): Deprecated, use ``init_cfg``.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` loads the
            authors' (or emo_mm's) weights. Defaults to None.

    Example:
        >>> import torch
        >>> from emo_mm.models import EMOv2
        >>> model = EMOv2('1M').eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 32, 56, 56)
        (1, 48, 28, 28)
        (1, 80, 14, 14)
        (1, 180, 7, 7)
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
    required_keys = ('depths', 'embed_dims', 'exp_ratios', 'dim_heads')
    common = EMOV2_COMMON

    @classmethod
    def optional_keys(cls):
        return ('stem_channels', )

    @classmethod
    def validate_arch(cls, setting):
        super().validate_arch(setting)
        for i, (mixer, norm, act) in enumerate(
                zip(setting['mixers'], setting['norms'], setting['acts'])):
            if mixer not in MIXERS:
                raise ValueError(f'arch mixers[{i}] = {mixer!r}; choose from {sorted(MIXERS)}.')
            if norm not in ('bn', 'ln'):
                raise ValueError(f"arch norms[{i}] = {norm!r}; choose 'bn' or 'ln'.")
            if act not in ('silu', 'gelu', 'relu'):
                raise ValueError(f"arch acts[{i}] = {act!r}; choose 'silu', 'gelu' or 'relu'.")
            if mixer != 'conv' and setting['embed_dims'][i] % setting['dim_heads'][i]:
                raise ValueError(f'arch embed_dims[{i}] = {setting["embed_dims"][i]} is not a '
                                 f'multiple of dim_heads[{i}] = {setting["dim_heads"][i]}.')

    def __init__(self,
                 arch: Union[str, dict] = '5M',
                 in_channels: int = 3,
                 window_size: int = 10,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.,
                 final_norm: bool = False,
                 local_norm: str = 'bn',
                 layer_scale: float = 1e-6,
                 qkv_bias: bool = True,
                 attn_drop_rate: float = 0.,
                 fused_attn: bool = True,
                 channels_last: bool = True,
                 return_tuple: bool = True,
                 pretrained: str = None,
                 init_cfg: dict = None):
        setting = self.resolve_arch(arch)
        self.num_stages = len(setting['depths'])
        init_cfg = self._init_common(out_indices, frozen_stages, norm_eval, return_tuple,
                                     channels_last, pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg)
        if local_norm not in ('bn', 'ln'):
            raise ValueError(f"local_norm must be 'bn' or 'ln', got {local_norm!r}.")
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        self.arch = setting
        self.in_channels = in_channels
        self.window_size = window_size
        self.final_norm = final_norm
        dims = setting['embed_dims']
        stem = setting.get('stem_channels', dims[0] // 2)
        self.embed_dims = list(dims)
        self.out_channels = [stem] + self.embed_dims

        dims_ = dict(spatial_dims=self.spatial_dims)
        self.stage0 = nn.Sequential(
            ConvNormAct(in_channels, stem, 3, self.downsample_stride(0), bias=True, norm='bn',
                        act='silu', **dims_),
            ConvNormAct(stem, stem, 3, 1, groups=stem, norm='bn', act='silu', **dims_),
            ConvNormAct(stem, stem, 1, **dims_))
        rates = np.linspace(0, drop_path_rate, sum(setting['depths'])).tolist()
        local_act = 'silu' if local_norm == 'bn' else 'gelu'
        in_dim = stem
        for i, depth in enumerate(setting['depths']):
            blocks = []
            for j in range(depth):
                first = j == 0
                blocks.append(
                    I2RMB(
                        in_dim, dims[i],
                        # First blocks downsample with a 1x1-conv mixer and twice the ratio.
                        exp_ratio=setting['exp_ratios'][i] * (2 if first else 1),
                        norm=setting['norms'][i],
                        act=setting['acts'][i],
                        mixer='conv' if first else setting['mixers'][i],
                        dw_kernel=setting['dw_kernels'][i],
                        stride=self.downsample_stride(i + 1) if first else 1,
                        dim_head=setting['dim_heads'][i],
                        window_size=window_size,
                        local_norm=local_norm,
                        local_act=local_act,
                        qkv_bias=qkv_bias,
                        layer_scale=layer_scale,
                        drop_path=rates.pop(0),
                        attn_drop=attn_drop_rate,
                        spatial_dims=self.spatial_dims))
                in_dim = dims[i]
            self.add_module(f'stage{i + 1}', nn.Sequential(*blocks))
        if final_norm:
            if self.num_stages not in self.out_indices:
                raise ValueError(f'final_norm normalises the last stage; out_indices '
                                 f'{self.out_indices} must include {self.num_stages} (or -1).')
            self.norm = ChannelLayerNorm(dims[-1])
        if not fused_attn:
            set_fused_attention(self, False)
        self._to_memory_format()
        self._freeze_stages()
