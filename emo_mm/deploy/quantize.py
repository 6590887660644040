"""Static post-training int8 quantization of exported ONNX graphs with onnxruntime.

>>> from emo_mm.deploy.quantize import QuantizeConfig, quantize
>>> inputs = [{'input': image} for image in calibration_images]     # doctest: +SKIP
>>> record = quantize('end2end.onnx', 'end2end_int8.onnx', inputs)  # doctest: +SKIP

The graph is quantized with per-channel int8 weights and activations calibrated on the
given inputs (dicts of graph input name -> array, as ``InferenceSession.run`` takes them);
:class:`QuantizeConfig` holds the format (QDQ or QOperator), the activation type (u8 or
s8), the calibration method, the graph rewrites applied first (:mod:`.rewrite`) and the
nodes kept in float (for instance the list :func:`emo_mm.deploy.sensitivity.find_float_nodes`
returns). The returned record is JSON-ready for a bundle's ``deploy.json``.

Only the *network* is quantized: the weight layers (Conv, ConvTranspose, Gemm, MatMul) and
every node that feeds one, not any node downstream of a task tail (NonMaxSuppression,
TopK, ArgMax, ...), nor what follows the last weight layers (score sigmoids, box decoding,
the final Resize of segmentation logits). Those nodes and every integer tensor (shapes,
indices) stay as exported. Normalisation layers stay float: onnxruntime has no int8
kernel for them, and quantizing their scale only adds error.

Graphs are read with their external data (the torch.export path writes weights next to
the graph as ``<name>.data``) and handled in memory, self-contained: an onnxruntime-optimised
copy of a graph with external data keeps relative references that break once the copy
lives in another folder, which is why ``quant_pre_process`` failed on such exports.
"""
import copy
import dataclasses
import json
import os
import os.path as osp
import tempfile
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Union

import numpy as np
import onnx

from .rewrite import GraphIndex, fuse_gelu, fuse_silu, split_convs, unshare_initializers

ModelLike = Union[str, os.PathLike, onnx.ModelProto]
Inputs = Mapping[str, np.ndarray]

FORMATS = ('qdq', 'qoperator')
ACTIVATION_TYPES = ('u8', 's8')
CALIBRATION_METHODS = ('minmax', 'percentile', 'entropy')
#: Rewrites :func:`prepare` can apply, by name (see :mod:`emo_mm.deploy.rewrite`).
REWRITES = {'gelu': fuse_gelu, 'silu': fuse_silu, 'split': split_convs}

#: Layers whose weights are quantized; the network is them and what feeds them.
WEIGHT_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')
#: Task post-processing: these nodes and everything downstream of them stay as exported.
TAIL_OPS = ('NonMaxSuppression', 'TopK', 'ArgMax', 'ArgMin', 'RoiAlign', 'NonZero')
#: Normalisations stay float (no int8 kernels in onnxruntime).
FLOAT_OPS = ('LayerNormalization', 'InstanceNormalization', 'BatchNormalization',
             'GroupNormalization')


@dataclasses.dataclass
class QuantizeConfig:
    """How a graph is quantized.

    Attributes:
        quant_format (str): ``'qdq'`` (QuantizeLinear/DequantizeLinear pairs that
            onnxruntime fuses into int8 kernels when it loads the graph) or
            ``'qoperator'`` (the int8 operators written into the graph).
        activation_type (str): ``'u8'`` or ``'s8'``; weights are always s8.
        per_channel (bool): One weight scale per output channel.
        calibrate_method (str): ``'minmax'``, ``'percentile'`` or ``'entropy'``.
        rewrites (tuple[str]): Graph rewrites applied before quantizing, names of
            :data:`REWRITES`.
        float_op_types (tuple[str]): Op types kept in float everywhere (e.g.
            ``('Softmax',)``).
        float_attention (bool): Keep the attention core (MatMuls without a constant
            operand and Softmax) in float.
        float_depthwise (bool): Keep depth-wise convolutions in float.
        optimize (bool): Run onnxruntime's basic graph optimisations (constant folding,
            redundant-node removal) first, as ``quant_pre_process`` does.
    """
    quant_format: str = 'qdq'
    activation_type: str = 'u8'
    per_channel: bool = True
    calibrate_method: str = 'minmax'
    rewrites: Sequence[str] = ('gelu', )
    float_op_types: Sequence[str] = ()
    float_attention: bool = False
    float_depthwise: bool = False
    optimize: bool = True

    def __post_init__(self):
        _check_choice('quant_format', self.quant_format, FORMATS)
        _check_choice('activation_type', self.activation_type, ACTIVATION_TYPES)
        _check_choice('calibrate_method', self.calibrate_method, CALIBRATION_METHODS)
        for name in self.rewrites:
            _check_choice('rewrites', name, tuple(REWRITES))
        self.rewrites = tuple(self.rewrites)
        self.float_op_types = tuple(self.float_op_types)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_choice(field: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f'QuantizeConfig.{field} = {value!r}; choose from {list(choices)}.')


# ---------------------------------------------------------------------------------------
# Reading graphs and finding the network part.
# ---------------------------------------------------------------------------------------
def load_model(model: ModelLike) -> onnx.ModelProto:
    """An in-memory, self-contained copy of ``model`` (a path or a ModelProto): weights
    stored as external data are read into the graph."""
    if isinstance(model, onnx.ModelProto):
        model = copy.deepcopy(model)
        if any(init.data_location == onnx.TensorProto.EXTERNAL
               for init in model.graph.initializer):
            raise ValueError('The ModelProto references external data that is not loaded; '
                             'pass the .onnx path instead (its data file next to it).')
        return model
    path = os.fspath(model)
    if not osp.isfile(path):
        raise FileNotFoundError(f'ONNX graph {path} does not exist.')
    return onnx.load(path, load_external_data=True)


def save_model(model: onnx.ModelProto, path: str) -> str:
    """Writes ``model`` as one self-contained file (external data only past protobuf's
    2 GB limit, into ``<path>.data``)."""
    if model.ByteSize() < 2**31 - 2**20:
        onnx.save(model, path)
    else:  # pragma: no cover - models far larger than the EMO family
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=osp.basename(path) + '.data')
    return path


def _is_weight_layer(node: onnx.NodeProto, index: GraphIndex) -> bool:
    if node.op_type not in WEIGHT_OPS:
        return False
    if node.op_type == 'MatMul':
        # A MatMul of two activations (attention) is no weight layer of its own.
        return any(index.constant(name) is not None for name in node.input)
    return len(node.input) > 1 and index.constant(node.input[1]) is not None


def network_nodes(model: onnx.ModelProto) -> List[str]:
    """Names of the nodes that may be quantized: the weight layers and the nodes that
    feed one, minus the task tail (nodes of :data:`TAIL_OPS` and their descendants).

    Every node must have a unique, non-empty name (the exporters write them).
    """
    graph = model.graph
    index = GraphIndex(graph)
    _check_names(graph)
    # Descendants of tail ops, in graph (topological) order.
    tail: Set[str] = set()
    tail_tensors: Set[str] = set()
    for node in graph.node:
        if node.op_type in TAIL_OPS or any(name in tail_tensors for name in node.input):
            tail.add(node.name)
            tail_tensors.update(node.output)
    # Ancestors of weight layers, walking the graph backwards.
    feeding: Set[str] = set()
    needed: Set[str] = set()
    for node in reversed(graph.node):
        if node.name in tail:
            continue
        if _is_weight_layer(node, index) or any(name in needed for name in node.output):
            feeding.add(node.name)
            needed.update(node.input)
    return [node.name for node in graph.node if node.name in feeding]


def _check_names(graph: onnx.GraphProto) -> None:
    names = [node.name for node in graph.node]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ValueError('The graph has unnamed or duplicate node names; name its nodes '
                         'uniquely (onnx.helper) before quantizing.')


def network_outputs(model: onnx.ModelProto, network: Optional[Iterable[str]] = None) -> List[str]:
    """Float tensors that leave the network part: read by a node outside it or graph
    outputs. These are what quantization changes for the rest of the graph."""
    network = set(network_nodes(model) if network is None else network)
    index = GraphIndex(model.graph)
    outputs = []
    for node in model.graph.node:
        if node.name not in network:
            continue
        for name in node.output:
            readers = index.consumers.get(name, [])
            if name in index.outputs or any(r.name not in network for r in readers):
                outputs.append(name)
    return outputs


def network_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` cut after its network: the network nodes, with :func:`network_outputs`
    as the graph outputs (their types from shape inference). Used to measure what
    quantization changes, before any task tail."""
    network = network_nodes(model)
    outputs = network_outputs(model, network)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    cut = copy.deepcopy(model)
    keep = set(network)
    nodes = [node for node in cut.graph.node if node.name in keep]
    del cut.graph.node[:]
    cut.graph.node.extend(nodes)
    del cut.graph.output[:]
    for name in outputs:
        if name in types:
            cut.graph.output.append(copy.deepcopy(types[name]))
        else:
            cut.graph.output.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
    used = {name for node in cut.graph.node for name in node.input}
    initializers = [init for init in cut.graph.initializer if init.name in used]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(initializers)
    return cut


def attention_core_nodes(model: onnx.ModelProto) -> List[str]:
    """MatMuls of two activations (q k^T, weights v) and the Softmax nodes."""
    index = GraphIndex(model.graph)
    return [node.name for node in model.graph.node
            if node.op_type == 'Softmax' or (node.op_type == 'MatMul'
                                             and not _is_weight_layer(node, index))]


def depthwise_conv_nodes(model: onnx.ModelProto) -> List[str]:
    """Convolutions with one group per input channel (and more than one group)."""
    index = GraphIndex(model.graph)
    names = []
    for node in model.graph.node:
        if node.op_type != 'Conv':
            continue
        groups = next((onnx.helper.get_attribute_value(a) for a in node.attribute
                       if a.name == 'group'), 1)
        weight = index.constant(node.input[1])
        if groups > 1 and weight is not None and weight.shape[1] == 1:
            names.append(node.name)
    return names


# ---------------------------------------------------------------------------------------
# Preparation, calibration, quantization.
# ---------------------------------------------------------------------------------------
def optimize_basic(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's basic-level graph optimisations (constant folding, removal of
    redundant nodes; the result uses standard ONNX operators only)."""
    import onnxruntime as ort
    with tempfile.TemporaryDirectory(prefix='emo_mm_quant.') as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = osp.join(folder, 'optimized.onnx')
        ort.InferenceSession(model.SerializeToString(), options,
                             providers=['CPUExecutionProvider'])
        optimized = onnx.load(options.optimized_model_filepath)
    # onnxruntime drops node metadata (the exporter's module scopes, which name the
    # sensitivity groups); nodes it kept keep their names.
    metadata = {node.name: node.metadata_props for node in model.graph.node if node.name}
    for node in optimized.graph.node:
        if node.name in metadata and not node.metadata_props:
            node.metadata_props.extend(metadata[node.name])
    return optimized


def prepare(model: ModelLike, config: Optional[QuantizeConfig] = None) -> onnx.ModelProto:
    """The fp32 graph the quantizer reads: self-contained, optimised (``config.optimize``),
    shared initializers copied per reader (:func:`~.rewrite.unshare_initializers`),
    ``config.rewrites`` applied and every node named. Same outputs as ``model`` up to
    float rounding."""
    config = config or QuantizeConfig()
    model = load_model(model)
    if config.optimize:
        model = optimize_basic(model)
    # Types of every tensor, inferred while the graph has standard operators only: ONNX
    # shape inference stops at contrib operators (the fused Gelu), and the quantizer
    # calibrates only tensors whose type it knows.
    model = onnx.shape_inference.infer_shapes(model)
    unshare_initializers(model)
    for name in config.rewrites:
        REWRITES[name](model)
    _name_nodes(model.graph)
    return model


def _name_nodes(graph: onnx.GraphProto) -> None:
    seen = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f'{node.op_type}_{i}'
        seen.add(node.name)


class _Reader:
    """An onnxruntime CalibrationDataReader over a list of input dicts."""

    def __init__(self, inputs: Sequence[Inputs]):
        self.inputs = list(inputs)
        self.position = 0

    def get_next(self):
        if self.position >= len(self.inputs):
            return None
        self.position += 1
        return dict(self.inputs[self.position - 1])

    def __len__(self):
        return len(self.inputs)

    def rewind(self):
        self.position = 0


def quantizable_op_types() -> List[str]:
    """Op types onnxruntime's quantizer may put on 8-bit tensors, minus :data:`FLOAT_OPS`."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    return sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - set(FLOAT_OPS))


def check_inputs(model: onnx.ModelProto, inputs: Sequence[Inputs]) -> List[Dict[str, np.ndarray]]:
    """The calibration inputs as a list of dicts, checked against the graph's inputs."""
    names = [i.name for i in model.graph.input]
    checked = []
    for i, item in enumerate(inputs):
        if not isinstance(item, Mapping):
            raise TypeError(f'Calibration input {i} is a {type(item).__name__}; give dicts of '
                            f'graph input name -> array ({names}).')
        missing = [name for name in names if name not in item]
        if missing:
            raise ValueError(f'Calibration input {i} lacks the graph input(s) {missing}.')
        checked.append({name: np.ascontiguousarray(item[name]) for name in names})
    if not checked:
        raise ValueError('No calibration inputs: give at least one input dict.')
    return checked


def excluded_nodes(model: onnx.ModelProto, config: QuantizeConfig,
                   float_nodes: Iterable[str] = ()) -> List[str]:
    """Every node the quantizer must leave in float: outside the network, of a float op
    type, the attention core (``config.float_attention``) and ``float_nodes``."""
    network = set(network_nodes(model))
    excluded = {node.name for node in model.graph.node
                if node.name not in network or node.op_type in config.float_op_types}
    if config.float_attention:
        excluded.update(attention_core_nodes(model))
    if config.float_depthwise:
        excluded.update(depthwise_conv_nodes(model))
    unknown = set(float_nodes) - {node.name for node in model.graph.node}
    if unknown:
        raise ValueError(f'Float nodes not in the graph: {sorted(unknown)[:5]}; were they '
                         'found on a graph prepared with other rewrites?')
    excluded.update(float_nodes)
    return sorted(excluded)


def calibrate(model: onnx.ModelProto, inputs: Sequence[Inputs], config: QuantizeConfig,
              cache_path: str) -> str:
    """Computes the activation ranges of ``model`` on ``inputs`` once and writes them to
    ``cache_path`` (onnxruntime's calibration cache), so that several quantizations of
    the same prepared graph (e.g. the sensitivity pass) share one calibration."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    with tempfile.TemporaryDirectory(prefix='emo_mm_calib.') as folder:
        source = save_model(model, osp.join(folder, 'model.onnx'))
        calibrator = create_calibrator(
            source, quantizable_op_types(),
            augmented_model_path=osp.join(folder, 'augmented.onnx'),
            calibrate_method=_calibration_method(config.calibrate_method))
        calibrator.collect_data(_Reader(check_inputs(model, inputs)))
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache_path)
    return cache_path


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod
    return {'minmax': CalibrationMethod.MinMax, 'percentile': CalibrationMethod.Percentile,
            'entropy': CalibrationMethod.Entropy}[name]


def quantize_prepared(model: onnx.ModelProto, out_path: str, config: QuantizeConfig,
                      cache_path: str, float_nodes: Iterable[str] = ()) -> str:
    """Quantizes a graph from :func:`prepare` with the ranges in ``cache_path`` (from
    :func:`calibrate`) and writes it to ``out_path``."""
    import logging

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    types = {'u8': QuantType.QUInt8, 's8': QuantType.QInt8}
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns through the root logger
    try:
        with tempfile.TemporaryDirectory(prefix='emo_mm_quant.') as folder:
            # The quantizer reads a path (it re-runs shape inference on it).
            source = save_model(model, osp.join(folder, 'model.onnx'))
            quantize_static(
                source, out_path, calibration_data_reader=None,
                quant_format=(QuantFormat.QDQ if config.quant_format == 'qdq' else
                              QuantFormat.QOperator),
                op_types_to_quantize=quantizable_op_types(),
                per_channel=config.per_channel,
                activation_type=types[config.activation_type], weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded_nodes(model, config, float_nodes),
                calibrate_method=_calibration_method(config.calibrate_method),
                calibration_cache_path=cache_path)
    finally:
        logging.getLogger().setLevel(quiet)
    return out_path


def quantize(model: ModelLike,
             out_path: str,
             calibration_inputs: Iterable[Inputs],
             config: Optional[QuantizeConfig] = None,
             float_nodes: Iterable[str] = (),
             float_reasons: Optional[Sequence[dict]] = None) -> dict:
    """Quantizes ``model`` to ``out_path``, calibrated on ``calibration_inputs``.

    Args:
        model: An fp32 ONNX graph (path or ModelProto).
        out_path (str): Where the quantized graph is written (self-contained).
        calibration_inputs: Input dicts (graph input name -> array), e.g. N images from
            the config's own data pipeline.
        config (QuantizeConfig): Format and options; defaults to ``QuantizeConfig()``.
        float_nodes: Names of nodes of the *prepared* graph kept in float.
        float_reasons: Optional records (from the sensitivity pass) stored with the
            result.

    Returns:
        dict: JSON-ready record: ``config``, ``calibration`` (number of inputs),
        ``float_nodes`` (with ``float_reasons`` if given), ``op_counts`` of the written
        graph, ``network_nodes`` / ``quantized`` counts.
    """
    config = config or QuantizeConfig()
    prepared = prepare(model, config)
    inputs = check_inputs(prepared, list(calibration_inputs))
    float_nodes = list(float_nodes)
    with tempfile.TemporaryDirectory(prefix='emo_mm_quant.') as folder:
        cache = calibrate(prepared, inputs, config, osp.join(folder, 'ranges.json'))
        quantize_prepared(prepared, out_path, config, cache, float_nodes)
    written = onnx.load(out_path)
    counts: Dict[str, int] = {}
    for node in written.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(precision='int8', config=config.to_dict(),
                calibration=dict(inputs=len(inputs)), float_nodes=float_nodes,
                float_reasons=list(float_reasons or []),
                network_nodes=len(network_nodes(prepared)), op_counts=counts)


def write_record(record: dict, path: str) -> None:
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)
