"""ONNX graph rewrites that make an exported graph quantization-friendly.

Each rewrite replaces a pattern of the exported graph by an equal computation that the
onnxruntime quantizer and its CPU kernels handle better; each returns how many places it
changed. They work on an ``onnx.ModelProto`` in place and keep every graph input, output
and initializer name.

* :func:`fuse_gelu`: the exact-erf GELU (``x * 0.5 * (1 + erf(x / sqrt 2))``, five nodes
  as torch exports ``nn.GELU``) becomes one ``com.microsoft.Gelu`` node. Unfused, the
  quantizer puts the Add and the two Muls on 8-bit tensors of their own (each a rounding
  step and a pass over the map) while Div and Erf stay float between them; fused, the
  GELU is one float island between a DequantizeLinear and a QuantizeLinear.
* :func:`fuse_silu`: ``x * sigmoid(x)`` becomes one ``com.microsoft.QuickGelu`` node
  (``alpha=1``), which the quantizer leaves in float; unfused, it becomes
  QLinearSigmoid and QLinearMul.
* :func:`unshare_initializers`: a float initializer read by several nodes gets one copy
  per reader. TorchScript exports merge equal tensors (e.g. zero biases) into one, and
  onnxruntime's QOperator quantizer then reuses one node's quantized form (an int32 conv
  bias) for another (an 8-bit Add operand): a graph that fails to load.
* :func:`split_convs`: a convolution whose output is only split along its channels
  (EMO's ``qk`` projection, chunked into q and k) becomes one convolution per part: no
  Split node, and each part (q, k) gets its own 8-bit range instead of a shared one.
"""
import math
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Domain of onnxruntime's contrib operators (Gelu, QuickGelu, QLinear*).
MS_DOMAIN = 'com.microsoft'


class GraphIndex:
    """Producers, consumers and constant values of a graph's tensors.

    Args:
        graph (onnx.GraphProto): The graph (read when built; rebuild after changes).
    """

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer: Dict[str, onnx.NodeProto] = {}
        self.consumers: Dict[str, List[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.outputs = {out.name for out in graph.output}

    def constant(self, name: str) -> Optional[np.ndarray]:
        """The value of ``name`` if it is an initializer or a Constant node's output."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == 'Constant' and node.attribute:
            attr = node.attribute[0]
            if attr.name == 'value':
                return numpy_helper.to_array(attr.t)
            if attr.name in ('value_float', 'value_int'):
                return np.array(helper.get_attribute_value(attr))
        return None

    def scalar(self, name: str) -> Optional[float]:
        value = self.constant(name)
        if value is None or value.size != 1:
            return None
        return float(value.reshape(()))

    def only_consumer(self, name: str) -> Optional[onnx.NodeProto]:
        """The single node that reads ``name`` (None if several, none, or an output)."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.outputs:
            return None
        return users[0]


def _other_input(node: onnx.NodeProto, name: str) -> Optional[str]:
    """The input of a binary node that is not ``name`` (None if both are)."""
    if len(node.input) != 2:
        return None
    first, second = node.input
    if first == name:
        return second if second != name else None
    return first if second == name else None


def _close(value: Optional[float], target: float, tol: float = 1e-6) -> bool:
    return value is not None and abs(value - target) <= tol * max(1., abs(target))


def _ensure_domain(model: onnx.ModelProto, domain: str, version: int = 1) -> None:
    if not any(opset.domain == domain for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, version))


def _replace(graph: onnx.GraphProto, remove: Iterable[onnx.NodeProto],
             add: List[Tuple[onnx.NodeProto, onnx.NodeProto]]) -> None:
    """Removes ``remove`` and inserts each new node at the position of its anchor (an
    old node), which keeps the node list topologically sorted."""
    removed = {id(node) for node in remove}
    anchors = {id(anchor): new for new, anchor in add}
    nodes = []
    for node in graph.node:
        if id(node) in anchors:
            nodes.append(anchors[id(node)])
        if id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _gelu_from_erf(index: GraphIndex, erf: onnx.NodeProto):
    """Matches ``x * 0.5 * (1 + erf(x / sqrt 2))`` around ``erf`` in the orders torch's
    exporters write it. Returns (x, output name, matched nodes) or None."""
    scaled = erf.input[0]
    first = index.producer.get(scaled)
    if first is None or index.only_consumer(scaled) is not erf:
        return None
    if first.op_type == 'Div' and _close(index.scalar(first.input[1]), math.sqrt(2.)):
        x = first.input[0]
    elif first.op_type == 'Mul':
        x = next((name for name in first.input
                  if _close(index.scalar(_other_input(first, name) or ''), 1 / math.sqrt(2.))),
                 None)
        if x is None:
            return None
    else:
        return None
    add = index.only_consumer(erf.output[0])
    if add is None or add.op_type != 'Add' or not _close(
            index.scalar(_other_input(add, erf.output[0]) or ''), 1.):
        return None
    nodes = [first, erf, add]
    # Then two Muls, by 0.5 and by x, in either order; or (x * 0.5) * (1 + erf).
    current = add.output[0]
    factors = {'half': False, 'x': False}
    for _ in range(2):
        mul = index.only_consumer(current) if current not in index.outputs else None
        if mul is None or mul.op_type != 'Mul':
            return None
        other = _other_input(mul, current)
        if other == x and not factors['x']:
            factors['x'] = True
        elif _close(index.scalar(other or ''), 0.5) and not factors['half']:
            factors['half'] = True
        else:
            half_x = index.producer.get(other or '')
            if (half_x is None or half_x.op_type != 'Mul' or factors['x'] or factors['half']
                    or x not in half_x.input
                    or not _close(index.scalar(_other_input(half_x, x) or ''), 0.5)
                    or index.only_consumer(half_x.output[0]) is not mul):
                return None
            factors = {'half': True, 'x': True}
            nodes += [half_x]
        nodes.append(mul)
        current = mul.output[0]
        if all(factors.values()):
            return x, current, nodes
    return None


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replaces each exact-erf GELU subgraph by one ``com.microsoft.Gelu`` node.

    Returns:
        int: The number of GELUs fused.
    """
    graph = model.graph
    index = GraphIndex(graph)
    removed, added = [], []
    for node in list(graph.node):
        if node.op_type != 'Erf':
            continue
        match = _gelu_from_erf(index, node)
        if match is None:
            continue
        x, output, nodes = match
        gelu = helper.make_node('Gelu', [x], [output], name=f'{node.name}_gelu',
                                domain=MS_DOMAIN)
        gelu.metadata_props.extend(node.metadata_props)  # the exporter's module scope
        removed += nodes
        # The anchor is the last matched node in graph order, where x and the other
        # operands are all available.
        last = max(nodes, key=lambda n: _position(graph, n))
        added.append((gelu, last))
    if added:
        _replace(graph, removed, added)
        _drop_unused_initializers(graph)
        _ensure_domain(model, MS_DOMAIN)
    return len(added)


def fuse_silu(model: onnx.ModelProto) -> int:
    """Replaces each ``Mul(x, Sigmoid(x))`` by ``com.microsoft.QuickGelu(x, alpha=1)``.

    Returns:
        int: The number of SiLUs fused.
    """
    graph = model.graph
    index = GraphIndex(graph)
    removed, added = [], []
    for node in list(graph.node):
        if node.op_type != 'Sigmoid':
            continue
        x = node.input[0]
        mul = index.only_consumer(node.output[0])
        if mul is None or mul.op_type != 'Mul' or _other_input(mul, node.output[0]) != x:
            continue
        silu = helper.make_node('QuickGelu', [x], [mul.output[0]], name=f'{mul.name}_silu',
                                domain=MS_DOMAIN, alpha=1.0)
        silu.metadata_props.extend(mul.metadata_props)
        removed += [node, mul]
        added.append((silu, mul))
    if added:
        _replace(graph, removed, added)
        _ensure_domain(model, MS_DOMAIN)
    return len(added)


def _position(graph: onnx.GraphProto, node: onnx.NodeProto) -> int:
    for i, other in enumerate(graph.node):
        if other is node:
            return i
    raise ValueError(f'node {node.name} is not in the graph')


def _split_sizes(split: onnx.NodeProto, index: GraphIndex, channels: int) -> Optional[List[int]]:
    if len(split.input) > 1 and split.input[1]:
        sizes = index.constant(split.input[1])
        return None if sizes is None else [int(v) for v in sizes.reshape(-1)]
    attrs = {a.name: helper.get_attribute_value(a) for a in split.attribute}
    if 'split' in attrs:
        return [int(v) for v in attrs['split']]
    parts = attrs.get('num_outputs', len(split.output))
    if channels % parts:
        return None  # uneven num_outputs splits: leave them to the runtime
    return [channels // parts] * parts


def split_convs(model: onnx.ModelProto) -> int:
    """Replaces ``Split(Conv(x), axis=1)`` by one Conv per output part (exact: each output
    channel is computed as before, from the same weights and bias).

    Returns:
        int: The number of convolutions split.
    """
    graph = model.graph
    index = GraphIndex(graph)
    removed, added, new_inits = [], [], []
    for split in list(graph.node):
        if split.op_type != 'Split':
            continue
        conv = index.producer.get(split.input[0])
        attrs = {a.name: helper.get_attribute_value(a) for a in split.attribute}
        if (conv is None or conv.op_type != 'Conv' or attrs.get('axis', 0) != 1
                or index.only_consumer(conv.output[0]) is not split):
            continue
        weight = index.constant(conv.input[1])
        bias = index.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        groups = next((helper.get_attribute_value(a) for a in conv.attribute
                       if a.name == 'group'), 1)
        if weight is None or groups != 1 or (len(conv.input) > 2 and conv.input[2]
                                             and bias is None):
            continue
        sizes = _split_sizes(split, index, weight.shape[0])
        if sizes is None or sum(sizes) != weight.shape[0] or len(sizes) != len(split.output):
            continue
        start = 0
        convs = []
        for part, (size, output) in enumerate(zip(sizes, split.output)):
            stop = start + size
            w_name = f'{conv.input[1]}_part{part}'
            new_inits.append(numpy_helper.from_array(weight[start:stop], w_name))
            inputs = [conv.input[0], w_name]
            if bias is not None:
                b_name = f'{conv.input[2]}_part{part}'
                new_inits.append(numpy_helper.from_array(bias[start:stop], b_name))
                inputs.append(b_name)
            new = helper.make_node('Conv', inputs, [output], name=f'{conv.name}_part{part}')
            new.attribute.extend(conv.attribute)
            new.metadata_props.extend(conv.metadata_props)
            convs.append(new)
            start = stop
        removed += [conv, split]
        added += [(new, split) for new in convs]
    if added:
        graph.initializer.extend(new_inits)
        _replace_many(graph, removed, added)
        _drop_unused_initializers(graph)
    return len(removed) // 2


def _replace_many(graph: onnx.GraphProto, remove, add) -> None:
    """Like :func:`_replace`, with several new nodes per anchor (kept in order)."""
    removed = {id(node) for node in remove}
    anchors: Dict[int, List[onnx.NodeProto]] = {}
    for new, anchor in add:
        anchors.setdefault(id(anchor), []).append(new)
    nodes = []
    for node in graph.node:
        nodes.extend(anchors.get(id(node), []))
        if id(node) not in removed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    used.update(out.name for out in graph.output)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def unshare_initializers(model: onnx.ModelProto) -> int:
    """Gives every reader of a shared float initializer its own copy (see the module
    docstring). Returns the number of copies made."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer
             if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    seen: Dict[str, int] = {}
    copies = []
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 1:
                continue
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            copy.name = f'{name}_copy{seen[name] - 1}'
            copies.append(copy)
            node.input[slot] = copy.name
    graph.initializer.extend(copies)
    return len(copies)
