"""Which nodes of a graph stay in float: a measured per-group sensitivity pass.

>>> from emo_mm.deploy.sensitivity import find_float_nodes
>>> result = find_float_nodes('end2end.onnx', calibration_inputs, budget=0.05)  # doctest: +SKIP
>>> result['float_nodes'], result['float_groups'][0]                            # doctest: +SKIP

The pass works on the network part of the graph
(:func:`emo_mm.deploy.quantize.network_graph`: the task tail cut off, its inputs as
outputs). That part is quantized once with onnxruntime (QDQ, every candidate node
quantized); from this graph the pass builds a *gated* one in which every quantized input
of a candidate node becomes ``x + g * (dq(q(x)) - x)``, with one gate ``g`` per node group
fed as a graph input: 1 gives the quantized value, 0 the float one (weights likewise).
One session then evaluates any choice of float groups by its gates alone, so measuring
every group costs one inference over the evaluation inputs each, not a quantization.

The groups are measured first one by one (each alone in float, all others quantized);
the most sensitive ones are split into their sub-modules and measured again. Then the
groups whose restoration lowered the error most are kept in float one after the other,
each kept only if it still lowers the error together with those before it, until the
error is within ``budget``. At the end the graph is quantized for real with the chosen
nodes in float and its error measured; both figures are returned.

Groups are the exporter's module scopes (the ``pkg.torch.onnx.name_scopes`` metadata of
torch.export graphs, e.g. ``model.backbone.stage3.1``, or the module path of TorchScript
exports' node names, e.g. ``/model/stage3/stage3.1``) at the deepest level that gives at
most ``max_groups`` groups, one level deeper for the refinement; graphs without either
are grouped by weight layer (each weight layer with the nodes after it, up to
the next one, merged in graph order).

The error is the relative RMS error over all network outputs,
``sqrt(sum ||y_int8 - y_fp32||^2 / sum ||y_fp32||^2)``, on the calibration inputs (or
``eval_inputs``).
"""
import ast
import os.path as osp
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from .quantize import (Inputs, ModelLike, QuantizeConfig, calibrate, check_inputs, excluded_nodes,
                       network_graph, prepare, quantizable_op_types, quantize_prepared)
from .rewrite import GraphIndex

SCOPES_KEY = 'pkg.torch.onnx.name_scopes'


def _scopes(node: onnx.NodeProto) -> Optional[List[str]]:
    """The module scopes of ``node``, outermost first: from torch.export's metadata, or
    from a TorchScript-exported name (``/model/stage3/stage3.1/Conv``: one module per
    path segment, the last segment names the node)."""
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            # The last entry names the node itself (e.g. 'permute_2'), not a module.
            return [s for s in scopes[:-1] if s] or None
    if node.name.startswith('/'):
        segments = node.name.split('/')[1:-1]
        return ['/' + '/'.join(segments[:i + 1]) for i in range(len(segments))] or None
    return None


def _all_scopes(model: onnx.ModelProto) -> Dict[str, Optional[List[str]]]:
    """Module scopes per node name. Nodes the exporter's or onnxruntime's optimisers
    created carry none; they take those of the node that produces their first input (or,
    failing that, of their first reader)."""
    index = GraphIndex(model.graph)
    scopes = {node.name: _scopes(node) for node in model.graph.node}
    for node in model.graph.node:  # graph order: producers are resolved first
        if scopes[node.name]:
            continue
        producer = index.producer.get(node.input[0]) if node.input else None
        if producer is not None and scopes.get(producer.name):
            scopes[node.name] = scopes[producer.name]
    for node in reversed(model.graph.node):
        if scopes[node.name]:
            continue
        readers = [r for out in node.output for r in index.consumers.get(out, [])]
        scopes[node.name] = next((scopes[r.name] for r in readers if scopes.get(r.name)), None)
    return scopes


def candidate_nodes(model: onnx.ModelProto, config: QuantizeConfig) -> List[str]:
    """Network nodes the quantizer would quantize under ``config`` (the ones a float
    decision applies to)."""
    excluded = set(excluded_nodes(model, config))
    op_types = set(quantizable_op_types())
    return [node.name for node in model.graph.node
            if node.name not in excluded and node.op_type in op_types]


def _segment_keys(model: onnx.ModelProto, names: Sequence[str]) -> Dict[str, str]:
    """Fallback grouping: each node joins the group of the last weight layer before it
    in graph order (nodes before the first weight layer join the first group)."""
    index = GraphIndex(model.graph)
    wanted = set(names)
    keys, current, pending = {}, None, []
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        is_weight = node.op_type in ('Conv', 'ConvTranspose', 'Gemm') or (
            node.op_type == 'MatMul' and any(index.constant(i) is not None for i in node.input))
        if is_weight:
            current = node.name
            for name in pending:
                keys[name] = current
            pending = []
        if current is None:
            pending.append(node.name)
        else:
            keys[node.name] = current
    for name in pending:
        keys[name] = name
    return keys


def group_nodes(model: onnx.ModelProto, names: Sequence[str],
                max_groups: int = 24) -> Dict[str, List[str]]:
    """Groups ``names`` by module scope (see the module docstring): at most
    ``max_groups`` groups where the graph's metadata allows, keyed by scope."""
    all_scopes = _all_scopes(model)
    scopes = {name: all_scopes.get(name) for name in names}
    if scopes and all(scopes.values()):
        depth = max(len(s) for s in scopes.values())
        for level in range(depth, 0, -1):
            keys = {name: s[min(level, len(s)) - 1] for name, s in scopes.items()}
            if len(set(keys.values())) <= max_groups:
                break
    else:
        keys = _segment_keys(model, names)
        order = list(dict.fromkeys(keys[name] for name in names))
        # Consecutive segments merged into at most max_groups groups.
        per_group = max(1, -(-len(order) // max_groups))
        merged = {key: order[(i // per_group) * per_group] for i, key in enumerate(order)}
        keys = {name: merged[key] for name, key in keys.items()}
    groups: Dict[str, List[str]] = {}
    for name in names:
        groups.setdefault(keys[name], []).append(name)
    return groups


def split_group(model: onnx.ModelProto, key: str, names: Sequence[str]) -> Dict[str, List[str]]:
    """One group split into its sub-modules (the next scope below ``key``), or, without
    scopes, into its weight-layer segments."""
    all_scopes = _all_scopes(model)
    groups: Dict[str, List[str]] = {}
    if all(all_scopes.get(name) for name in names):
        for name in names:
            scopes = all_scopes[name]
            child = scopes[scopes.index(key) + 1] if key in scopes[:-1] else key
            groups.setdefault(child, []).append(name)
        return groups
    keys = _segment_keys(model, names)
    for name in names:
        groups.setdefault(keys[name], []).append(name)
    return groups


def relative_rms_error(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    """sqrt(sum ||a - e||^2 / sum ||e||^2) over pairs of arrays."""
    num = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(e, np.float64))**2))
              for a, e in zip(actual, expected))
    den = sum(float(np.sum(np.asarray(e, np.float64)**2)) for e in expected)
    return float(np.sqrt(num / max(den, 1e-30)))


# ---------------------------------------------------------------------------------------
# The gated graph.
# ---------------------------------------------------------------------------------------
def gated_graph(quantized: onnx.ModelProto, float_model: onnx.ModelProto,
                fine_groups: Dict[str, List[str]]) -> onnx.ModelProto:
    """The QDQ graph ``quantized`` with every dequantized input of a grouped node gated
    (see the module docstring). ``float_model`` is the graph it was quantized from (for
    the float weights). One scalar input ``gate_<i>`` per group, in the order of
    ``fine_groups``."""
    model = onnx.ModelProto()
    model.CopyFrom(quantized)
    graph = model.graph
    index = GraphIndex(graph)
    float_nodes = {node.name: node for node in float_model.graph.node}
    float_inits = {init.name: init for init in float_model.graph.initializer}
    existing = {init.name for init in graph.initializer}
    group_of = {name: i for i, names in enumerate(fine_groups.values()) for name in names}
    gates = [f'gate_{i}' for i in range(len(fine_groups))]
    new_nodes: Dict[int, List[onnx.NodeProto]] = {}  # position -> nodes inserted before it
    positions = {id(node): i for i, node in enumerate(graph.node)}
    gated: Dict[tuple, str] = {}
    for node in list(graph.node):
        group = group_of.get(node.name)
        if group is None:
            continue
        for slot, name in enumerate(node.input):
            dq = index.producer.get(name)
            if dq is None or dq.op_type != 'DequantizeLinear':
                continue
            source = _float_source(dq, index, node, slot, float_nodes, float_inits)
            if source is None:
                continue
            if source in float_inits:
                # The quantizer may name the dequantized weight like the float one.
                renamed = source + '_float' if source in index.producer else source
                if renamed not in existing:
                    init = onnx.TensorProto()
                    init.CopyFrom(float_inits[source])
                    init.name = renamed
                    graph.initializer.append(init)
                    existing.add(renamed)
                source = renamed
            key = (name, group)
            if key not in gated:
                out = f'{name}_gated_{group}'
                diff, scaled = out + '_diff', out + '_scaled'
                new_nodes.setdefault(positions[id(node)], []).extend([
                    helper.make_node('Sub', [name, source], [diff], name=diff),
                    helper.make_node('Mul', [gates[group], diff], [scaled], name=scaled),
                    helper.make_node('Add', [source, scaled], [out], name=out)])
                gated[key] = out
            node.input[slot] = gated[key]
    nodes = []
    for i, node in enumerate(graph.node):
        nodes.extend(new_nodes.get(i, []))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    for gate in gates:
        graph.input.append(helper.make_tensor_value_info(gate, TensorProto.FLOAT, []))
    return model


def _float_source(dq: onnx.NodeProto, index: GraphIndex, consumer: onnx.NodeProto, slot: int,
                  float_nodes, float_inits) -> Optional[str]:
    """The float tensor a DequantizeLinear output stands for: the input of its
    QuantizeLinear (activations) or the float weight the consumer had before."""
    q = index.producer.get(dq.input[0])
    if q is not None and q.op_type == 'QuantizeLinear':
        return q.input[0]
    original = float_nodes.get(consumer.name)
    if original is not None and slot < len(original.input) and \
            original.input[slot] in float_inits:
        return original.input[slot]
    return None


class _GatedRunner:
    """Evaluates the error of gate settings on fixed inputs against the fp32 outputs."""

    def __init__(self, gated: onnx.ModelProto, float_model: onnx.ModelProto,
                 inputs: List[Dict[str, np.ndarray]], num_gates: int,
                 threads: Optional[int]):
        import onnxruntime as ort
        self.inputs = inputs
        self.num_gates = num_gates
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.reference = _run_all(float_model.SerializeToString(), inputs, threads)
        # Basic optimisations only: the int8 fusions would change the gated arithmetic.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.session = ort.InferenceSession(gated.SerializeToString(), options,
                                            providers=['CPUExecutionProvider'])
        self.evaluations = 0

    def error(self, float_gates: Iterable[int] = ()) -> float:
        gates = np.ones(self.num_gates, np.float32)
        gates[list(float_gates)] = 0.
        feeds_gates = {f'gate_{i}': np.array(g, np.float32) for i, g in enumerate(gates)}
        outputs = _run_batched(self.session, self.inputs, feeds_gates)
        self.evaluations += 1
        return relative_rms_error(outputs, self.reference)


#: Inputs run together when the graph's batch axis is dynamic.
BATCH = 16


def _batches(session, inputs: List[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """``inputs`` concatenated along axis 0 into batches of up to :data:`BATCH` when every
    graph input has a dynamic first axis and the inputs agree in their other axes;
    otherwise as they are."""
    graph_inputs = [i for i in session.get_inputs() if i.name in inputs[0]]
    dynamic = all(i.shape and not isinstance(i.shape[0], int) for i in graph_inputs)
    names = [i.name for i in graph_inputs]
    same = all(len({tuple(f[n].shape[1:]) for f in inputs}) == 1 for n in names)
    if not (dynamic and same):
        return inputs
    return [{n: np.concatenate([f[n] for f in inputs[i:i + BATCH]]) for n in names}
            for i in range(0, len(inputs), BATCH)]


def _run_batched(session, inputs, extra=None) -> List[np.ndarray]:
    """Outputs of ``session`` on ``inputs``, batched where possible (see :func:`_batches`);
    outputs whose first axis is the batch are compared as a whole either way."""
    extra = extra or {}
    return [out for feeds in _batches(session, inputs)
            for out in session.run(None, {**feeds, **extra})]


def _run_all(graph, inputs, threads) -> List[np.ndarray]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(graph, options, providers=['CPUExecutionProvider'])
    return _run_batched(session, inputs)


def find_float_nodes(model: ModelLike,
                     calibration_inputs: Iterable[Inputs],
                     config: Optional[QuantizeConfig] = None,
                     budget: float = 0.05,
                     eval_inputs: Optional[Iterable[Inputs]] = None,
                     max_groups: int = 24,
                     refine: int = 4,
                     max_float_groups: int = 8,
                     min_gain: float = 0.02,
                     threads: Optional[int] = None,
                     log=None) -> dict:
    """The sensitivity pass (see the module docstring).

    Args:
        model: The fp32 graph (path or ModelProto), as exported.
        calibration_inputs: Input dicts for calibration (and for the error, unless
            ``eval_inputs`` is given).
        config (QuantizeConfig): The quantization the pass measures; defaults to
            ``QuantizeConfig()``. The float decisions apply to either format.
        budget (float): Largest acceptable relative RMS error of the network outputs.
        eval_inputs: Input dicts the error is measured on (default: the calibration
            inputs).
        max_groups (int): Groups measured in the first round.
        refine (int): How many of the most sensitive groups are split into sub-modules and
            measured again.
        max_float_groups (int): At most this many groups are kept in float; if the budget
            is still not met, the result says so (``within_budget`` False).
        min_gain (float): A group is kept only if it lowers the error (with the groups
            kept before it) by at least this fraction of the error so far.
        threads (int, optional): onnxruntime threads for the measurements.
        log (callable, optional): Called with progress lines.

    Returns:
        dict: ``float_nodes`` (names in the prepared graph, to pass to
        :func:`emo_mm.deploy.quantize.quantize` with the same ``config``),
        ``float_groups`` (per kept group: ``group``, ``nodes``, ``op_types``,
        ``error_quantized`` (all int8), ``error_group_float`` (that group alone in
        float), ``error_after`` (the kept groups so far in float)), ``groups`` (every
        measured group, most sensitive first), ``error_int8`` and ``error_final``
        (simulated by the gates), ``error_int8_real`` / ``error_final_real``
        (onnxruntime's int8 graphs), ``budget``, ``within_budget`` (of the real final
        error), ``evaluations``, ``candidates``, ``seconds`` (wall) and ``cpu_seconds``
        (this process), ``metric``.
    """
    start, cpu_start = time.time(), time.process_time()
    log = log or (lambda line: None)
    config = config or QuantizeConfig()
    prepared = prepare(model, config)
    network = network_graph(prepared)
    inputs = check_inputs(network, list(calibration_inputs))
    evaluation = check_inputs(network, list(eval_inputs)) if eval_inputs is not None else inputs
    candidates = candidate_nodes(network, config)
    nodes = {node.name: node for node in network.graph.node}
    coarse = group_nodes(network, candidates, max_groups)
    # Gates at the finer level; a coarse group is the set of its fine groups' gates.
    fine: Dict[str, List[str]] = {}
    children: Dict[str, List[int]] = {}
    for key, names in coarse.items():
        parts = split_group(network, key, names)
        children[key] = []
        for child, child_names in parts.items():
            children[key].append(len(fine))
            fine[f'{child}#{len(fine)}' if child in fine else child] = child_names
    fine_keys, fine_names = list(fine), list(fine.values())
    qdq = QuantizeConfig(**{**config.to_dict(), 'quant_format': 'qdq'})
    with tempfile.TemporaryDirectory(prefix='emo_mm_sensitivity.') as folder:
        cache = calibrate(network, inputs, config, osp.join(folder, 'ranges.json'))
        path = osp.join(folder, 'int8.onnx')
        quantize_prepared(network, path, qdq, cache)
        runner = _GatedRunner(gated_graph(onnx.load(path), network, fine), network,
                              evaluation, len(fine), threads)
        error_int8_real = relative_rms_error(_run_all(path, evaluation, threads),
                                             runner.reference)
        error_all = runner.error()
        log(f'all quantized: error {error_all:.4f} (onnxruntime int8 {error_int8_real:.4f}); '
            f'budget {budget}')

        measured = []

        def measure(key: str, gates: List[int]) -> None:
            names = [n for g in gates for n in fine_names[g]]
            error = runner.error(gates)
            measured.append(dict(group=key, gates=gates, nodes=names, error_group_float=error,
                                 reduction=error_all - error,
                                 op_types=sorted({nodes[n].op_type for n in names})))
            log(f'  {key}: {len(names)} nodes in float -> error {error:.4f}')

        if error_all > budget:
            for key in coarse:
                measure(key, children[key])
            top = sorted(measured, key=lambda g: -g['reduction'])[:refine]
            for group in top:
                if len(group['gates']) > 1:
                    for gate in group['gates']:
                        measure(fine_keys[gate], [gate])
        ranked = sorted(measured, key=lambda g: -g['reduction'])
        kept, float_gates, error = [], set(), error_all
        for group in ranked:
            if error <= budget or len(kept) >= max_float_groups or group['reduction'] <= 0:
                break
            if set(group['gates']) <= float_gates:
                continue  # inside a group already kept (a parent or a child)
            trial = float_gates | set(group['gates'])
            trial_error = runner.error(sorted(trial))
            if trial_error > error * (1 - min_gain):
                continue  # too little gain together with the groups already kept
            float_gates, error = trial, trial_error
            kept.append(dict(group=group['group'], nodes=group['nodes'],
                             op_types=group['op_types'], error_quantized=error_all,
                             error_group_float=group['error_group_float'],
                             error_after=trial_error))
            log(f'keep {group["group"]} in float: error {trial_error:.4f}')
        float_nodes = [n for g in sorted(float_gates) for n in fine_names[g]]
        if float_nodes:
            quantize_prepared(network, path, config, cache, float_nodes)
            error_final_real = relative_rms_error(_run_all(path, evaluation, threads),
                                                  runner.reference)
        else:
            error_final_real = error_int8_real
        log(f'onnxruntime int8 with {len(float_nodes)} float nodes: error '
            f'{error_final_real:.4f}')
    for group in ranked:
        del group['gates']
    return dict(float_nodes=float_nodes, float_groups=kept, groups=ranked,
                error_int8=error_all, error_final=error, error_int8_real=error_int8_real,
                error_final_real=error_final_real, budget=budget,
                within_budget=error_final_real <= budget, evaluations=runner.evaluations,
                candidates=len(candidates), seconds=time.time() - start,
                cpu_seconds=time.process_time() - cpu_start,
                metric='relative RMS error of the network outputs against fp32')


def quantize_within_budget(model: ModelLike,
                           out_path: str,
                           calibration_inputs: Iterable[Inputs],
                           config: Optional[QuantizeConfig] = None,
                           budget: float = 0.05,
                           eval_inputs: Optional[Iterable[Inputs]] = None,
                           threads: Optional[int] = None,
                           log=None,
                           **search) -> dict:
    """The sensitivity pass, then the quantization with the nodes it keeps in float.

    What a deploy tool calls with its graph and N images of the config's own pipeline;
    the returned record goes into the bundle's ``deploy.json``.

    Args:
        model, calibration_inputs, config, budget, eval_inputs, threads, log: See
            :func:`find_float_nodes`.
        out_path (str): Where the int8 graph is written.
        **search: ``max_groups``, ``refine``, ``max_float_groups``, ``min_gain`` of
            :func:`find_float_nodes`.

    Returns:
        dict: :func:`emo_mm.deploy.quantize.quantize`'s record with ``sensitivity``:
        the budget, the errors (all int8, final; onnxruntime's graphs), the metric,
        and per float group its nodes and measured errors (the reason it stays float).
    """
    from .quantize import quantize
    config = config or QuantizeConfig()
    calibration_inputs = list(calibration_inputs)
    result = find_float_nodes(model, calibration_inputs, config, budget, eval_inputs,
                              threads=threads, log=log, **search)
    record = quantize(model, out_path, calibration_inputs, config,
                      float_nodes=result['float_nodes'])
    record['sensitivity'] = dict(
        budget=budget, metric=result['metric'], error_int8=result['error_int8_real'],
        error_final=result['error_final_real'], within_budget=result['within_budget'],
        groups_measured=len(result['groups']), seconds=round(result['seconds'], 1),
        cpu_seconds=round(result['cpu_seconds'], 1))
    record['float_reasons'] = [
        dict(group=g['group'], nodes=g['nodes'], op_types=g['op_types'],
             reason=(f'relative RMS error with every node int8 {g["error_quantized"]:.4g}, '
                     f'with this group alone in float {g["error_group_float"]:.4g}, with '
                     f'it and the groups before it in float {g["error_after"]:.4g} '
                     f'(budget {budget:g})'),
             error_quantized=g['error_quantized'], error_group_float=g['error_group_float'],
             error_after=g['error_after'])
        for g in result['float_groups']]
    return record
