"""The Meta-Mobile Block and its two instances, EMOv2's i2RMB and EMOv1's iRMB.

Both papers build every stage from one inverted-residual skeleton::

    x -> norm -> token mixer (C_in -> C_mid) -> depth-wise conv (+ inner residual)
      -> 1x1 projection (C_mid -> C_out) -> [LayerScale] -> (+ shortcut)

:class:`MetaMobileBlock` holds that skeleton once. What differs stays explicit in the
subclasses: :class:`I2RMB` mixes tokens with a 1x1 conv or with window attention that
computes ``v`` *before* attending (strided, contiguous or both: the spanning attention),
and scales its output with LayerScale; EMOv1's :class:`IRMB` attends over the normalised
input with strided windows only and projects ``v`` *after* attention, may carry a
squeeze-excite, and has no LayerScale.

Module attribute names are the authors' state-dict names (``norm``, ``eops.0.qk``,
``conv_local``, ``proj``, ``ls``, ...), so their checkpoints load without conversion.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (ConvNormAct, DropPath, LayerScale, SqueezeExcite, attention, build_norm,
                     is_channels_last, map_from_merged, merge_heads, pad_to_windows,
                     partition_heads, window_grid)

#: Token mixers of :class:`I2RMB` (authors' ``hybrid_eops`` selector in brackets).
MIXERS = {
    'conv': (),  # 1x1 conv (0)
    'strided': (True, ),  # EMOv1-style dilated windows (1, "Remote")
    'contiguous': (False, ),  # Swin-style local windows (2, "Close")
    'spanning': (False, True),  # both on shared q/k/v, summed (3, "Hybrid")
}


def _crop(x: torch.Tensor, spatial) -> torch.Tensor:
    """Drops the trailing window padding."""
    if tuple(x.shape[2:]) == tuple(spatial):
        return x
    return x[(Ellipsis, ) + tuple(slice(0, s) for s in spatial)]


def _default_fused() -> bool:
    return hasattr(F, 'scaled_dot_product_attention')


def set_fused_attention(model: nn.Module, enabled: bool) -> None:
    """Switches every attention module of ``model`` between torch's fused
    ``scaled_dot_product_attention`` and the eager reference path."""
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = bool(enabled) and _default_fused()


class PointwiseMixer(nn.Module):
    """1x1 conv + bias + activation, C_in -> C_mid (the i2RMB "Conv" operator; key ``net``)."""

    def __init__(self, in_channels: int, mid_channels: int, act: str, bias: bool = True,
                 spatial_dims: int = 2):
        super().__init__()
        self.net = ConvNormAct(in_channels, mid_channels, 1, bias=bias, act=act,
                               spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with shared q/k/v, values projected first.

    ``q, k`` come from one 1x1 conv (``qk``, C_in -> 2 C_in, head-major channels), ``v``
    from a 1x1 conv + activation (``v``, C_in -> C_mid). The map is zero-padded on the
    trailing side to a multiple of the window; padded tokens are not masked (the authors'
    rule: their q = k = qk bias and v = act(v bias) take part in every softmax). Each
    partition in ``partitions`` (``False`` = contiguous, ``True`` = strided) attends
    independently; the results are summed and cropped.

    The fused path runs the 1x1 convs on the unpadded map and pads their outputs with
    exactly the values the convs give on zero padding; the eager path pads first, as the
    authors do, and is what FLOP counting sees. Both produce the same numbers.

    Args:
        in_channels (int): Input channels C_in (q/k width).
        mid_channels (int): Value / output channels C_mid.
        dim_head (int): Channels per head of q/k; ``C_in // dim_head`` heads.
        window_size (tuple[int]): Window length per spatial axis (<= 0: whole axis).
        partitions (tuple[bool]): Partitions to sum, see :data:`MIXERS`.
        act (str): Activation after ``v``.
        qkv_bias (bool): Bias in ``qk`` and ``v``. Defaults to True.
        attn_drop (float): Dropout on attention weights. Defaults to 0.
        spatial_dims (int): 2 or 3. Defaults to 2.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 dim_head: int,
                 window_size: Sequence[int],
                 partitions: Tuple[bool, ...],
                 act: str,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 spatial_dims: int = 2):
        super().__init__()
        if in_channels % dim_head:
            raise ValueError(f'Attention width {in_channels} is not a multiple of dim_head '
                             f'{dim_head}.')
        self.num_heads = in_channels // dim_head
        if mid_channels % self.num_heads:
            raise ValueError(f'Value width {mid_channels} is not a multiple of the '
                             f'{self.num_heads} heads.')
        self.scale = dim_head**-0.5
        self.window_size = tuple(window_size)
        self.partitions = tuple(partitions)
        self.qk = ConvNormAct(in_channels, 2 * in_channels, 1, bias=qkv_bias,
                              spatial_dims=spatial_dims)
        self.v = ConvNormAct(in_channels, mid_channels, 1, bias=qkv_bias, act=act,
                             spatial_dims=spatial_dims)
        self.attn_drop = nn.Dropout(attn_drop)
        self.fused_attn = _default_fused()

    def _project(self, x: torch.Tensor, windows, lengths):
        """q/k and v on the padded map."""
        if self.fused_attn:
            qk = pad_to_windows(self.qk(x), windows, lengths, self.qk.conv.bias)
            v = pad_to_windows(self.v.conv(x), windows, lengths, self.v.conv.bias)
            return qk, self.v.act(v)
        x = pad_to_windows(x, windows, lengths)
        return self.qk(x), self.v(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, spatial = x.shape[0], x.shape[2:]
        windows, lengths = window_grid(spatial, self.window_size)
        qk, v = self._project(x, windows, lengths)
        q, k = qk.chunk(2, dim=1)
        # Merge back into the memory layout the block runs in, so the residual adds and
        # the depth-wise conv that follow do not mix layouts.
        channels_last = is_channels_last(v)
        out = None
        for strided in self.partitions:
            q_w, k_w, v_w = (partition_heads(t, self.num_heads, windows, lengths, strided)
                             for t in (q, k, v))
            y = attention(q_w, k_w, v_w, self.scale, self.fused_attn, self.attn_drop)
            y = merge_heads(y, B, windows, lengths, strided, channels_last)
            # A later partition is added to the first's (contiguous) map viewed its way.
            out = y.contiguous() if out is None else out.view(y.shape) + y
        out = map_from_merged(out, v.shape[2:], channels_last)
        return _crop(out, spatial)


class MetaMobileBlock(nn.Module):
    """The inverted-residual skeleton shared by iRMB and i2RMB.

    Subclasses build, in state-dict order, ``norm``, their token mixer, then through
    :meth:`_build_tail` ``conv_local``, ``se``, ``proj`` and ``drop_path``, and ``ls``;
    and implement :meth:`mix`. The shortcut and the inner residual around the depth-wise
    conv exist only when ``C_in == C_out`` and the stride is 1.
    """

    has_skip: bool

    def _build_tail(self, in_channels: int, mid_channels: int, out_channels: int,
                    dw_kernel, stride, local_norm: str, local_act: str, drop_path: float,
                    proj_drop: float, spatial_dims: int, allow_skip: bool = True,
                    se: nn.Module = None) -> None:
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.mix(self.norm(x))
        local = self.se(self.conv_local(x))
        x = x + local if self.has_skip else local
        x = self.ls(self.proj(self.proj_drop(x)))
        return shortcut + self.drop_path(x) if self.has_skip else x


class I2RMB(MetaMobileBlock):
    """EMOv2's improved Inverted Residual Mobile Block (i2RMB, authors' ``iiRMB``).

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out.
        exp_ratio (float): C_mid = int(C_in * exp_ratio) (relative to the *input*).
        norm (str): Pre-norm, ``'bn'`` or ``'ln'``.
        act (str): Activation of the token mixer (``'silu'`` / ``'gelu'``).
        mixer (str): One of :data:`MIXERS`.
        dw_kernel (int | tuple): Depth-wise conv kernel.
        stride (int | tuple): Stride of the depth-wise conv.
        dim_head (int): q/k channels per head (attention mixers).
        window_size (int | tuple): Window length(s) (attention mixers).
        local_norm (str): Norm of the depth-wise conv. ``'bn'`` in the classifier and
            detection backbones, ``'ln'`` in the authors' segmentation file / U-EMO.
        local_act (str): Its activation (``'silu'``; ``'gelu'`` with ``local_norm='ln'``).
        qkv_bias (bool): Bias in the mixer's 1x1 convs. Defaults to True.
        layer_scale (float): Initial LayerScale gamma. Defaults to 1e-6.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Dropout before ``proj``. Defaults to 0.
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
                 spatial_dims: int = 2):
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f'Unknown token mixer {mixer!r}; choose from {sorted(MIXERS)}.')
        mid_channels = int(in_channels * exp_ratio)
        self.norm = build_norm(norm, in_channels, spatial_dims)
        if mixer == 'conv':
            op = PointwiseMixer(in_channels, mid_channels, act, qkv_bias, spatial_dims)
        else:
            windows = (window_size if isinstance(window_size, Sequence) else
                       (window_size, ) * spatial_dims)
            op = WindowAttention(in_channels, mid_channels, dim_head, windows, MIXERS[mixer],
                                 act, qkv_bias, attn_drop, spatial_dims)
        # A list because the authors' block can sum several operators; theirs always
        # hold one, and the name keeps their checkpoints' keys (``eops.0.*``).
        self.eops = nn.ModuleList([op])
        self._build_tail(in_channels, mid_channels, out_channels, dw_kernel, stride,
                         local_norm, local_act, drop_path, proj_drop, spatial_dims)
        self.ls = LayerScale(out_channels, layer_scale, spatial_dims)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.eops[0](x)


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
        dw_kernel (int): Depth-wise kernel.
        stride (int): Stride of the depth-wise conv.
        dim_head (int): Channels per head.
        window_size (int): Window length (<= 0: global).
        v_proj (bool): Apply ``v``; False only in the stem block (C_mid = C_in).
        se_ratio (float): Squeeze-excite reduction (0: none).
        skip (bool): Allow the shortcut (it also needs C_in == C_out and stride 1).
        qkv_bias (bool): Bias in ``qk`` and ``v``. Defaults to True.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
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
                 attn_drop: float = 0.):
        super().__init__()
        mid_channels = int(in_channels * exp_ratio)
        self.norm = build_norm(norm, in_channels)
        self.attention = attention
        if attention:
            if in_channels % dim_head:
                raise ValueError(f'Attention width {in_channels} is not a multiple of '
                                 f'dim_head {dim_head}.')
            self.num_heads = in_channels // dim_head
            self.scale = dim_head**-0.5
            self.window_size = (window_size, window_size)
            self.qk = ConvNormAct(in_channels, 2 * in_channels, 1, bias=qkv_bias)
            self.attn_drop = nn.Dropout(attn_drop)
            self.fused_attn = _default_fused()
        if v_proj or attention:
            self.v = ConvNormAct(in_channels, mid_channels, 1, bias=qkv_bias, act=act)
        else:
            self.v = nn.Identity()
        self._build_tail(in_channels, mid_channels, out_channels, dw_kernel, stride, 'bn',
                         'silu', drop_path, 0., 2, allow_skip=skip,
                         se=SqueezeExcite(mid_channels, se_ratio, act) if se_ratio > 0 else None)
        self.ls = nn.Identity()

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        if not self.attention:
            return self.v(x)
        B, spatial = x.shape[0], x.shape[2:]
        windows, lengths = window_grid(spatial, self.window_size)
        if self.fused_attn:  # 1x1 conv on the real tokens, padded with its bias
            qk = pad_to_windows(self.qk(x), windows, lengths, self.qk.conv.bias)
        else:
            qk = self.qk(pad_to_windows(x, windows, lengths))
        values = pad_to_windows(x, windows, lengths)  # padded tokens have zero values
        padded = values.shape[2:]
        q, k = qk.chunk(2, dim=1)
        q, k, values = (partition_heads(t, self.num_heads, windows, lengths, strided=True)
                        for t in (q, k, values))
        y = attention(q, k, values, self.scale, self.fused_attn, self.attn_drop)
        channels_last = is_channels_last(x)
        y = map_from_merged(merge_heads(y, B, windows, lengths, True, channels_last).contiguous(),
                            padded, channels_last)
        if self.fused_attn:  # crop first: v is 1x1, so only the real tokens need it
            return self.v(_crop(y, spatial))
        return _crop(self.v(y), spatial)  # the authors' order (what FLOP counting sees)

