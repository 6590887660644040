"""Window attention of the EMO family: the one implementation every model uses.

EMOv2's i2RMB (2-D and 3-D), EMOv1's iRMB, U-EMO and D-EMO all attend inside windows of a
channels-first map whose q and k come from one 1x1 conv (``qk``) and whose values come from
a 1x1 conv + activation (``v``). They differ only in

* which partitions are summed: contiguous windows (near tokens, Swin-like), strided windows
  (far tokens, EMOv1's dilated grid) or both on shared q/k/v (EMOv2's spanning attention);
* whether ``v`` is applied *before* attention (i2RMB: attend over the expanded values) or
  *after* it (iRMB: attend over the input itself, then project).

:func:`window_attention` is that computation, written once; :class:`WindowAttention` is the
module i2RMB and D-EMO hold, and EMOv1's iRMB calls the function with its own ``qk`` / ``v``
(the authors' key names put them on the block itself).

Layout facts the code relies on:

* A padded map of size ``S_d = n_d * w_d`` per spatial axis ``d`` is split into
  ``prod(n_d)`` windows of ``prod(w_d)`` tokens. Contiguous window ``a`` holds positions
  ``a*w .. a*w + w - 1`` (axis viewed as ``(n, w)``); strided window ``a`` holds
  ``a, a + n, ..., a + (w - 1) * n`` (axis viewed as ``(w, n)``). Attention has no
  positional term, so only which tokens share a window matters; both partitions are pure
  ``view`` / ``permute`` / ``reshape``.
* Padding is on the trailing side and unmasked: padded tokens take part in every softmax
  with the values the projections give on zero input (the authors' rule).
* Window copies follow the map's memory: a channels-last map is read as (B, *S, C), so
  each copy moves whole channel vectors (and an exported graph, which has no memory
  formats, transposes to NHWC once); a channels-first map is partitioned as (heads, D,
  tokens), so each copy reads a window's rows, and the matmuls take the transposes.
"""
import contextlib
import math
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvNormAct, memory_format_of

#: Token mixers of the EMO blocks: partitions summed (``False`` contiguous, ``True``
#: strided). The authors' ``hybrid_eops`` selector in brackets.
MIXERS = {
    'conv': (),  # 1x1 conv, no attention (0)
    'strided': (True, ),  # EMOv1-style dilated windows (1, "Remote")
    'contiguous': (False, ),  # Swin-style local windows (2, "Close")
    'spanning': (False, True),  # both on shared q/k/v, summed (3, "Hybrid")
}


# ---------------------------------------------------------------------------------------
# Window geometry.
# ---------------------------------------------------------------------------------------
def window_grid(spatial_size: Sequence[int],
                window_size: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Returns (windows per axis, window length per axis) for a map.

    A window length <= 0 means one window over the whole (unpadded) axis.
    """
    windows, lengths = [], []
    for size, win in zip(spatial_size, window_size):
        win = size if win <= 0 else win
        # Ceiling division on non-negative numbers: traced for ONNX, ``//`` becomes Div,
        # which truncates toward zero (``-(-size // win)`` would floor), and under
        # torch.compile with symbolic sizes the negated form makes guards that fail.
        windows.append((size + win - 1) // win)
        lengths.append(win)
    return tuple(windows), tuple(lengths)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D / 5-D tensor is stored channels-last (and not also contiguous)."""
    return memory_format_of(x) is not torch.contiguous_format


def pad_to_windows(x: torch.Tensor, windows, lengths,
                   fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pads the trailing side of each spatial axis up to ``windows * lengths``.

    Padding is zeros, or the per-channel vector ``fill`` when given (the output of a 1x1
    conv on zero padding is its bias, so a conv can run on the real tokens only).
    """
    spatial = x.shape[2:]
    padded = [n * w for n, w in zip(windows, lengths)]
    if list(spatial) == padded:
        return x
    if fill is None:
        # F.pad takes (before, after) pairs, last axis first.
        pads = [p for s, t in zip(reversed(spatial), reversed(padded)) for p in (0, t - s)]
        return F.pad(x, pads)
    out = torch.empty((x.shape[0], x.shape[1], *padded), dtype=x.dtype, device=x.device,
                      memory_format=memory_format_of(x))
    out.copy_(fill.view(1, -1, *([1] * len(spatial))).expand_as(out))
    out[(Ellipsis, ) + tuple(slice(0, s) for s in spatial)] = x
    return out


def crop(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Drops the trailing window padding (a view)."""
    if tuple(x.shape[2:]) == tuple(spatial):
        return x
    return x[(Ellipsis, ) + tuple(slice(0, s) for s in spatial)]


def _window_view(x: torch.Tensor, num_heads: int, windows, lengths, strided: bool,
                 tokens_inner: bool, channels_last: bool) -> torch.Tensor:
    """(B, heads*D, *S) -> permuted view (B, *windows, heads, *lengths, D), no copy;
    with ``tokens_inner`` (B, *windows, heads, D, *lengths). ``channels_last``: ``x``'s
    channels are its innermost axis in memory (also for a channel slice of such a map)."""
    B, C = x.shape[:2]
    nd = len(windows)
    # (outer, inner) sizes per axis: strided windows are the inner (fast) factor.
    split = [(w, n) if strided else (n, w) for n, w in zip(windows, lengths)]
    sizes = [s for pair in split for s in pair]

    # Per spatial axis d two axes, outer at first + 2d and inner at first + 2d + 1. The
    # window index is the n-factor, the token index the w-factor.
    def axes(first):
        win = [first + 2 * d + 1 if strided else first + 2 * d for d in range(nd)]
        tok = [first + 2 * d if strided else first + 2 * d + 1 for d in range(nd)]
        return win, tok

    if channels_last and not tokens_inner:
        # Read as (B, *S, heads, D): a free view of channels-last memory. An exported
        # graph (which has no memory formats) then transposes to NHWC once and every
        # window copy moves whole channel vectors, not single elements.
        x = x.movedim(1, -1).reshape(B, *sizes, num_heads, C // num_heads)
        win, tok = axes(1)
        return x.permute(0, *win, 2 * nd + 1, *tok, 2 * nd + 2)
    # Axes after the view: 0 B, 1 heads, 2 D, then the spatial pairs from 3.
    x = x.view(B, num_heads, C // num_heads, *sizes)
    win, tok = axes(3)
    if tokens_inner:
        return x.permute(0, *win, 1, 2, *tok)
    return x.permute(0, *win, 1, *tok, 2)


def partition_heads(x: torch.Tensor, num_heads: int, windows, lengths, strided: bool,
                    tokens_inner: bool = False) -> torch.Tensor:
    """(B, heads*D, *S) -> (B * num_windows, heads, tokens_per_window, D), or with
    ``tokens_inner`` (B * num_windows, heads, D, tokens_per_window)."""
    return partition_heads_stacked(x, num_heads, windows, lengths, (strided, ), tokens_inner,
                                   is_channels_last(x))


def partition_heads_stacked(x: torch.Tensor, num_heads: int, windows, lengths,
                            partitions: Sequence[bool], tokens_inner: bool,
                            channels_last: bool) -> torch.Tensor:
    """Several partitions of one map in one batch, each copied once:
    (B, heads*D, *S) -> (P * B * num_windows, heads, tokens_per_window, D), or with
    ``tokens_inner`` (P * B * num_windows, heads, D, tokens_per_window).

    ``tokens_inner`` suits channels-first maps: the copy then reads runs of a window's
    row instead of one element per channel plane. ``channels_last`` says how ``x`` is
    stored (see :func:`_window_view`).
    """
    B, C = x.shape[:2]
    inner = (C // num_heads, math.prod(lengths))
    views = [_window_view(x, num_heads, windows, lengths, strided, tokens_inner, channels_last)
             for strided in partitions]
    # -1 for the leading (batch) axis: an exported graph then needs no batch arithmetic.
    stacked = views[0] if len(views) == 1 else torch.stack(views)
    return stacked.reshape(-1, num_heads, *(inner if tokens_inner else inner[::-1]))


def same_windows(windows, lengths) -> bool:
    """Whether contiguous and strided partitions group the tokens identically (every axis
    holds one window, or windows of one token): then their attention outputs are equal."""
    return all(n == 1 or w == 1 for n, w in zip(windows, lengths))


def merge_heads(x: torch.Tensor, windows, lengths, strided: bool,
                channels_last: bool = False, tokens_inner: bool = False) -> torch.Tensor:
    """Inverse of :func:`partition_heads`, returned as a permuted view.

    (B * num_windows, heads, tokens, D) (or, with ``tokens_inner``, (B * num_windows,
    heads, D, tokens)) -> view with shape (B, heads, D, outer_0, inner_0, outer_1,
    inner_1, ...), or with ``channels_last`` (B, outer_0, inner_0, ..., heads, D). Made
    contiguous, it is the map in that memory layout; see :func:`map_from_merged`.
    """
    nd = len(windows)
    if tokens_inner:
        heads, dim = x.shape[1], x.shape[2]
        x = x.view(-1, *windows, heads, dim, *lengths)
        # Axes: 0 B, 1..nd windows, nd+1 heads, nd+2 D, nd+3..2nd+2 tokens.
        tok_axes = [nd + 3 + d for d in range(nd)]
        channel = [nd + 1, nd + 2]
    else:
        heads, dim = x.shape[1], x.shape[3]
        x = x.view(-1, *windows, heads, *lengths, dim)
        # Axes: 0 B, 1..nd windows, nd+1 heads, nd+2..2nd+1 tokens, 2nd+2 D.
        tok_axes = [nd + 2 + d for d in range(nd)]
        channel = [nd + 1, 2 * nd + 2]
    spatial = []
    for d in range(nd):
        win_axis, tok_axis = 1 + d, tok_axes[d]
        spatial += [tok_axis, win_axis] if strided else [win_axis, tok_axis]
    return x.permute(0, *spatial, *channel) if channels_last else x.permute(0, *channel, *spatial)


def map_from_merged(x: torch.Tensor, spatial_size: Sequence[int], channels: int,
                    channels_last: bool) -> torch.Tensor:
    """(B, heads, D, *pairs) or (B, *pairs, heads, D) -> (B, C, *S), a view if contiguous."""
    if channels_last:
        x = x.reshape(-1, *spatial_size, channels)
        return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))
    return x.reshape(-1, channels, *spatial_size)


# ---------------------------------------------------------------------------------------
# The attention kernel and its switch.
# ---------------------------------------------------------------------------------------
def sdpa_pays(x: torch.Tensor, dim_head: int) -> bool:
    """Whether torch's fused ``scaled_dot_product_attention`` beats two batched matmuls
    for heads of ``dim_head`` channels on ``x``'s device.

    CUDA and heads of at least 32: on CPUs torch fuses only equal q/k and v widths, and
    narrower heads run faster as two matmuls on GPUs too (figures: docs/benchmark.md).
    """
    return x.is_cuda and dim_head >= 32


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
              fused: bool, attn_drop: nn.Dropout, tokens_inner: bool = False) -> torch.Tensor:
    """softmax(q k^T * scale) v over the last two axes, batched over the leading ones.

    Args:
        fused: True: torch's ``scaled_dot_product_attention``; False: two matmuls (the
            reference, and what FLOP counting sees). ``v`` may be wider than ``q`` / ``k``.
        tokens_inner: q, k, v and the result are (..., D, tokens) instead of
            (..., tokens, D); the matmuls take the transposes as they are (no copies).
            Eager path only.
    """
    if fused:
        if tokens_inner:
            raise ValueError('The fused attention path takes (..., tokens, D) operands.')
        drop = attn_drop.p if attn_drop.training else 0.
        return F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=scale)
    if tokens_inner:
        q = q.transpose(-2, -1)
    else:
        k = k.transpose(-2, -1)
    if scale == 1.0:
        # Deploy mode folds the scale into q's projection (fold_attention_scale); a plain
        # matmul also exports as one fused transposed GEMM in onnxruntime.
        logits = q @ k
    else:
        # The scale rides in the GEMM (alpha) instead of a pass over the logits.
        logits = torch.baddbmm(q.new_zeros(()), q.flatten(0, -3), k.flatten(0, -3),
                               beta=0., alpha=scale).view(*q.shape[:-1], k.shape[-1])
    weights = attn_drop(logits.softmax(dim=-1))
    # tokens_inner: (v w^T) is (D, tokens), the transpose of (w v^T)^T = w v.
    return v @ weights.transpose(-2, -1) if tokens_inner else weights @ v


@torch.no_grad()
def fold_attention_scale(qk: ConvNormAct, scale: float) -> None:
    """Multiplies the q half of the ``qk`` 1x1 conv (its first half of output channels,
    weight and bias) by ``scale``, so attention can run with a scale of 1 (exact up to
    rounding). Padded tokens stay consistent: on zero padding the conv gives its (scaled)
    bias, as the fast path's fill assumes."""
    q_channels = qk.conv.out_channels // 2
    qk.conv.weight[:q_channels].mul_(scale)
    if qk.conv.bias is not None:
        qk.conv.bias[:q_channels].mul_(scale)


def set_fused_attention(model: nn.Module, fused: Optional[bool]) -> None:
    """Sets the attention path of every attention in ``model``: True (torch's SDPA), False
    (eager matmuls) or None (chosen per call by device and head size)."""
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = fused


def set_stack_partitions(model: nn.Module, stack: bool) -> None:
    """Sets ``stack_partitions`` of every window attention in ``model`` (see
    :func:`window_attention`; same outputs either way)."""
    for module in model.modules():
        if hasattr(module, 'stack_partitions'):
            module.stack_partitions = stack


@contextlib.contextmanager
def attention_path(model: nn.Module, fused: Optional[bool]) -> Iterator[None]:
    """Temporarily sets the attention path of ``model`` (see :func:`set_fused_attention`)."""
    saved = [(m, m.fused_attn) for m in model.modules() if hasattr(m, 'fused_attn')]
    set_fused_attention(model, fused)
    try:
        yield
    finally:
        for module, previous in saved:
            module.fused_attn = previous


def window_attention(x: torch.Tensor,
                     qk: ConvNormAct,
                     v: nn.Module,
                     num_heads: int,
                     scale: float,
                     window_size: Sequence[int],
                     partitions: Sequence[bool],
                     values_first: bool,
                     fused: Optional[bool],
                     attn_drop: nn.Dropout,
                     stack_partitions: bool = True) -> torch.Tensor:
    """Window attention over ``x`` (B, C_in, *S) with q/k from ``qk`` and values from ``v``.

    Args:
        qk: 1x1 conv C_in -> 2 C_in (no norm / activation), head-major channels.
        v: 1x1 conv + activation without norm (a :class:`ConvNormAct`), C_in -> C_mid.
        values_first: True: attend over ``v(x)`` (i2RMB); False: attend over ``x`` and
            apply ``v`` to the result (iRMB).
        partitions: Partitions to sum, see :data:`MIXERS`.
        fused: Attention path, see :func:`attention`.
        stack_partitions: Attend over several partitions in one batch (one copy of each
            partition into a stacked tensor, one batched product). False attends over each
            partition on its own: the same outputs with fewer copies, which suits
            exported graphs (no stack and unstack nodes around the products).

    Returns:
        (B, C_mid, *S), in ``x``'s memory layout.

    Where the path is "fast" (anything but the explicit eager reference ``fused=False``),
    the 1x1 convs run on the real tokens only and their outputs are padded with the
    values the convs give on zero padding; the eager reference pads first, as the authors
    do, which is what FLOP counting sees. Both give the same numbers.
    """
    spatial = x.shape[2:]
    windows, lengths = window_grid(spatial, window_size)
    reference = fused is False
    if reference:
        padded_x = pad_to_windows(x, windows, lengths)
        q, k = qk(padded_x).chunk(2, dim=1)
        values = v(padded_x) if values_first else padded_x
    else:
        q, k = pad_to_windows(qk(x), windows, lengths, qk.conv.bias).chunk(2, dim=1)
        if values_first:
            # v is conv + activation (no norm): on zero padding the conv gives its bias.
            values = v.act(pad_to_windows(v.conv(x), windows, lengths, v.conv.bias))
        else:
            values = pad_to_windows(x, windows, lengths)  # zero input, zero values
    # Merge back into the memory layout the block runs in, so the residual adds and the
    # depth-wise conv that follow do not mix layouts.
    channels_last = is_channels_last(values)
    if fused is None:
        fused = sdpa_pays(q, q.shape[1] // num_heads)
    # Partition copies read the map's innermost axis in runs: the channels of a
    # channels-last map, a window's row of a channels-first one (SDPA needs tokens outer).
    tokens_inner = not (fused or channels_last)
    partitions = tuple(partitions)
    repeats = 1
    dropout_active = attn_drop.training and attn_drop.p > 0
    if (not reference and not dropout_active and len(partitions) > 1
            and same_windows(windows, lengths)):
        # Both partitions are the same windows in the same token order: the sum is twice
        # one of them, bit for bit. (The reference path keeps the authors' computation,
        # which FLOP counting sees; attention dropout draws a mask per partition.)
        partitions, repeats = partitions[:1], len(partitions)
    if stack_partitions:
        q_w, k_w, v_w = (partition_heads_stacked(t, num_heads, windows, lengths, partitions,
                                                 tokens_inner, channels_last)
                         for t in (q, k, values))
        y = attention(q_w, k_w, v_w, scale, fused, attn_drop, tokens_inner)
        y = y.view(len(partitions), -1, *y.shape[1:])
    else:
        y = [attention(*(partition_heads_stacked(t, num_heads, windows, lengths, (strided, ),
                                                 tokens_inner, channels_last)
                         for t in (q, k, values)), scale, fused, attn_drop, tokens_inner)
             for strided in partitions]
    out = None
    for part, strided in zip(y, partitions):
        part = merge_heads(part, windows, lengths, strided, channels_last, tokens_inner)
        # A later partition is added to the first's (contiguous) map viewed its way; the
        # first is copied even when its view is contiguous (one window per axis), as the
        # in-place updates must not write into the attention output.
        out = (part.clone(memory_format=torch.contiguous_format) if out is None else
               out.view(part.shape).add_(part))
    if repeats > 1:
        out = out.mul_(repeats)
    out = map_from_merged(out, values.shape[2:], values.shape[1], channels_last)
    if values_first:
        return crop(out, spatial)
    if reference:
        return crop(v(out), spatial)  # the authors' order
    return v(crop(out, spatial))  # 1x1: only the real tokens need it


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with shared q/k/v (i2RMB, D-EMO).

    ``q, k`` come from one 1x1 conv (``qk``, C_in -> 2 C_in, head-major channels), ``v``
    from a 1x1 conv + activation (``v``, C_in -> C_mid), applied before attention. The
    map is padded on the trailing side to a multiple of the window; each partition in
    ``partitions`` attends independently and the results are summed. See
    :func:`window_attention`.

    Args:
        in_channels (int): Input channels C_in (q/k width).
        mid_channels (int): Value / output channels C_mid.
        dim_head (int): Channels per head of q/k; ``C_in // dim_head`` heads.
        window_size (Sequence[int]): Window length per spatial axis (<= 0: whole axis).
        partitions (Sequence[bool]): Partitions to sum, see :data:`MIXERS`.
        act (str): Activation after ``v``.
        qkv_bias (bool): Bias in ``qk`` and ``v``. Defaults to True.
        attn_drop (float): Dropout on attention weights. Defaults to 0.
        fused_attn (bool, optional): Attention path, see :func:`attention`. Defaults to
            None (chosen by device and head size).
        spatial_dims (int): 2 or 3. Defaults to 2.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 dim_head: int,
                 window_size: Sequence[int],
                 partitions: Sequence[bool],
                 act: str,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 fused_attn: Optional[bool] = None,
                 spatial_dims: int = 2):
        super().__init__()
        self.num_heads = check_heads(in_channels, mid_channels, dim_head)
        self.scale = dim_head**-0.5
        self.window_size = tuple(window_size)
        self.partitions = tuple(partitions)
        self.qk = ConvNormAct(in_channels, 2 * in_channels, 1, bias=qkv_bias,
                              spatial_dims=spatial_dims)
        self.v = ConvNormAct(in_channels, mid_channels, 1, bias=qkv_bias, act=act,
                             spatial_dims=spatial_dims)
        self.attn_drop = nn.Dropout(attn_drop)
        self.fused_attn = fused_attn
        #: See ``stack_partitions`` of :func:`window_attention`; the ONNX export turns it off.
        self.stack_partitions = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return window_attention(x, self.qk, self.v, self.num_heads, self.scale,
                                self.window_size, self.partitions, values_first=True,
                                fused=self.fused_attn, attn_drop=self.attn_drop,
                                stack_partitions=self.stack_partitions)

    def switch_to_deploy(self) -> None:
        """Folds the attention scale into ``qk`` (see :func:`fold_attention_scale`)."""
        if self.scale != 1.0:
            fold_attention_scale(self.qk, self.scale)
            self.scale = 1.0

    def extra_repr(self) -> str:
        return (f'heads={self.num_heads}, window={self.window_size}, '
                f'partitions={self.partitions}, fused_attn={self.fused_attn}')


def check_heads(in_channels: int, mid_channels: int, dim_head: int) -> int:
    """Number of heads for q/k of ``in_channels`` and values of ``mid_channels``."""
    if in_channels % dim_head:
        raise ValueError(f'Attention width {in_channels} is not a multiple of dim_head '
                         f'{dim_head}.')
    num_heads = in_channels // dim_head
    if mid_channels % num_heads:
        raise ValueError(f'Value width {mid_channels} is not a multiple of the {num_heads} '
                         f'heads.')
    return num_heads
