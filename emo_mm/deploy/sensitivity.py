"""Which nodes of a graph stay in float: a measured per-group sensitivity pass.

>>> from emo_mm.deploy.sensitivity import find_float_nodes
>>> result = find_float_nodes('end2end.onnx', calibration_inputs, budget=0.05)  # doctest: +SKIP
>>> result['float_nodes'], result['groups'][0]                                  # doctest: +SKIP

The network part of the graph (:func:`emo_mm.deploy.quantize.network_graph`: the tail
cut off, its inputs as outputs) is quantized whole once; then, group by group, it is
quantized again with that group kept in float, and the error of its outputs against the
fp32 graph on the same inputs is measured each time. The groups whose restoration lowers
the error most are kept in float, one after the other, until the measured error of the
graph quantized *with all of them in float* is within ``budget``. Every kept group comes
with its figures: the error with everything quantized, with that group alone in float,
and of the final graph.

Groups are the exporter's module scopes (the ``pkg.torch.onnx.name_scopes`` metadata of
torch.export graphs: blocks such as ``model.backbone.stage3.1``), at the deepest level
that gives at most ``max_groups`` groups; the most sensitive groups are then split into
their sub-modules and measured again, so that what stays float is as small as the
measurements allow. Graphs without that metadata are grouped by weight layer: each
weight layer with the nodes after it up to the next one, merged in order.

The error is the relative RMS error over all network outputs,
``sqrt(sum ||y_int8 - y_fp32||^2 / sum ||y_fp32||^2)``, on the calibration inputs
(or ``eval_inputs``).
"""
import os.path as osp
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import onnx

from .quantize import (Inputs, ModelLike, QuantizeConfig, calibrate, check_inputs,
                       excluded_nodes, network_graph, prepare, quantizable_op_types,
                       quantize_prepared)
from .rewrite import GraphIndex

SCOPES_KEY = 'pkg.torch.onnx.name_scopes'


def _scopes(node: onnx.NodeProto) -> Optional[List[str]]:
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                import ast
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            # The last entry names the node itself (e.g. 'permute_2'), not a module.
            return [s for s in scopes[:-1] if s] or None
    return None


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
    """Groups ``names`` by module scope (see the module docstring); at most
    ``max_groups`` groups where the graph's metadata allows, keyed by scope."""
    nodes = {node.name: node for node in model.graph.node}
    scopes = {name: _scopes(nodes[name]) for name in names}
    if all(scopes.values()):
        depth = max(len(s) for s in scopes.values())
        for level in range(depth, 0, -1):
            keys = {name: s[min(level, len(s)) - 1] for name, s in scopes.items()}
            if len(set(keys.values())) <= max_groups:
                break
    else:
        keys = _segment_keys(model, names)
        order = list(dict.fromkeys(keys[name] for name in names))
        # Merge consecutive segments into at most max_groups groups.
        per_group = max(1, -(-len(order) // max_groups))
        merged = {key: order[(i // per_group) * per_group] for i, key in enumerate(order)}
        keys = {name: merged[key] for name, key in keys.items()}
    groups: Dict[str, List[str]] = {}
    for name in names:
        groups.setdefault(keys[name], []).append(name)
    return groups


def _subgroups(model: onnx.ModelProto, key: str, names: Sequence[str]) -> Dict[str, List[str]]:
    """``names`` (one group) split by the next module scope below ``key``."""
    nodes = {node.name: node for node in model.graph.node}
    groups: Dict[str, List[str]] = {}
    for name in names:
        scopes = _scopes(nodes[name]) or []
        child = next((s for s in scopes if s.startswith(key + '.')), key)
        groups.setdefault(child, []).append(name)
    return groups


def relative_rms_error(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    """sqrt(sum ||a - e||^2 / sum ||e||^2) over pairs of arrays."""
    num = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(e, np.float64))**2))
              for a, e in zip(actual, expected))
    den = sum(float(np.sum(np.asarray(e, np.float64)**2)) for e in expected)
    return float(np.sqrt(num / max(den, 1e-30)))


class _Evaluator:
    """Runs graphs on fixed inputs and compares their outputs to the fp32 graph's."""

    def __init__(self, model: onnx.ModelProto, inputs: List[Dict[str, np.ndarray]],
                 threads: Optional[int]):
        self.inputs = inputs
        self.threads = threads
        self.reference = self.run(model.SerializeToString())
        self.calls = 0

    def run(self, graph) -> List[np.ndarray]:
        import onnxruntime as ort
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(graph, options, providers=['CPUExecutionProvider'])
        outputs = [session.run(None, feeds) for feeds in self.inputs]
        return [out for per_input in outputs for out in per_input]

    def error(self, graph) -> float:
        self.calls += 1
        return relative_rms_error(self.run(graph), self.reference)


def find_float_nodes(model: ModelLike,
                     calibration_inputs: Iterable[Inputs],
                     config: Optional[QuantizeConfig] = None,
                     budget: float = 0.05,
                     eval_inputs: Optional[Iterable[Inputs]] = None,
                     max_groups: int = 24,
                     refine: int = 4,
                     max_float_groups: int = 8,
                     threads: Optional[int] = None,
                     log=None) -> dict:
    """The sensitivity pass (see the module docstring).

    Args:
        model: The fp32 graph (path or ModelProto), as exported.
        calibration_inputs: Input dicts for calibration (and for the error, unless
            ``eval_inputs`` is given).
        config (QuantizeConfig): The quantization the pass measures; defaults to
            ``QuantizeConfig()``.
        budget (float): Largest acceptable relative RMS error of the network outputs.
        eval_inputs: Input dicts the error is measured on (default: the calibration
            inputs).
        max_groups (int): Groups measured in the first round.
        refine (int): How many of the most sensitive groups are split into sub-modules and
            measured again.
        max_float_groups (int): At most this many groups are kept in float; if the budget
            is still not met, the result says so (``within_budget`` False).
        threads (int, optional): onnxruntime threads for the measurements.
        log (callable, optional): Called with progress lines.

    Returns:
        dict: ``float_nodes`` (names in the prepared graph, to pass to
        :func:`emo_mm.deploy.quantize.quantize`), ``float_groups`` (per kept group:
        ``group``, ``nodes``, ``op_types``, ``error_quantized`` (all int8),
        ``error_group_float`` (this group alone in float), ``error_after`` (the kept
        groups so far in float)), ``groups`` (every measured group, most sensitive
        first), ``error_fp32`` (0 by definition), ``error_int8``, ``error_final``,
        ``budget``, ``within_budget``, ``quantizations`` and ``seconds``.
    """
    start = time.time()
    log = log or (lambda line: None)
    config = config or QuantizeConfig()
    prepared = prepare(model, config)
    network = network_graph(prepared)
    inputs = check_inputs(network, list(calibration_inputs))
    evaluation = check_inputs(network, list(eval_inputs)) if eval_inputs is not None else inputs
    evaluator = _Evaluator(network, evaluation, threads)
    candidates = candidate_nodes(network, config)
    nodes = {node.name: node for node in network.graph.node}
    with tempfile.TemporaryDirectory(prefix='emo_mm_sensitivity.') as folder:
        cache = calibrate(network, inputs, config, osp.join(folder, 'ranges.json'))
        path = osp.join(folder, 'int8.onnx')

        def error_with_float(float_nodes: Sequence[str]) -> float:
            quantize_prepared(network, path, config, cache, float_nodes)
            return evaluator.error(path)

        error_all = error_with_float([])
        log(f'all quantized: error {error_all:.4f} (budget {budget})')
        measured = []

        def measure(groups: Dict[str, List[str]]) -> None:
            for key, names in groups.items():
                error = error_with_float(names)
                measured.append(dict(group=key, nodes=names, error_group_float=error,
                                     reduction=error_all - error,
                                     op_types=sorted({nodes[n].op_type for n in names})))
                log(f'  {key}: {len(names)} nodes float -> error {error:.4f}')

        groups = group_nodes(network, candidates, max_groups)
        if error_all > budget:
            measure(groups)
            # Split the most sensitive groups into their sub-modules.
            top = sorted(measured, key=lambda g: -g['reduction'])[:refine]
            for group in top:
                children = _subgroups(network, group['group'], group['nodes'])
                if len(children) > 1:
                    measure(children)
        ranked = sorted(measured, key=lambda g: -g['reduction'])
        kept, float_nodes, error = [], [], error_all
        for group in ranked:
            if error <= budget or len(kept) >= max_float_groups or group['reduction'] <= 0:
                break
            new = [name for name in group['nodes'] if name not in float_nodes]
            if not new:
                continue  # inside a group already kept (a parent or a child)
            trial = float_nodes + new
            trial_error = error_with_float(trial)
            if trial_error >= error:
                continue  # no gain together with the groups already kept
            float_nodes, error = trial, trial_error
            kept.append(dict(group=group['group'], nodes=group['nodes'],
                             op_types=group['op_types'], error_quantized=error_all,
                             error_group_float=group['error_group_float'],
                             error_after=trial_error))
            log(f'keep {group["group"]} in float: error {trial_error:.4f}')
    return dict(float_nodes=float_nodes, float_groups=kept, groups=ranked, error_fp32=0.0,
                error_int8=error_all, error_final=error, budget=budget,
                within_budget=error <= budget, quantizations=evaluator.calls,
                candidates=len(candidates), seconds=time.time() - start,
                metric='relative RMS error of the network outputs against fp32')
