"""Building blocks shared by the EMO family (EMOv1, EMOv2, U-EMO, V-EMO).

Everything here works for 2-D (NCHW) and 3-D (NCTHW) maps: ``spatial_dims`` selects
``Conv2d``/``Conv3d`` and ``BatchNorm2d``/``BatchNorm3d``; window helpers take one window
length per spatial axis.

Attribute names (``conv``, ``norm``, ``gamma``, the ``norm`` child of the channel
LayerNorm) are the authors' state-dict names, so their checkpoints load unchanged.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

#: eps of every norm in the authors' EMO code (``get_norm`` builds all of them with 1e-6).
NORM_EPS = 1e-6

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis (dim 1) of a channels-first map.

    The parameters live in a child called ``norm`` (the authors' ``LayerNorm2d`` /
    ``LayerNorm3d`` layout: keys ``...norm.norm.weight``).

    Args:
        num_channels (int): Number of channels.
        eps (float): Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = NORM_EPS):
        super().__init__()
        self.norm = nn.LayerNorm(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # movedim gives views; layer_norm needs the channel axis last.
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def build_norm(kind: str, num_channels: int, spatial_dims: int = 2) -> nn.Module:
    """Builds a norm layer by the authors' short names.

    Args:
        kind (str): ``'bn'`` (BatchNorm), ``'ln'`` (channel LayerNorm) or ``'none'``.
        num_channels (int): Number of channels.
        spatial_dims (int): 2 for NCHW, 3 for NCTHW maps.
    """
    if kind == 'bn':
        return _BATCH_NORM[spatial_dims](num_channels, eps=NORM_EPS)
    if kind == 'ln':
        return ChannelLayerNorm(num_channels)
    if kind == 'none':
        return nn.Identity()
    raise ValueError(f"Unknown norm {kind!r}; expected 'bn', 'ln' or 'none'.")


def build_act(kind: str) -> nn.Module:
    """Builds an activation by name: ``'silu'``, ``'gelu'`` (exact erf GELU), ``'relu'`` or
    ``'none'``.

    SiLU and ReLU run in place (as the authors'): in every EMO block they follow a conv or
    a norm, whose backward does not need its output, and skipping the allocation of large
    early-stage maps is measurably faster on CPU.
    """
    if kind in ('silu', 'relu'):
        return (nn.SiLU if kind == 'silu' else nn.ReLU)(inplace=True)
    if kind == 'gelu':
        return nn.GELU()
    if kind == 'none':
        return nn.Identity()
    raise ValueError(f"Unknown activation {kind!r}; expected 'silu', 'gelu', 'relu' or 'none'.")


class ConvNormAct(nn.Module):
    """Convolution, then an optional norm, then an optional activation.

    Padding is ``ceil((k - stride) / 2)`` per axis, the authors' rule, so stride-2 layers
    give ``ceil(H / 2)`` outputs for both odd kernels and 1x1.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple): Kernel size (one value or one per axis).
        stride (int | tuple): Stride. Defaults to 1.
        groups (int): Convolution groups. Defaults to 1.
        bias (bool): Whether the convolution has a bias. Defaults to False.
        norm (str): Norm after the conv, see :func:`build_norm`. Defaults to ``'none'``.
        act (str): Activation after the norm, see :func:`build_act`. Defaults to ``'none'``.
        spatial_dims (int): 2 or 3. Defaults to 2.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size=1,
                 stride=1,
                 groups: int = 1,
                 bias: bool = False,
                 norm: str = 'none',
                 act: str = 'none',
                 spatial_dims: int = 2):
        super().__init__()
        kernel_size = _ntuple(kernel_size, spatial_dims)
        stride = _ntuple(stride, spatial_dims)
        padding = tuple(math.ceil((k - s) / 2) for k, s in zip(kernel_size, stride))
        self.conv = _CONV[spatial_dims](
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        self.norm = build_norm(norm, out_channels, spatial_dims)
        self.act = build_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma`` of shape ``(1, C, 1, ...)`` (key ``ls.gamma``).

    Args:
        num_channels (int): Number of channels.
        init_value (float): Initial value of gamma. Defaults to 1e-6.
        spatial_dims (int): 2 or 3. Defaults to 2.
    """

    def __init__(self, num_channels: int, init_value: float = 1e-6, spatial_dims: int = 2):
        super().__init__()
        self.gamma = nn.Parameter(
            torch.full((1, num_channels) + (1, ) * spatial_dims, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with rate 0).

    Args:
        drop_prob (float): Probability of dropping the residual branch.
    """

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1. - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def _ntuple(value, n: int) -> Tuple[int, ...]:
    if isinstance(value, Sequence):
        if len(value) != n:
            raise ValueError(f'Expected {n} values, got {tuple(value)}.')
        return tuple(int(v) for v in value)
    return (int(value), ) * n


# ---------------------------------------------------------------------------------------
# Window partitions.
#
# A padded map of size S_d = n_d * w_d per spatial axis d is split into prod(n_d) windows
# of prod(w_d) tokens each, in two ways:
#   * contiguous ("close", Swin-like): window a holds positions a*w .. a*w + w - 1,
#     i.e. axis d is viewed as (n_d, w_d);
#   * strided ("remote", EMOv1's dilated grid): window a holds positions a, a + n, ...,
#     a + (w - 1) * n, i.e. axis d is viewed as (w_d, n_d).
# Attention has no positional term, so only which tokens share a window matters, not
# their order inside it; both partitions are pure view/permute/reshape.
# ---------------------------------------------------------------------------------------


def window_grid(spatial_size: Sequence[int],
                window_size: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Returns (windows per axis, window length per axis) for a map.

    A window length <= 0 means one window over the whole (unpadded) axis.
    """
    windows, lengths = [], []
    for size, win in zip(spatial_size, window_size):
        win = size if win <= 0 else win
        windows.append(-(-size // win))  # ceil division
        lengths.append(win)
    return tuple(windows), tuple(lengths)


def _axis_split(windows, lengths, strided: bool):
    # (outer, inner) sizes per axis: strided windows are the inner (fast) factor.
    return [(w, n) if strided else (n, w) for n, w in zip(windows, lengths)]


def partition_heads(x: torch.Tensor, num_heads: int, windows, lengths,
                    strided: bool) -> torch.Tensor:
    """(B, heads*D, *S) -> (B * num_windows, heads, tokens_per_window, D)."""
    B, C = x.shape[:2]
    nd = len(windows)
    split = _axis_split(windows, lengths, strided)
    x = x.view(B, num_heads, C // num_heads, *[s for pair in split for s in pair])
    # Axis order after the view: 0 B, 1 heads, 2 D, then per spatial axis d two axes at
    # 3 + 2d (outer) and 4 + 2d (inner). The window index is the n-factor, the token
    # index the w-factor.
    win_axes = [4 + 2 * d if strided else 3 + 2 * d for d in range(nd)]
    tok_axes = [3 + 2 * d if strided else 4 + 2 * d for d in range(nd)]
    x = x.permute(0, *win_axes, 1, *tok_axes, 2)
    return x.reshape(B * math.prod(windows), num_heads, math.prod(lengths), C // num_heads)


def merge_heads(x: torch.Tensor, batch: int, windows, lengths, strided: bool,
                channels_last: bool = False) -> torch.Tensor:
    """Inverse of :func:`partition_heads`, returned as a permuted view.

    (B * num_windows, heads, tokens, D) -> view with shape
    (B, heads, D, outer_0, inner_0, outer_1, inner_1, ...), or with ``channels_last``
    (B, outer_0, inner_0, ..., heads, D). Made contiguous, it is the map in that memory
    layout; see :func:`map_from_merged`.
    """
    nd = len(windows)
    heads, dim = x.shape[1], x.shape[3]
    x = x.view(batch, *windows, heads, *lengths, dim)
    # Axes of this view: 0 B, 1..nd windows, nd+1 heads, nd+2..2nd+1 tokens, 2nd+2 D.
    spatial = []
    for d in range(nd):
        win_axis, tok_axis = 1 + d, nd + 2 + d
        spatial += [tok_axis, win_axis] if strided else [win_axis, tok_axis]
    channel = [nd + 1, 2 * nd + 2]
    return x.permute(0, *spatial, *channel) if channels_last else x.permute(0, *channel, *spatial)


def map_from_merged(x: torch.Tensor, spatial_size: Sequence[int],
                    channels_last: bool) -> torch.Tensor:
    """(B, heads, D, *pairs) or (B, *pairs, heads, D) -> (B, C, *S), a view if contiguous."""
    batch = x.shape[0]
    if channels_last:
        return x.reshape(batch, *spatial_size, -1).movedim(-1, 1)
    return x.reshape(batch, -1, *spatial_size)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D / 5-D tensor is stored channels-last (and not also contiguous)."""
    if x.dim() not in (4, 5) or x.is_contiguous():
        return False
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return x.is_contiguous(memory_format=fmt)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, fused: bool,
              attn_drop: nn.Dropout) -> torch.Tensor:
    """softmax(q k^T * scale) v over the last two axes, batched over the leading ones.

    ``fused`` uses torch's ``scaled_dot_product_attention`` kernels; the eager path (two
    batched matmuls) is the reference and what FLOP counting sees. ``v`` may be wider than
    ``q``/``k``.
    """
    # On CPU, torch has a fused kernel only for equal q/k and v widths; otherwise SDPA
    # falls back to an unfused "math" path that is slower than the two matmuls below.
    if fused and (q.is_cuda or q.shape[-1] == v.shape[-1]):
        drop = attn_drop.p if attn_drop.training else 0.
        return F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=scale)
    attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    return attn_drop(attn) @ v


def pad_to_windows(x: torch.Tensor, windows, lengths,
                   fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pads the trailing side of each spatial axis up to ``windows * lengths``.

    Padding is zeros, or the per-channel vector ``fill`` when given (used to pad the
    output of a 1x1 conv with its bias, which is what the conv gives on zero padding).
    """
    spatial = x.shape[2:]
    padded = [n * w for n, w in zip(windows, lengths)]
    if list(spatial) == padded:
        return x
    if fill is None:
        # F.pad takes (before, after) pairs, last axis first.
        return F.pad(x, [p for s, t in zip(reversed(spatial), reversed(padded)) for p in (0, t - s)])
    fmt = torch.contiguous_format
    if is_channels_last(x):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    out = torch.empty((x.shape[0], x.shape[1], *padded), dtype=x.dtype, device=x.device,
                      memory_format=fmt)
    out.copy_(fill.view(1, -1, *([1] * len(spatial))).expand_as(out))
    out[(Ellipsis, ) + tuple(slice(0, s) for s in spatial)] = x
    return out


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation gate (timm's layout: ``conv_reduce``, ``conv_expand``).

    Args:
        channels (int): Channels of the gated map.
        rd_ratio (float): Reduced width ``round(channels * rd_ratio)``.
        act (str): Activation between the two 1x1 convs.
    """

    def __init__(self, channels: int, rd_ratio: float, act: str):
        super().__init__()
        reduced = round(channels * rd_ratio)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = build_act(act)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()
