"""Mobile deployment through ExecuTorch with the XNNPACK delegate (fp32 and int8).

>>> from emo_mm.apis import build_model, load_config
>>> from emo_mm.deploy.mobile import export_executorch, verify_executorch
>>> model = build_model(load_config('emov2_1m_in1k')).eval()
>>> info = export_executorch(model, 'emov2_1m.pte', input_size=(224, 224))  # doctest: +SKIP
>>> verify_executorch('emov2_1m.pte', info['model'], batch=1)               # doctest: +SKIP

A program (``.pte``) holds one input size and batch size (XNNPACK plans its memory for
them). What it computes is the model's raw network: an mmpretrain classifier's class
scores, a detector's per-level head outputs (boxes are decoded and NMS is run outside),
a segmentor's logits, a backbone's feature maps (see
:class:`emo_mm.utils.onnx.TensorOutput`).

Two properties of the EMO graphs need a mobile form, made by :func:`prepare_for_mobile`
(the PyTorch model it returns computes the same outputs; ``verify_executorch`` checks the
program against it):

* XNNPACK holds tensors of at most :data:`XNNPACK_MAX_RANK` dimensions, while the window
  attention's partitions are views of rank 7 and 8 (batch, heads, head channels and a
  window and a token axis per spatial axis, stacked partitions). ExecuTorch's partitioner
  does not check ranks: a program with such a view is written, and its method then fails
  to load (``XNNCompiler: Failed to define tensor ... xnn_status_unsupported_parameter``,
  error 0x1). :class:`LowRankWindowAttention` computes the same attention with tensors of
  rank 6 at most: heads stay folded into the channels while windows are cut out.
* XNNPACK's layout pass expects every 4-D parameter in the standard (NCHW) memory format;
  channels-last convolution weights (the EMO backbones' default) stop the export with
  ``Expected ... to be NCHW in channels last reshape pass``. The memory format is a
  storage choice: the graph is the same and XNNPACK picks its own layout.

int8 uses the pt2e flow with ExecuTorch's ``XNNPACKQuantizer`` (symmetric per-channel
int8 weights, per-tensor int8 activations, static), calibrated on images the caller
passes; the channel LayerNorms stay float (:data:`FLOAT_MODULES`). The weights' scales
are floored per layer by what XNNPACK executes, not at ExecuTorch's fixed 2**-12, which
zeroes the small weights batch norms leave in trained EMOv2 blocks
(:func:`weight_observer_class`).

A model's accuracy through a program is measured with the toolbox's own test loop:
:func:`attach_program` makes the model's ``predict`` run its network in the program.
"""
import copy
import dataclasses
import functools
import os
import os.path as osp
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import switch_to_deploy
from ..models.attention import WindowAttention, window_grid
from ..models.layers import ChannelLayerNorm
from ..utils.onnx import TensorOutput, flatten_outputs, relative_error

#: Largest tensor rank XNNPACK defines (``XNN_MAX_TENSOR_DIMS``).
XNNPACK_MAX_RANK = 6

PRECISIONS = ('fp32', 'int8')


class LowRankWindowAttention(nn.Module):
    """:class:`~emo_mm.models.attention.WindowAttention` (2-D) with tensors of rank <= 6.

    Uses the wrapped module's ``qk`` and ``v`` (shared, not copied) and computes the same
    attention as its reference path: the input is padded with zeros to whole windows, q,
    k and v come from the 1x1 convs on the padded map, each partition attends within its
    windows, the partitions are summed and the padding is cropped.

    Batch and heads are adjacent in a (B, C, H, W) map with head-major channels, so the
    map is viewed as (B * heads, D, n_h, w_h, n_w, w_w) (contiguous windows; strided ones
    are (B * heads, D, w_h, n_h, w_w, n_w)) and one rank-6 permutation per operand cuts the
    windows out, each in the layout its product takes: q and v as (B * heads * windows,
    tokens, D), k as (B * heads * windows, D, tokens). The products then need no
    transposes (XNNPACK copies each one); the order of the batch axis does not matter as
    long as q, k, v and the inverse permutation of the output agree. Measured against
    heads folded into the channels with transposed products (one run, 2 threads, bs1,
    224x224, 10 interleaved rounds): EMOv2-5M 1.10x (fp32) and 1.09x (int8), EMOv2-1M
    1.06x and 1.07x.

    Args:
        attention (WindowAttention): A 2-D window attention.
    """

    def __init__(self, attention: WindowAttention):
        super().__init__()
        if len(attention.window_size) != 2:
            raise ValueError('LowRankWindowAttention handles 2-D maps; got a window of '
                             f'{len(attention.window_size)} axes.')
        self.qk = attention.qk
        self.v = attention.v
        self.num_heads = attention.num_heads
        self.scale = attention.scale
        self.window_size = tuple(attention.window_size)
        self.partitions = tuple(attention.partitions)
        if attention.attn_drop.p and attention.training:
            raise ValueError('LowRankWindowAttention is for inference (eval mode).')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        windows, lengths = window_grid((height, width), self.window_size)
        padded = (windows[0] * lengths[0], windows[1] * lengths[1])
        if padded != (height, width):
            x = F.pad(x, (0, padded[1] - width, 0, padded[0] - height))
        qk = self.qk(x)
        # Slices rather than chunk: XNNPACK takes slices, not split_with_sizes.
        q_channels = qk.shape[1] // 2
        q, k = qk[:, :q_channels], qk[:, q_channels:]
        values = self.v(x)
        partitions = self.partitions
        repeats = 1
        if len(partitions) > 1 and all(n == 1 or w == 1 for n, w in zip(windows, lengths)):
            # Both partitions group the tokens identically: the sum is twice one of them.
            partitions, repeats = partitions[:1], len(partitions)
        out = None
        for strided in partitions:
            part = self._attend(q, k, values, windows, lengths, strided)
            out = part if out is None else out + part
        if repeats > 1:
            out = out * repeats
        if padded != (height, width):
            out = out[:, :, :height, :width]
        return out

    def _attend(self, q, k, v, windows, lengths, strided: bool) -> torch.Tensor:
        q_w = self._partition(q, windows, lengths, strided, tokens_inner=False)
        k_w = self._partition(k, windows, lengths, strided, tokens_inner=True)
        v_w = self._partition(v, windows, lengths, strided, tokens_inner=False)
        # 3-D batched products: 4-D ones export with expand copies XNNPACK does not take.
        logits = torch.bmm(q_w, k_w)
        if self.scale != 1.0:
            logits = logits * self.scale
        out = torch.bmm(logits.softmax(dim=-1), v_w)
        return self._merge(out, v.shape, windows, lengths, strided)

    def _partition(self, x, windows, lengths, strided: bool,
                   tokens_inner: bool) -> torch.Tensor:
        """(B, C, H, W) -> (B * heads * n_h * n_w, w_h * w_w, D), or with ``tokens_inner``
        (B * heads * n_h * n_w, D, w_h * w_w)."""
        batch, channels = x.shape[:2]
        (n_h, n_w), (w_h, w_w) = windows, lengths
        groups, dim = batch * self.num_heads, channels // self.num_heads
        if strided:  # axes: 0 groups, 1 D, 2 w_h, 3 n_h, 4 w_w, 5 n_w
            x = x.reshape(groups, dim, w_h, n_h, w_w, n_w)
            order = (0, 3, 5, 1, 2, 4) if tokens_inner else (0, 3, 5, 2, 4, 1)
        else:  # axes: 0 groups, 1 D, 2 n_h, 3 w_h, 4 n_w, 5 w_w
            x = x.reshape(groups, dim, n_h, w_h, n_w, w_w)
            order = (0, 2, 4, 1, 3, 5) if tokens_inner else (0, 2, 4, 3, 5, 1)
        shape = (dim, w_h * w_w) if tokens_inner else (w_h * w_w, dim)
        return x.permute(*order).reshape(groups * n_h * n_w, *shape)

    def _merge(self, out, shape, windows, lengths, strided: bool) -> torch.Tensor:
        """Inverse of :meth:`_partition` (tokens outer): -> (B, C, H, W)."""
        batch, channels, height, width = shape
        (n_h, n_w), (w_h, w_w) = windows, lengths
        dim = channels // self.num_heads
        out = out.reshape(batch * self.num_heads, n_h, n_w, w_h, w_w, dim)
        if strided:  # -> (groups, D, w_h, n_h, w_w, n_w)
            out = out.permute(0, 5, 3, 1, 4, 2)
        else:  # -> (groups, D, n_h, w_h, n_w, w_w)
            out = out.permute(0, 5, 1, 3, 2, 4)
        return out.reshape(batch, channels, height, width)


class ConvChannelLayerNorm(nn.Module):
    """:class:`~emo_mm.models.layers.ChannelLayerNorm` with the channel means taken by a
    1x1 convolution (weights ``1 / C``, one output channel).

    XNNPACK has no layer norm; as convolutions, subtractions, products and ``rsqrt`` the
    whole norm runs inside the delegate, in its own layout, without transposes.

    Args:
        norm (ChannelLayerNorm): The norm to compute (its affine parameters are shared).
    """

    def __init__(self, norm: ChannelLayerNorm):
        super().__init__()
        self.norm = norm.norm
        channels = self.norm.normalized_shape[0]
        # A buffer, not a tensor made in forward: XNNPACK takes constant conv weights only.
        self.register_buffer('mean_weight', torch.full((1, channels, 1, 1), 1.0 / channels),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        if x.dim() != 4:  # 3-D maps: the layer norm itself
            last = x.dim() - 1
            y = norm(x.permute(0, *range(2, last + 1), 1))
            return y.permute(0, last, *range(1, last))
        mean_weight = self.mean_weight.to(x.dtype)
        centred = x - F.conv2d(x, mean_weight)
        variance = F.conv2d(centred * centred, mean_weight)
        y = centred * torch.rsqrt(variance + norm.eps)
        if norm.weight is not None:
            y = y * norm.weight.view(1, -1, 1, 1)
        if norm.bias is not None:
            y = y + norm.bias.view(1, -1, 1, 1)
        return y


class PerLevelHead(nn.Module):
    """A dense head that runs its layers on each pyramid level, with one copy of the
    layers per level (same weights; same outputs as the head).

    mmdet's anchor heads (``RetinaHead``) apply one set of convolutions to every level.
    In a static int8 graph each level's input has its own scale while the shared bias is
    quantized once, with one level's: XNNPACK needs the bias scale of every convolution
    to be its input scale times its weight scale, and refuses the others when the
    program loads (``Failed to create convolution node ...: xnn_status_invalid_parameter``).
    Copies give each level its own, correctly scaled bias.

    Args:
        head (nn.Module): A head whose ``forward`` is mmdet's
            ``multi_apply(self.forward_single, feats)``.
        num_levels (int): The number of pyramid levels it is called on.
    """

    def __init__(self, head: nn.Module, num_levels: int):
        super().__init__()
        self.levels = nn.ModuleList(copy.deepcopy(head) for _ in range(num_levels))

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[List[torch.Tensor], ...]:
        if len(feats) != len(self.levels):
            raise ValueError(f'The head was copied for {len(self.levels)} levels and got '
                             f'{len(feats)} feature maps.')
        outputs = [head.forward_single(x) for head, x in zip(self.levels, feats)]
        return tuple(list(per_level) for per_level in zip(*outputs))


def unshare_level_heads(model: nn.Module) -> int:
    """Replaces, in place, a detector's ``bbox_head`` that applies one set of layers to
    every pyramid level by a :class:`PerLevelHead`; returns the number of levels (0 when
    nothing was replaced). For int8 programs only: an fp32 program computes the same
    with the shared layers, and copies would multiply the head's weights in the file."""
    try:
        from mmdet.models.dense_heads import AnchorHead
    except ImportError:  # pragma: no cover - mmdet is a dependency
        return 0
    head = getattr(model, 'bbox_head', None)
    if (head is None or type(head).forward is not AnchorHead.forward
            or not hasattr(head, 'prior_generator')):
        return 0
    levels = head.prior_generator.num_levels
    model.bbox_head = PerLevelHead(head, levels)
    return levels


#: Modules int8 programs keep in float by default: the channel LayerNorm, whose mean and
#: variance lose most of their resolution in int8 (measured in docs/mobile.md).
FLOAT_MODULES = (ConvChannelLayerNorm, )


def replace_for_mobile(model: nn.Module) -> Dict[str, int]:
    """Replaces, in place, every 2-D :class:`WindowAttention` by a
    :class:`LowRankWindowAttention` and every 2-D :class:`ChannelLayerNorm` by a
    :class:`ConvChannelLayerNorm`, both sharing the original's weights.

    Returns:
        dict: How many of each were replaced (``attention``, ``layer_norm``).
    """
    counts = dict(attention=0, layer_norm=0)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, WindowAttention) and len(child.window_size) == 2:
                setattr(module, name, LowRankWindowAttention(child))
                counts['attention'] += 1
            elif isinstance(child, ChannelLayerNorm):
                setattr(module, name, ConvChannelLayerNorm(child))
                counts['layer_norm'] += 1
    return counts


def prepare_for_mobile(model: nn.Module, deploy: bool = True) -> nn.Module:
    """A copy of ``model`` in the form the mobile export takes (``model`` is unchanged).

    Eval mode, deploy mode (where the model has one; ``deploy``), parameters in the
    standard memory format and the window attention in its rank-6 form
    (:class:`LowRankWindowAttention`); wrapped in :class:`TensorOutput`, so that calling it
    with an image batch gives the raw outputs the program returns.
    """
    model = copy.deepcopy(model).eval()
    if deploy:
        switch_to_deploy(model)
    for module in model.modules():
        # EMO backbones convert their input to their memory format in forward.
        if hasattr(module, 'set_channels_last'):
            module.set_channels_last(False)
    model.to(memory_format=torch.contiguous_format)
    replace_for_mobile(model)
    wrapper = TensorOutput(model)
    wrapper.eval()
    return wrapper


# ---------------------------------------------------------------------------------------
# Export.
# ---------------------------------------------------------------------------------------
def _require_executorch():
    try:
        import executorch  # noqa: F401
        from executorch.runtime import Runtime  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('ExecuTorch is not installed; `make setup-mobile` (or `pip install '
                          '-r requirements/mobile.txt`) installs it with its XNNPACK delegate '
                          'to export or run .pte programs.') from error


def _batches(images: Iterable[torch.Tensor], batch: int) -> Iterable[torch.Tensor]:
    """Cuts image tensors (N, C, H, W) into batches of exactly ``batch`` images."""
    pending = []
    for tensor in images:
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            raise ValueError('Calibration images must be (N, C, H, W) tensors, got '
                             f'{type(tensor).__name__}{tuple(getattr(tensor, "shape", ()))}.')
        pending += list(tensor.split(1))
        while len(pending) >= batch:
            yield torch.cat(pending[:batch])
            pending = pending[batch:]


def int8_config():
    """XNNPACK's static int8 quantization config, weights observed by
    :func:`weight_observer_class`.

    ExecuTorch's ``get_symmetric_quantization_config(is_per_channel=True)`` (symmetric
    per-channel int8 weights, per-tensor int8 activations from a histogram, both with
    scales of at least 2**-12), with the weights' floor replaced by the per-layer one
    :func:`set_weight_scale_floors` sets after calibration.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        QuantizationConfig, get_symmetric_quantization_config)
    config = get_symmetric_quantization_config(is_per_channel=True)
    weight = dataclasses.replace(config.weight,
                                 observer_or_fake_quant_ctr=weight_observer_class().with_args())
    return QuantizationConfig(config.input_activation, config.output_activation, weight,
                              config.bias, config.is_qat)


@functools.lru_cache(maxsize=None)
def weight_observer_class() -> type:
    """The weight observer of :func:`int8_config`, ``PerChannelWeightObserver`` (made on
    first use: torchao is an optional dependency, the ``mobile`` extra)."""
    from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver

    class PerChannelWeightObserver(PerChannelMinMaxObserver):
        """Per-output-channel symmetric int8 weight ranges (min / max), each channel's
        scale floored only by what XNNPACK can execute for its layer.

        ExecuTorch's XNNPACK config floors every weight scale at 2**-12, so weights below
        0.03 round to a handful of levels or to zero. Convolutions with a batch norm
        folded in sit far below that where the norm's scale is small: the output
        projections of trained EMOv2 blocks have per-channel weight scales around 1e-7,
        and the fixed floor zeroed them (a demo DeepLabv3 lost several points of mIoU
        with ExecuTorch int8 but not with onnxruntime's, which has no floor). Here each
        channel's floor is the smallest scale XNNPACK takes for its layer, set after
        calibration by :func:`set_weight_scale_floors`.
        """

        def __init__(self, **kwargs):
            kwargs['eps'] = torch.finfo(torch.float32).tiny
            super().__init__(**kwargs)
            #: Smallest scale per output channel (None: no floor but ``eps``).
            self.scale_floor: Optional[torch.Tensor] = None

        def calculate_qparams(self):
            scale, zero_point = super().calculate_qparams()
            if self.scale_floor is not None:
                scale = torch.maximum(scale, self.scale_floor.to(scale))
            return scale, zero_point

    return PerChannelWeightObserver


#: Largest magnitude of XNNPACK's int32 bias, and its smallest requantization scale.
INT32_MAX = 2**31 - 1
XNNPACK_MIN_REQUANT_SCALE = 2.0**-32
#: The smallest weight scale of ExecuTorch's XNNPACK config.
EXECUTORCH_WEIGHT_FLOOR = 2.0**-12


def _observer_of(prepared: nn.Module, node):
    """The observer module ``node`` calls, or None."""
    if getattr(node, 'op', None) != 'call_module':
        return None
    module = prepared.get_submodule(node.target)
    return module if hasattr(module, 'calculate_qparams') else None


@torch.no_grad()
def set_weight_scale_floors(prepared: nn.Module, margin: float = 4.0) -> int:
    """Sets the per-channel scale floor of every weight observer of :func:`int8_config` in a
    calibrated pt2e model (before ``convert_pt2e``); returns how many layers got one.

    For a layer with input scale ``s_in`` and output scale ``s_out`` (from its calibrated
    activation observers) and bias ``b``, channel ``c``'s weight scale is kept at least
    ``max(2**-32 * s_out / s_in, |b_c| / (s_in * (2**31 - 1)))`` times ``margin`` (room
    for rounding): XNNPACK refuses requantization scales below 2**-32, and the int32
    bias it computes would clip. A layer without calibrated input and output ranges keeps
    ExecuTorch's floor of 2**-12.
    """
    weight_class = weight_observer_class()
    count = 0
    for node in prepared.graph.nodes:
        if node.op != 'call_function' or len(node.args) < 2:
            continue
        weight_observer = _observer_of(prepared, node.args[1])
        if not isinstance(weight_observer, weight_class):
            continue
        channels = weight_observer.min_val.numel()
        input_observer = _observer_of(prepared, node.args[0])
        output_observers = _output_observers(prepared, node)
        if input_observer is None or not output_observers:
            _raise_floor(weight_observer, torch.full((channels, ), EXECUTORCH_WEIGHT_FLOOR))
            continue
        input_scale = float(input_observer.calculate_qparams()[0].reshape(-1)[0])
        output_scale = max(float(o.calculate_qparams()[0].reshape(-1)[0])
                           for o in output_observers)
        floor = torch.full((channels, ), XNNPACK_MIN_REQUANT_SCALE * output_scale / input_scale)
        bias = node.args[2] if len(node.args) > 2 else None
        if getattr(bias, 'op', None) == 'get_attr':
            values = functools.reduce(getattr, bias.target.split('.'), prepared)
            floor = torch.maximum(floor, values.detach().abs().float().reshape(-1) /
                                  (input_scale * INT32_MAX))
        _raise_floor(weight_observer, floor * margin)
        count += 1
    return count


#: Activations XNNPACK fuses into the layer before them: the layer's output is quantized
#: after them.
_FUSED_ACTIVATIONS = ('relu', 'relu_', 'hardtanh', 'hardtanh_', 'relu6', 'relu6_')


def _output_observers(prepared: nn.Module, node) -> list:
    """The observers of ``node``'s output, looking past a fused activation."""
    observers = []
    for user in node.users:
        observer = _observer_of(prepared, user)
        if observer is not None:
            observers.append(observer)
        elif (user.op == 'call_function'
              and getattr(user.target, '__name__', '').split('.')[0] in _FUSED_ACTIVATIONS):
            observers.extend(_output_observers(prepared, user))
    return observers


def _raise_floor(observer, floor: torch.Tensor) -> None:
    """Sets ``observer``'s scale floor, keeping the larger one where a weight is shared by
    several layers (each layer's constraints must hold)."""
    if observer.scale_floor is not None:
        floor = torch.maximum(observer.scale_floor, floor)
    observer.scale_floor = floor


def quantize_int8(wrapper: nn.Module, example: torch.Tensor,
                  calibration: Iterable[torch.Tensor],
                  float_modules: Sequence[type] = FLOAT_MODULES) -> Tuple[nn.Module, int]:
    """Static int8 post-training quantization for XNNPACK (pt2e flow).

    Symmetric int8 weights per output channel and int8 activations per tensor, observed
    on ``calibration`` (image tensors shaped like ``example`` but for the batch; images
    beyond the last whole batch of ``example``'s size are not used); see
    :func:`int8_config` for the weights' ranges. What XNNPACK's quantizer covers becomes
    int8 (convolutions, linear layers, additions, products, concatenations); the rest
    (attention products and softmax, GELU, SiLU) stays float between quantize /
    dequantize pairs.

    Args:
        wrapper: The prepared model (:func:`prepare_for_mobile`).
        example: An input of the program's shape.
        calibration: Image tensors (N, C, H, W).
        float_modules: Module types kept in float entirely (:data:`FLOAT_MODULES`).

    Returns:
        (torch.fx.GraphModule, int): The converted model and the number of calibration
        images it saw.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(int8_config())
    for module_type in float_modules:
        quantizer.set_module_type(module_type, None)
    graph = torch.export.export(wrapper, (example, )).module()
    prepared = prepare_pt2e(graph, quantizer)
    seen = 0
    with torch.no_grad():
        for images in _batches(calibration, example.shape[0]):
            if images.shape[1:] != example.shape[1:]:
                raise ValueError(f'Calibration images are {tuple(images.shape[1:])} but the '
                                 f'program takes {tuple(example.shape[1:])}: preprocess them '
                                 'to the input size of the export.')
            prepared(images.to(example.dtype))
            seen += images.shape[0]
    if not seen:
        raise ValueError(f'int8 needs calibration images: got none (or fewer than the '
                         f'batch of {example.shape[0]}).')
    set_weight_scale_floors(prepared)
    return convert_pt2e(prepared), seen


def export_executorch(model: nn.Module,
                      path: str,
                      input_size: Tuple[int, int] = (224, 224),
                      batch: int = 1,
                      precision: str = 'fp32',
                      calibration: Optional[Iterable[torch.Tensor]] = None,
                      in_channels: int = 3,
                      deploy: bool = True,
                      float_modules: Sequence[type] = FLOAT_MODULES) -> Dict[str, object]:
    """Exports ``model`` to an ExecuTorch program (``.pte``) lowered to XNNPACK.

    ``model`` itself is not changed (see :func:`prepare_for_mobile`).

    Args:
        model (nn.Module): A classifier, detector, segmentor or backbone (eval mode).
        path (str): Output ``.pte`` file; its folder must exist.
        input_size (tuple[int, int]): (H, W) of the program's input.
        batch (int): Batch size of the program's input.
        precision (str): ``'fp32'`` or ``'int8'`` (needs ``calibration``).
        calibration (Iterable[Tensor], optional): Preprocessed image batches (N, C, H, W)
            of the program's input size for int8.
        in_channels (int): Input channels.
        deploy (bool): Switch to deploy mode first where the model has one.
        float_modules (Sequence[type]): int8: module types kept in float. Defaults to
            :data:`FLOAT_MODULES`.

    Returns:
        dict: ``model`` (the prepared PyTorch model, what the program computes in fp32),
        ``seconds`` (export time), ``size_mb``, ``delegated`` and ``outside`` (operator
        counts inside XNNPACK delegates and outside them), ``calibration_images``.
    """
    _require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}.')
    if precision == 'int8' and calibration is None:
        raise ValueError("precision='int8' needs calibration images (calibration=...).")
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Folder {folder} of the .pte output does not exist; create it '
                                f'or choose another path.')
    start = time.perf_counter()
    wrapper = prepare_for_mobile(model, deploy=deploy)
    example = torch.rand(batch, in_channels, *input_size)
    seen = 0
    with torch.no_grad():
        if precision == 'int8':
            unshare_level_heads(wrapper.model)
            quantized, seen = quantize_int8(wrapper, example, calibration, float_modules)
            program_model = quantized
        else:
            program_model = wrapper
        exported = torch.export.export(program_model, (example, ))
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        delegated, outside = _operator_counts(edge.exported_program().graph_module)
        program = edge.to_executorch()
    with open(path, 'wb') as file:
        program.write_to_file(file)
    return dict(model=wrapper, seconds=time.perf_counter() - start,
                size_mb=os.path.getsize(path) / 2**20, delegated=delegated, outside=outside,
                calibration_images=seen)


def _operator_counts(graph_module) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(operators inside XNNPACK delegates, operators left to ExecuTorch's own kernels)."""
    delegated, outside = {}, {}

    def name_of(node):
        target = node.target
        return getattr(target, '__name__', str(target)).split('::')[-1]

    for node in graph_module.graph.nodes:
        if node.op != 'call_function' or name_of(node) == 'getitem':
            continue
        if name_of(node) == 'executorch_call_delegate':
            lowered = getattr(graph_module, node.args[0].target)
            for inner in lowered.original_module.graph.nodes:
                if inner.op == 'call_function':
                    key = name_of(inner)
                    delegated[key] = delegated.get(key, 0) + 1
        else:
            key = name_of(node)
            outside[key] = outside.get(key, 0) + 1
    return delegated, outside


# ---------------------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------------------
def set_executorch_threads(threads: int) -> None:
    """Sets the threads of ExecuTorch's shared thread pool (XNNPACK's workers)."""
    _require_executorch()
    from executorch.extension.pybindings import portable_lib
    portable_lib._unsafe_reset_threadpool(int(threads))


class ExecuTorchProgram:
    """A ``.pte`` program loaded by ExecuTorch's Python runtime; call it with an image
    batch of the program's input shape to get its outputs (a list of tensors).

    Args:
        path (str): The ``.pte`` file.
    """

    def __init__(self, path: str):
        _require_executorch()
        from executorch.runtime import Runtime
        if not osp.isfile(path):
            raise FileNotFoundError(f'No ExecuTorch program at {path}.')
        self.path = path
        self.program = Runtime.get().load_program(path)
        self.method = self.program.load_method('forward')
        meta = self.method.metadata
        self.input_shape = tuple(meta.input_tensor_meta(0).sizes())

    def __call__(self, images: torch.Tensor) -> List[torch.Tensor]:
        if tuple(images.shape) != self.input_shape:
            raise ValueError(f'{self.path} takes input {self.input_shape}, got '
                             f'{tuple(images.shape)} (a program holds one input shape; '
                             f'export another for this one).')
        return list(self.method.execute([images.contiguous()]))


def verify_executorch(path: str,
                      model: nn.Module,
                      inputs: Sequence[torch.Tensor] = (),
                      tolerance: Optional[float] = 1e-4,
                      seed: int = 0,
                      num_random: int = 2) -> List[float]:
    """Runs the program and ``model`` (through :class:`TensorOutput`) on the same inputs.

    Args:
        path (str): The ``.pte`` program.
        model (nn.Module): The PyTorch model to compare with (eval mode).
        inputs (Sequence[Tensor]): Inputs of the program's shape; random ones are added.
        tolerance (float, optional): Largest allowed relative error per output (max abs
            difference over max abs reference); exceeding it raises. None only reports.
        seed (int): Seed of the random inputs.
        num_random (int): Random inputs to add.

    Returns:
        list[float]: Per input, the largest relative error over the outputs.
    """
    program = ExecuTorchProgram(path)
    wrapper = model if isinstance(model, TensorOutput) else TensorOutput(model)
    wrapper.eval()
    generator = torch.Generator().manual_seed(seed)
    checks = list(inputs) + [torch.rand(*program.input_shape, generator=generator)
                             for _ in range(num_random)]
    errors = []
    for images in checks:
        with torch.no_grad():
            expected = flatten_outputs(wrapper(images))
        actual = program(images)
        if len(actual) != len(expected):
            raise AssertionError(f'{path} gives {len(actual)} outputs, the model '
                                 f'{len(expected)}.')
        error = max(relative_error(a, e) for a, e in zip(actual, expected))
        errors.append(error)
        if tolerance is not None and not error <= tolerance:
            raise AssertionError(f'{path} differs from PyTorch: relative error {error:.3g} > '
                                 f'{tolerance:g}.')
    return errors


# ---------------------------------------------------------------------------------------
# Evaluation with the toolboxes' own test loops.
# ---------------------------------------------------------------------------------------
#: Head attributes whose ``forward`` maps the backbone's (and neck's) features to the raw
#: outputs: mmdet single-stage detectors, mmseg encoder-decoders, mmpretrain classifiers.
HEAD_ATTRIBUTES = ('bbox_head', 'decode_head', 'head')


def attach_program(model: nn.Module, program: ExecuTorchProgram) -> nn.Module:
    """Makes ``model`` compute its network with ``program``, in place, for evaluation.

    ``extract_feat`` passes the preprocessed batch through and the head's ``forward`` runs
    the program on it (in slices of the program's batch), so the toolbox's own
    ``predict`` decodes the program's raw outputs (boxes and NMS, resizing of the logits,
    class scores) and its evaluator scores them. The program must come from this model
    (its raw outputs have the structure of ``model(images, mode='tensor')``). Single-stage
    detectors, encoder-decoder segmentors and image classifiers.

    Returns:
        nn.Module: ``model``.
    """
    from torch.utils._pytree import tree_flatten, tree_unflatten

    head_name = next((name for name in HEAD_ATTRIBUTES if hasattr(model, name)), None)
    if head_name is None or not hasattr(model, 'extract_feat'):
        raise TypeError(f'{type(model).__name__} has no extract_feat and head '
                        f'({"/".join(HEAD_ATTRIBUTES)}): attach_program takes single-stage '
                        'detectors, encoder-decoder segmentors and image classifiers.')
    example = torch.zeros(program.input_shape)
    with torch.no_grad():
        _, spec = tree_flatten(TensorOutput(model).eval()(example))
    batch = program.input_shape[0]

    def run_program(images: torch.Tensor):
        if images.shape[0] % batch:
            raise ValueError(f'Batch of {images.shape[0]} images is not a multiple of the '
                             f"program's batch {batch}.")
        parts = [program(chunk) for chunk in images.split(batch)]
        outputs = [torch.cat(column) for column in zip(*parts)]
        return tree_unflatten(outputs, spec)

    model.extract_feat = lambda inputs, *args, **kwargs: inputs
    getattr(model, head_name).forward = lambda inputs, *args, **kwargs: run_program(inputs)
    return model


# ---------------------------------------------------------------------------------------
# Deploy bundles (tools/deploy.py --mobile executorch).
# ---------------------------------------------------------------------------------------
#: The file a bundle's ExecuTorch program is written to.
BUNDLE_PROGRAM = 'model.pte'
#: What a bundle's program returns, per task (its outputs in this order).
BUNDLE_OUTPUTS = {
    'classification': 'class scores before softmax',
    'detection': 'the head\'s raw outputs: class scores of each pyramid level, then box '
                 'deltas of each level (box decoding and NMS are the app\'s)',
    'segmentation': 'logits at the decode head\'s resolution (resize to the image and '
                    'arg-max are the app\'s)',
}


def executorch_version() -> Optional[str]:
    """The installed ExecuTorch version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version('executorch')
    except PackageNotFoundError:
        return None


def export_bundle_program(model: nn.Module, task: str, input_spec: Dict, folder: str,
                          tolerance: float = 1e-4, precision: str = 'fp32',
                          calibration: Optional[Sequence[torch.Tensor]] = None
                          ) -> Dict[str, object]:
    """Writes a bundle's ExecuTorch program (batch 1, the bundle's input size) into
    ``folder`` and checks it against ``model`` on random inputs.

    Args:
        model (nn.Module): The model the bundle's graphs came from (deploy mode).
        task (str): The bundle's task (``classification``, ``detection``,
            ``segmentation``).
        input_spec (dict): The bundle's ``input`` entry; its mode must be ``fixed``.
        folder (str): Where to write :data:`BUNDLE_PROGRAM`.
        tolerance (float): Largest relative error of an fp32 program against ``model``
            (raises above it). An int8 program's error is recorded, not bounded: its
            accuracy is the toolbox metric's to measure.
        precision (str): ``'fp32'`` or ``'int8'``.
        calibration (Sequence[Tensor], optional): int8 only: the network's inputs (the
            bundle's preprocessing, at its input size), e.g. the int8 graph's calibration.

    Returns:
        dict: The manifest's ``mobile`` entry: ``file``, ``runtime``, ``version``,
        ``delegate``, ``precision``, ``input`` (shape), ``outputs`` (shapes),
        ``returns`` (what the outputs are), ``relative_error`` (and for int8
        ``calibration_images``).
    """
    if task not in BUNDLE_OUTPUTS:
        raise ValueError(f'{task} models have no ExecuTorch program (the window attention '
                         'of 3-D maps has no rank-6 form); leave out --mobile.')
    if input_spec.get('mode') != 'fixed':
        raise ValueError('An ExecuTorch program holds one input size and this bundle\'s graph '
                         'takes any size; export with --input-size HxW.')
    size = tuple(int(s) for s in input_spec['size'])
    path = osp.join(folder, BUNDLE_PROGRAM)
    info = export_executorch(model, path, input_size=size, deploy=False, precision=precision,
                             calibration=calibration)
    errors = verify_executorch(path, model, tolerance=tolerance if precision == 'fp32' else None)
    program = ExecuTorchProgram(path)
    outputs = program(torch.zeros(program.input_shape))
    entry = dict(file=BUNDLE_PROGRAM, runtime='executorch', version=executorch_version(),
                 delegate='XNNPACK', precision=precision, input=list(program.input_shape),
                 outputs=[list(o.shape) for o in outputs], returns=BUNDLE_OUTPUTS[task],
                 outside_delegate=info['outside'], relative_error=max(errors))
    if precision == 'int8':
        entry['calibration_images'] = info['calibration_images']
    return entry
