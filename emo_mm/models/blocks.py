"""The Meta-Mobile Block and its two instances, EMOv2's i2RMB and EMOv1's iRMB.

Both papers build every stage from one inverted-residual skeleton::

    x -> norm -> token mixer (C_in -> C_mid) -> depth-wise conv (+ inner residual)
      -> 1x1 projection (C_mid -> C_out) -> [LayerScale] -> (+ shortcut)

:class:`MetaMobileBlock` holds that skeleton once. What differs stays explicit in the
subclasses: :class:`I2RMB` mixes tokens with a 1x1 conv or with window attention that
computes ``v`` *before* attending (strided, contiguous or both: the spanning attention),
and scales its output with LayerScale; EMOv1's :class:`IRMB` attends over the normalised
input with strided windows only and projects ``v`` *after* attention, may carry a
squeeze-excite, and has no LayerScale. Both attend through
:func:`emo_mm.models.attention.window_attention`.

Module attribute names are the authors' state-dict names (``norm``, ``eops.0.qk``,
``conv_local``, ``proj``, ``ls``, ...), so their checkpoints load without conversion.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .attention import MIXERS, WindowAttention, check_heads, fold_attention_scale, window_attention
from .layers import (ConvNormAct, DropPath, LayerScale, SqueezeExcite, build_norm,
                     fold_batch_norm_into_next, fold_output_scale)


class PointwiseMixer(nn.Module):
    """1x1 conv + bias + activation, C_in -> C_mid (the i2RMB "Conv" operator; key ``net``)."""

    def __init__(self, in_channels: int, mid_channels: int, act: str, bias: bool = True,
                 spatial_dims: int = 2):
        super().__init__()
        self.net = ConvNormAct(in_channels, mid_channels, 1, bias=bias, act=act,
                               spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MetaMobileBlock(nn.Module):
    """The inverted-residual skeleton shared by iRMB and i2RMB.

    Subclasses build, in state-dict order, ``norm``, their token mixer, then through
    :meth:`_build_tail` ``conv_local``, ``se``, ``proj`` and ``drop_path``, and ``ls``;
    and implement :meth:`mix`. The shortcut and the inner residual around the depth-wise
    conv exist only when ``C_in == C_out`` and the stride is 1.
    """

    has_skip: bool

    def _build_tail(self,
                    in_channels: int,
                    mid_channels: int,
                    out_channels: int,
                    *,
                    dw_kernel,
                    stride,
                    local_norm: str,
                    local_act: str,
                    drop_path: float,
                    proj_drop: float,
                    spatial_dims: int,
                    allow_skip: bool = True,
                    se: Optional[nn.Module] = None) -> None:
        strides = stride if isinstance(stride, Sequence) else (stride, ) * spatial_dims
        self.has_skip = (allow_skip and in_channels == out_channels
                         and all(s == 1 for s in strides))
        self.conv_local = ConvNormAct(
            mid_channels, mid_channels, dw_kernel, stride, groups=mid_channels,
            norm=local_norm, act=local_act, spatial_dims=spatial_dims)
        self.se = se if se is not None else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)
        self.proj = ConvNormAct(mid_channels, out_channels, 1, spatial_dims=spatial_dims)
        # Stochastic depth only ever applies to the shortcut branch.
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path else nn.Identity()

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Token mixing of the normalised input, C_in -> C_mid."""
        raise NotImplementedError

    def pointwise_mixer_conv(self) -> Optional[nn.Module]:
        """The mixer's 1x1 conv when mixing is just that conv (no attention), else None."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.mix(self.norm(x))
        local = self.se(self.conv_local(x))
        x = x + local if self.has_skip else local
        x = self.ls(self.proj(self.proj_drop(x)))
        return shortcut + self.drop_path(x) if self.has_skip else x

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Folds the block's eval-mode affine layers into its convs (exact, in place).

        BatchNorm after the depth-wise conv goes into that conv; LayerScale into ``proj``;
        a BatchNorm pre-norm into the mixer's 1x1 conv when the mixer is that conv alone
        (attention pads its input, where a folded shift would differ from zeros); the
        attention scale into the q projection.
        """
        self.conv_local.switch_to_deploy()
        for module in self.modules():
            if isinstance(module, WindowAttention):
                module.switch_to_deploy()
        if isinstance(self.ls, LayerScale):
            fold_output_scale(self.proj.conv, self.ls.gamma)
            self.ls = nn.Identity()
        mixer = self.pointwise_mixer_conv()
        if mixer is not None and isinstance(self.norm, _BatchNorm):
            owner, name = mixer
            setattr(owner, name, fold_batch_norm_into_next(self.norm, getattr(owner, name)))
            self.norm = nn.Identity()
        self.drop_path = nn.Identity()
        self.proj_drop = nn.Identity()


class I2RMB(MetaMobileBlock):
    """EMOv2's improved Inverted Residual Mobile Block (i2RMB, authors' ``iiRMB``).

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out.
        exp_ratio (float): C_mid = int(C_in * exp_ratio) (relative to the *input*).
        norm (str): Pre-norm, ``'bn'`` or ``'ln'``.
        act (str): Activation of the token mixer (``'silu'`` / ``'gelu'``).
        mixer (str): One of :data:`~emo_mm.models.attention.MIXERS`.
        dw_kernel (int | tuple): Depth-wise conv kernel. Defaults to 5.
        stride (int | tuple): Stride of the depth-wise conv. Defaults to 1.
        dim_head (int): q/k channels per head (attention mixers). Defaults to 32.
        window_size (int | tuple): Window length(s) (attention mixers). Defaults to 10.
        local_norm (str): Norm of the depth-wise conv. ``'bn'`` in the classifier and
            detection backbones, ``'ln'`` in the authors' segmentation file / U-EMO.
        local_act (str): Its activation (``'silu'``; ``'gelu'`` with ``local_norm='ln'``).
        qkv_bias (bool): Bias in the mixer's 1x1 convs. Defaults to True.
        layer_scale (float): Initial LayerScale gamma. Defaults to 1e-6.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Dropout before ``proj``. Defaults to 0.
        fused_attn (bool, optional): Attention path, see
            :func:`emo_mm.models.attention.attention`. Defaults to None (automatic).
        spatial_dims (int): 2 for images, 3 for clips. Defaults to 2.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 exp_ratio: float,
                 norm: str,
                 act: str,
                 mixer: str,
                 dw_kernel=5,
                 stride=1,
                 dim_head: int = 32,
                 window_size=10,
                 local_norm: str = 'bn',
                 local_act: str = 'silu',
                 qkv_bias: bool = True,
                 layer_scale: float = 1e-6,
                 drop_path: float = 0.,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 fused_attn: Optional[bool] = None,
                 spatial_dims: int = 2):
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f'Unknown token mixer {mixer!r}; choose from {sorted(MIXERS)}.')
        mid_channels = int(in_channels * exp_ratio)
        self.norm = build_norm(norm, in_channels, spatial_dims)
        if mixer == 'conv':
            op = PointwiseMixer(in_channels, mid_channels, act=act, bias=qkv_bias,
                                spatial_dims=spatial_dims)
        else:
            windows = (window_size if isinstance(window_size, Sequence) else
                       (window_size, ) * spatial_dims)
            op = WindowAttention(in_channels, mid_channels, dim_head=dim_head,
                                 window_size=windows, partitions=MIXERS[mixer], act=act,
                                 qkv_bias=qkv_bias, attn_drop=attn_drop, fused_attn=fused_attn,
                                 spatial_dims=spatial_dims)
        # A list because the authors' block can sum several operators; theirs always
        # hold one, and the name keeps their checkpoints' keys (``eops.0.*``).
        self.eops = nn.ModuleList([op])
        self._build_tail(in_channels, mid_channels, out_channels, dw_kernel=dw_kernel,
                         stride=stride, local_norm=local_norm, local_act=local_act,
                         drop_path=drop_path, proj_drop=proj_drop, spatial_dims=spatial_dims)
        self.ls = LayerScale(out_channels, layer_scale, spatial_dims)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.eops[0](x)

    def pointwise_mixer_conv(self):
        op = self.eops[0]
        return (op.net, 'conv') if isinstance(op, PointwiseMixer) else None


class IRMB(MetaMobileBlock):
    """EMOv1's Inverted Residual Mobile Block (iRMB).

    Attention blocks attend with strided (dilated) windows over the *normalised input*
    itself (heads of ``dim_head`` channels of C_in; q/k from ``qk``) and project the result
    with ``v`` (1x1 + bias + act, C_in -> C_mid) *after* attention; other blocks just apply
    ``v``. The depth-wise conv always uses BatchNorm + SiLU; an optional squeeze-excite
    follows it; there is no LayerScale. State-dict names are the authors' (``qk``, ``v``,
    ``conv_local``, ``se``, ``proj`` directly on the block).

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out.
        exp_ratio (float): C_mid = int(C_in * exp_ratio).
        norm (str): Pre-norm: ``'bn'``, ``'ln'`` or ``'none'`` (stem block).
        act (str): Activation of ``v`` (and of the squeeze-excite).
        attention (bool): Window attention before ``v``.
        dw_kernel (int): Depth-wise kernel. Defaults to 3.
        stride (int): Stride of the depth-wise conv. Defaults to 1.
        dim_head (int): Channels per head. Defaults to 32.
        window_size (int | tuple): Window length(s) (<= 0: global). Defaults to 7.
        v_proj (bool): Apply ``v``; False only in the stem block (C_mid = C_in).
        se_ratio (float): Squeeze-excite reduction (0: none).
        skip (bool): Allow the shortcut (it also needs C_in == C_out and stride 1).
        qkv_bias (bool): Bias in ``qk`` and ``v``. Defaults to True.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        fused_attn (bool, optional): Attention path. Defaults to None (automatic).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 exp_ratio: float,
                 norm: str,
                 act: str,
                 attention: bool,
                 dw_kernel: int = 3,
                 stride: int = 1,
                 dim_head: int = 32,
                 window_size: int = 7,
                 v_proj: bool = True,
                 se_ratio: float = 0.,
                 skip: bool = True,
                 qkv_bias: bool = True,
                 drop_path: float = 0.,
                 attn_drop: float = 0.,
                 fused_attn: Optional[bool] = None):
        super().__init__()
        mid_channels = int(in_channels * exp_ratio)
        self.norm = build_norm(norm, in_channels)
        self.attention = attention
        if attention:
            # Values are the input itself (C_in) until v widens them after attention.
            self.num_heads = check_heads(in_channels, in_channels, dim_head)
            self.scale = dim_head**-0.5
            self.window_size = (tuple(window_size) if isinstance(window_size, Sequence) else
                                (window_size, window_size))
            self.qk = ConvNormAct(in_channels, 2 * in_channels, 1, bias=qkv_bias)
            self.attn_drop = nn.Dropout(attn_drop)
            self.fused_attn = fused_attn
        if v_proj or attention:
            self.v = ConvNormAct(in_channels, mid_channels, 1, bias=qkv_bias, act=act)
        else:
            self.v = nn.Identity()
        se = SqueezeExcite(mid_channels, se_ratio, act) if se_ratio > 0 else None
        # EMOv1's depth-wise conv is always BatchNorm + SiLU.
        self._build_tail(in_channels, mid_channels, out_channels, dw_kernel=dw_kernel,
                         stride=stride, local_norm='bn', local_act='silu',
                         drop_path=drop_path, proj_drop=0., spatial_dims=2, allow_skip=skip,
                         se=se)
        self.ls = nn.Identity()

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        if not self.attention:
            return self.v(x)
        return window_attention(x, self.qk, self.v, self.num_heads, self.scale,
                                self.window_size, partitions=MIXERS['strided'],
                                values_first=False, fused=self.fused_attn,
                                attn_drop=self.attn_drop)

    def pointwise_mixer_conv(self):
        if self.attention or not isinstance(self.v, ConvNormAct):
            return None
        return self.v, 'conv'

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        super().switch_to_deploy()
        if self.attention and self.scale != 1.0:
            fold_attention_scale(self.qk, self.scale)
            self.scale = 1.0
