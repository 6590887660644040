"""Layers shared by the EMO family (EMOv1, EMOv2, U-EMO, V-EMO, D-EMO).

Everything here works for 2-D (NCHW) and 3-D (NCTHW) maps: ``spatial_dims`` selects
``Conv2d``/``Conv3d`` and ``BatchNorm2d``/``BatchNorm3d``; window helpers take one window
length per spatial axis.

Attribute names (``conv``, ``norm``, ``gamma``, the ``norm`` child of the channel
LayerNorm) are the authors' state-dict names, so their checkpoints load unchanged.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

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
        # Permuted views; layer_norm needs the channel axis last. Non-negative dims keep
        # the ONNX export's Transpose valid.
        last = x.dim() - 1
        y = self.norm(x.permute(0, *range(2, last + 1), 1))
        y = y.permute(0, last, *range(1, last))
        # Channels-last out; a channels-first input gets its layout back, so the layers
        # after it (and the attention's partition layout) see one memory format.
        if memory_format_of(x) is torch.contiguous_format:
            return y.contiguous()
        return y


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
    a norm, whose backward does not need its output, so large early-stage maps need no
    second allocation.
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

    def switch_to_deploy(self) -> None:
        """Folds a BatchNorm into the conv (which gains a bias); other norms stay."""
        if isinstance(self.norm, _BatchNorm):
            self.conv = fold_batch_norm(self.conv, self.norm)
            self.norm = nn.Identity()


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


# ---------------------------------------------------------------------------------------
# Re-parameterisation for deployment: exact algebraic folds of eval-mode affine layers.
# ---------------------------------------------------------------------------------------
def _bn_scale_shift(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """(s, t) with bn(x) == s * x + t per channel, in eval mode."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _conv_like(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A conv with ``conv``'s geometry and the given weight and bias."""
    fused = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=True,
                       padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused.to(memory_format=memory_format_of(conv.weight))


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout a 4-D / 5-D tensor is stored in: channels-last (when it is that and not
    also plain contiguous) or contiguous."""
    if x.dim() in (4, 5) and not x.is_contiguous():
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=fmt):
            return fmt
    return torch.contiguous_format


@torch.no_grad()
def fold_batch_norm(conv: nn.Module, bn: _BatchNorm) -> nn.Module:
    """``bn(conv(x))`` as one conv: the output-channel scale goes into the weight."""
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return _conv_like(conv, weight, bias)


@torch.no_grad()
def fold_batch_norm_into_next(bn: _BatchNorm, conv: nn.Module) -> nn.Module:
    """``conv(bn(x))`` as one conv, for a 1x1, ungrouped, unpadded ``conv`` (exact only
    then: a padded conv would see ``bn``'s shift on its border where it sees zeros)."""
    if (any(k != 1 for k in conv.kernel_size) or conv.groups != 1
            or any(p != 0 for p in conv.padding)):
        raise ValueError('Only a 1x1 ungrouped conv without padding absorbs a preceding norm.')
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight * scale.view(1, -1, *([1] * (conv.weight.dim() - 2)))
    bias = conv.weight.flatten(1) @ shift
    if conv.bias is not None:
        bias = bias + conv.bias
    return _conv_like(conv, weight, bias)


@torch.no_grad()
def fold_output_scale(conv: nn.Module, scale: torch.Tensor) -> None:
    """``conv(x) * scale`` (per output channel, e.g. a LayerScale gamma), in place."""
    scale = scale.reshape(-1)
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
    if conv.bias is not None:
        conv.bias.mul_(scale)


@torch.no_grad()
def fold_sequential(seq: nn.Sequential) -> None:
    """Folds every (conv, BatchNorm) pair of a Sequential in place (BN becomes Identity)."""
    for i in range(len(seq) - 1):
        conv, bn = seq[i], seq[i + 1]
        if isinstance(conv, (nn.Conv2d, nn.Conv3d)) and isinstance(bn, _BatchNorm):
            seq[i] = fold_batch_norm(conv, bn)
            seq[i + 1] = nn.Identity()


def reparameterize(module: nn.Module) -> None:
    """Folds, in place, what :meth:`switch_to_deploy` methods and conv/BatchNorm pairs allow.

    Children with a ``switch_to_deploy`` method handle their own subtree; (conv,
    BatchNorm) pairs inside a Sequential and mmcv ``ConvModule`` s with a BatchNorm are
    folded here; everything else is searched recursively. Call it in eval mode.
    """
    for name, child in list(module.named_children()):
        if hasattr(child, 'switch_to_deploy'):
            child.switch_to_deploy()
            continue
        if isinstance(child, nn.Sequential):
            fold_sequential(child)
        elif _is_conv_module_with_bn(child):
            child.conv = fold_batch_norm(child.conv, child.norm)
            setattr(child, child.norm_name, nn.Identity())
            child.with_norm = False
        reparameterize(child)


def _is_conv_module_with_bn(module: nn.Module) -> bool:
    # mmcv's ConvModule (U-EMO's conv layers), recognised by its attributes so that this
    # module does not import mmcv.
    return (getattr(module, 'with_norm', False) and hasattr(module, 'norm_name')
            and isinstance(getattr(module, 'conv', None), (nn.Conv2d, nn.Conv3d))
            and isinstance(getattr(module, module.norm_name, None), _BatchNorm)
            and tuple(getattr(module, 'order', ()))[:2] == ('conv', 'norm'))
