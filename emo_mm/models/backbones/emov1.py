"""EMOv1: the iRMB backbone family (EMO-1M, 2M, 5M, 6M).

Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models", ICCV 2023.
Layout and names are the authors' (``stage0`` = patch embedding + an SE stem block,
``stage1..stage4`` of iRMBs), so their ImageNet checkpoints load as they are.
"""
from typing import Optional, Sequence, Union

import torch.nn as nn

from ...registry import MODELS
from ...utils.deprecation import warn_renamed
from ..blocks import IRMB
from ..layers import build_norm
from .base import EMOBackbone

EMOV1_COMMON = dict(
    norms=('bn', 'bn', 'ln', 'ln'),
    acts=('silu', 'silu', 'gelu', 'gelu'),
    dw_kernels=(3, 3, 5, 5),
    attentions=(False, False, True, True),
    stem_channels=24,
)


class ConvStem(nn.Module):
    """EMOv1's stem convolution (the authors' single-scale ``MSPatchEmb``): 3x3 stride-2
    conv with bias, then BatchNorm (keys ``convs.0.0.*`` and ``convs.0.1.*``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=True),
                build_norm('bn', out_channels), nn.Identity())
        ])

    def forward(self, x):
        return self.convs[0](x)


@MODELS.register_module()
class EMO(EMOBackbone):
    """EMOv1 backbone.

    A PyTorch implementation of `Rethinking Mobile Block for Efficient Attention-based
    Models <https://arxiv.org/abs/2301.01146>`_, built from iRMBs with strided window
    attention. Weights are interchangeable with the authors' release. The backbone API is
    :class:`~emo_mm.models.EMOv2`'s.

    Args:
        arch (str | dict): ``'1M'``, ``'2M'``, ``'5M'``, ``'6M'`` or a dict with the
            per-stage lists ``depths``, ``embed_dims``, ``exp_ratios``, ``dim_heads`` and
            optionally ``norms``, ``acts``, ``dw_kernels``, ``attentions`` (bool per stage)
            and ``stem_channels`` (default 24). Defaults to ``'5M'``.
        in_channels (int): Input channels. Defaults to 3.
        window_size (int): Attention window (<= 0: global). 7 for ImageNet and for the
            authors' 1M / 2M downstream configs; 5M used 10 (detection) and 16
            (segmentation). Defaults to 7.
        out_indices, frozen_stages, norm_eval, drop_path_rate, final_norm, qkv_bias,
        attn_drop_rate, fused_attn, channels_last, return_tuple, pretrained, init_cfg:
            as in :class:`~emo_mm.models.EMOv2`.
    """

    arch_settings = {
        '1M': dict(depths=[2, 2, 8, 3], embed_dims=[32, 48, 80, 168],
                   exp_ratios=[2., 2.5, 3., 3.5], dim_heads=[16, 16, 20, 21]),
        '2M': dict(depths=[3, 3, 9, 3], embed_dims=[32, 48, 120, 200],
                   exp_ratios=[2., 2.5, 3., 3.5], dim_heads=[16, 16, 20, 20]),
        '5M': dict(depths=[3, 3, 9, 3], embed_dims=[48, 72, 160, 288],
                   exp_ratios=[2., 3., 4., 4.], dim_heads=[24, 24, 32, 32]),
        '6M': dict(depths=[3, 3, 9, 3], embed_dims=[48, 72, 160, 320],
                   exp_ratios=[2., 3., 4., 5.], dim_heads=[16, 24, 20, 32]),
    }
    common = EMOV1_COMMON

    @classmethod
    def validate_arch(cls, setting):
        super().validate_arch(setting)
        for i, (attn, dim, head) in enumerate(
                zip(setting['attentions'], setting['embed_dims'], setting['dim_heads'])):
            if attn and dim % head:
                raise ValueError(f'arch embed_dims[{i}] = {dim} is not a multiple of '
                                 f'dim_heads[{i}] = {head}.')

    def __init__(self,
                 arch: Union[str, dict] = '5M',
                 in_channels: int = 3,
                 window_size: int = 7,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.,
                 final_norm: bool = False,
                 qkv_bias: bool = True,
                 attn_drop_rate: float = 0.,
                 fused_attn: Optional[bool] = None,
                 channels_last: bool = True,
                 return_tuple: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            arch, in_channels=in_channels, window_size=window_size, out_indices=out_indices,
            frozen_stages=frozen_stages, norm_eval=norm_eval, drop_path_rate=drop_path_rate,
            final_norm=final_norm, channels_last=channels_last, return_tuple=return_tuple,
            pretrained=pretrained, init_cfg=init_cfg)
        self.qkv_bias = qkv_bias
        self.attn_drop_rate = attn_drop_rate
        self.fused_attn = fused_attn
        self.build_stages()

    def make_stem(self) -> nn.Module:
        # The stem convolution, then an iRMB without norm, v or shortcut, with a squeeze-excite
        # of ratio 1.
        stem = self.stem_channels
        return nn.Sequential(
            ConvStem(self.in_channels, stem),
            IRMB(stem, stem, 1., norm='none', act=self.arch['acts'][0], attention=False,
                 dw_kernel=self.arch['dw_kernels'][0], v_proj=False, se_ratio=1., skip=False,
                 qkv_bias=self.qkv_bias))

    def make_block(self, stage, first, in_channels, out_channels, drop_path):
        arch = self.arch
        return IRMB(
            in_channels, out_channels,
            exp_ratio=arch['exp_ratios'][stage] * (2 if first else 1),
            norm=arch['norms'][stage],
            act=arch['acts'][stage],
            attention=arch['attentions'][stage] and not first,
            dw_kernel=arch['dw_kernels'][stage],
            stride=self.downsample_stride(stage + 1) if first else 1,
            dim_head=arch['dim_heads'][stage],
            window_size=self.window_size,
            qkv_bias=self.qkv_bias,
            drop_path=drop_path,
            attn_drop=self.attn_drop_rate,
            fused_attn=self.fused_attn)


def __getattr__(name):
    if name == 'PatchEmbed':  # the deprecated name of ConvStem, kept for one release
        warn_renamed(f'{__name__}.PatchEmbed', f'{__name__}.ConvStem')
        return ConvStem
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
