"""int8 quantization of ONNX graphs: rewrites, network/tail split, formats, sensitivity pass."""
import math

import numpy as np
import pytest

onnx = pytest.importorskip('onnx', reason='onnx is a test dependency (requirements)')
ort = pytest.importorskip('onnxruntime', reason='onnxruntime is a test dependency')

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from emo_mm.deploy.quantize import (QuantizeConfig, load_model, network_nodes,  # noqa: E402
                                    network_outputs, optimize_basic, quantize)
from emo_mm.deploy.rewrite import fuse_gelu, fuse_silu  # noqa: E402
from emo_mm.deploy.sensitivity import find_float_nodes, relative_rms_error  # noqa: E402


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def small_graph(tail: bool = False, seed: int = 0, shared_bias: bool = False) -> onnx.ModelProto:
    """A small conv net with the EMO activations as torch exports them (SiLU as Sigmoid *
    Mul, GELU as the five-node erf form), an attention-like MatMul / Softmax, a
    classifier Gemm and, with ``tail``, a task tail (Sigmoid scores, TopK, ArgMax)."""
    rng = np.random.default_rng(seed)
    c = 8
    inits = [
        _init('w1', rng.normal(0, 0.4, (c, 3, 3, 3))), _init('b1', rng.normal(0, 0.1, c)),
        _init('w2', rng.normal(0, 0.4, (c, 1, 3, 3))), _init('b2', rng.normal(0, 0.1, c)),
        _init('w3', rng.normal(0, 0.3, (c, c, 1, 1))), _init('b3', rng.normal(0, 0.1, c)),
        _init('w4', rng.normal(0, 0.3, (c, c, 1, 1))), _init('b4', rng.normal(0, 0.1, c)),
        _init('fc_w', rng.normal(0, 0.3, (10, c))), _init('fc_b', rng.normal(0, 0.1, 10)),
        _init('sqrt2', math.sqrt(2.)), _init('one', 1.), _init('half', 0.5),
        numpy_helper.from_array(np.array([1, c, 8, 8], np.int64), 'map_shape'),
        numpy_helper.from_array(np.array([1, c, 64], np.int64), 'tokens_shape'),
        numpy_helper.from_array(np.array([3], np.int64), 'k'),
    ]
    node = helper.make_node
    nodes = [
        node('Conv', ['input', 'w1', 'b1'], ['c1'], name='conv1', pads=[1, 1, 1, 1]),
        node('Sigmoid', ['c1'], ['s1'], name='silu1_sigmoid'),
        node('Mul', ['c1', 's1'], ['a1'], name='silu1_mul'),
        node('Conv', ['a1', 'w2', 'b2'], ['c2'], name='conv_dw', pads=[1, 1, 1, 1], group=c),
        node('Div', ['c2', 'sqrt2'], ['g0'], name='gelu_div'),
        node('Erf', ['g0'], ['g1'], name='gelu_erf'),
        node('Add', ['g1', 'one'], ['g2'], name='gelu_add'),
        node('Mul', ['half', 'g2'], ['g3'], name='gelu_half'),
        node('Mul', ['c2', 'g3'], ['a2'], name='gelu_mul'),
        node('Conv', ['a2', 'w3', 'b3'], ['c3'], name='conv_pw'),
        # Attention over the 64 tokens of the 8x8 map: softmax(t^T t) mixes them.
        node('Reshape', ['c3', 'tokens_shape'], ['t'], name='tokens'),
        node('Transpose', ['t'], ['tt'], name='tokens_t', perm=[0, 2, 1]),
        node('MatMul', ['tt', 't'], ['logits'], name='attn_qk'),
        node('Softmax', ['logits'], ['attn'], name='attn_softmax', axis=-1),
        node('MatMul', ['t', 'attn'], ['mixed'], name='attn_v'),
        node('Reshape', ['mixed', 'map_shape'], ['m'], name='untokens'),
        node('Add', ['m', 'c3'], ['r'], name='residual'),
        node('Conv', ['r', 'w4', 'b4'], ['c4'], name='conv_out'),
        node('GlobalAveragePool', ['c4'], ['p'], name='pool'),
        node('Flatten', ['p'], ['f'], name='flatten'),
        node('Gemm', ['f', 'fc_w', 'fc_b'], ['logits_out'], name='fc', transB=1),
    ]
    if shared_bias:
        nodes[-1:-1] = [node('Add', ['f', 'b1'], ['f_shifted'], name='shift')]
        nodes[-1].input[0] = 'f_shifted'
    outputs = [helper.make_tensor_value_info('logits_out', TensorProto.FLOAT, [1, 10])]
    if tail:
        nodes += [
            node('Sigmoid', ['logits_out'], ['scores'], name='tail_sigmoid'),
            node('TopK', ['scores', 'k'], ['top_scores', 'top_labels'], name='tail_topk'),
            node('ArgMax', ['logits_out'], ['label'], name='tail_argmax', axis=1),
        ]
        outputs = [helper.make_tensor_value_info('top_scores', TensorProto.FLOAT, [1, 3]),
                   helper.make_tensor_value_info('top_labels', TensorProto.INT64, [1, 3]),
                   helper.make_tensor_value_info('label', TensorProto.INT64, [1, 1])]
    graph = helper.make_graph(
        nodes, 'small', [helper.make_tensor_value_info('input', TensorProto.FLOAT,
                                                       [1, 3, 8, 8])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def images(count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [{'input': rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(count)]


def run(model_or_path, feeds):
    graph = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) \
        else str(model_or_path)
    return ort.InferenceSession(graph, providers=['CPUExecutionProvider']).run(None, feeds)


def test_fused_activations_keep_fp32_outputs():
    model = small_graph()
    feeds = images(1)[0]
    expected = run(model, feeds)[0]
    fused = small_graph()
    assert fuse_gelu(fused) == 1 and fuse_silu(fused) == 1
    ops = [n.op_type for n in fused.graph.node]
    assert 'Erf' not in ops and 'Sigmoid' not in ops
    assert ops.count('Gelu') == 1 and ops.count('QuickGelu') == 1
    actual = run(fused, feeds)[0]
    assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max()


def test_fuse_gelu_leaves_other_erf_uses_alone():
    model = small_graph()
    # A second reader of erf's input breaks the pattern: the Div result is needed twice.
    model.graph.node.append(helper.make_node('Identity', ['g0'], ['g0_copy'], name='reader'))
    model.graph.output.append(helper.make_tensor_value_info('g0_copy', TensorProto.FLOAT,
                                                            None))
    assert fuse_gelu(model) == 0


def test_network_excludes_the_task_tail():
    model = small_graph(tail=True)
    network = set(network_nodes(model))
    assert {'conv1', 'silu1_mul', 'attn_softmax', 'fc'} <= network
    # After the last weight layer (fc): the score sigmoid, TopK and ArgMax stay as they are.
    assert not network & {'tail_sigmoid', 'tail_topk', 'tail_argmax'}
    assert network_outputs(model) == ['logits_out']


@pytest.mark.parametrize('quant_format', ['qdq', 'qoperator'])
@pytest.mark.parametrize('activation_type', ['u8', 's8'])
def test_quantized_graph_loads_and_runs(tmp_path, quant_format, activation_type):
    model = small_graph(tail=True)
    feeds = images(4, seed=2)
    out = tmp_path / 'int8.onnx'
    config = QuantizeConfig(quant_format=quant_format, activation_type=activation_type)
    record = quantize(model, str(out), images(16), config)
    ops = record['op_counts']
    if quant_format == 'qdq':
        assert ops['QuantizeLinear'] > 0 and ops['DequantizeLinear'] > 0
        assert 'QLinearConv' not in ops
    else:
        assert ops['QLinearConv'] == 4 and 'Conv' not in ops
    # The tail is untouched: still a float Sigmoid, TopK and ArgMax on float inputs.
    written = onnx.load(str(out))
    producers = {o: n for n in written.graph.node for o in n.output}
    for name in ('tail_sigmoid', 'tail_topk', 'tail_argmax'):
        node = next(n for n in written.graph.node if n.name == name)
        assert producers[node.input[0]].op_type in ('DequantizeLinear', 'Sigmoid', 'Gemm')
    reference = [run(model, f) for f in feeds]
    actual = [run(out, f) for f in feeds]
    assert [a[1].dtype for a in actual] == [np.int64] * len(feeds)
    error = relative_rms_error([a[0] for a in actual], [r[0] for r in reference])
    assert error < 0.1, error
    assert record['config']['quant_format'] == quant_format
    assert record['calibration'] == {'inputs': 16}


def test_float_op_classes_stay_float(tmp_path):
    from emo_mm.deploy.quantize import attention_core_nodes, depthwise_conv_nodes, excluded_nodes
    model = small_graph()
    assert depthwise_conv_nodes(model) == ['conv_dw']
    assert attention_core_nodes(model) == ['attn_qk', 'attn_softmax', 'attn_v']
    config = QuantizeConfig(quant_format='qoperator', float_depthwise=True, float_attention=True)
    assert {'conv_dw', 'attn_qk', 'attn_softmax', 'attn_v'} <= set(excluded_nodes(model, config))
    record = quantize(model, str(tmp_path / 'int8.onnx'), images(8), config)
    ops = record['op_counts']
    assert ops['Conv'] == 1 and ops['QLinearConv'] == 3  # the depth-wise one stays float
    assert ops['Softmax'] == 1 and ops['MatMul'] == 2 and 'QLinearMatMul' not in ops


def test_shared_initializers_quantize_to_a_valid_qoperator_graph(tmp_path):
    from emo_mm.deploy.quantize import prepare
    model = small_graph(shared_bias=True)
    prepared = prepare(model)
    reads = [name for node in prepared.graph.node for name in node.input
             if name in {init.name for init in prepared.graph.initializer}]
    assert len(reads) == len(set(reads))
    out = tmp_path / 'int8.onnx'
    quantize(model, str(out), images(16), QuantizeConfig(quant_format='qoperator'))
    feeds = images(4, seed=3)
    error = relative_rms_error([run(out, f)[0] for f in feeds], [run(model, f)[0] for f in feeds])
    assert error < 0.1, error


def test_external_data_graph_is_read_whole(tmp_path):
    """A graph whose weights live in a .data file (as the torch.export path writes it):
    quantized from its path; an onnxruntime-optimised copy is self-contained (the copy
    onnxruntime writes itself keeps relative references into the source folder)."""
    model = small_graph()
    path = tmp_path / 'src' / 'model.onnx'
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location='model.onnx.data', size_threshold=0)
    loaded = load_model(str(path))
    assert all(init.data_location == TensorProto.DEFAULT for init in loaded.graph.initializer)
    optimized = optimize_basic(loaded)
    assert all(init.data_location == TensorProto.DEFAULT for init in optimized.graph.initializer)
    record = quantize(str(path), str(tmp_path / 'int8.onnx'), images(4))
    assert record['op_counts']['QuantizeLinear'] > 0
    run(tmp_path / 'int8.onnx', images(1)[0])


def test_quantize_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match='lacks the graph input'):
        quantize(small_graph(), str(tmp_path / 'x.onnx'), [{'image': np.zeros((1, 3, 8, 8))}])
    with pytest.raises(ValueError, match='No calibration inputs'):
        quantize(small_graph(), str(tmp_path / 'x.onnx'), [])
    with pytest.raises(ValueError, match='quant_format'):
        QuantizeConfig(quant_format='int8')
    with pytest.raises(ValueError, match='not in the graph'):
        quantize(small_graph(), str(tmp_path / 'x.onnx'), images(2), float_nodes=['nope'])


def test_sensitivity_keeps_the_nodes_that_reduce_the_error():
    model = small_graph(tail=True)
    result = find_float_nodes(model, images(16), budget=0.0, max_float_groups=2,
                              eval_inputs=images(8, seed=5))
    assert result['error_int8'] > 0
    assert 1 <= len(result['float_groups']) <= 2 and result['float_nodes']
    assert not result['within_budget']  # a zero budget cannot be met
    previous = result['error_int8']
    for group in result['float_groups']:
        # Each kept group was measured to lower the error, alone and with those before it.
        assert group['error_group_float'] < group['error_quantized']
        assert group['error_after'] < previous
        previous = group['error_after']
        assert set(group['nodes']) <= set(result['float_nodes'])
    assert result['error_final'] == previous < result['error_int8']
    # The gated simulation agrees with onnxruntime's int8 kernels, and the real graph
    # with the chosen nodes in float has the lower error too.
    assert abs(result['error_int8'] - result['error_int8_real']) < 0.2 * result['error_int8_real']
    assert result['error_final_real'] < result['error_int8_real']
    # Every group was measured, most sensitive first; none outside the network.
    reductions = [g['reduction'] for g in result['groups']]
    assert reductions == sorted(reductions, reverse=True)
    assert not {'tail_sigmoid', 'tail_topk'} & set(result['float_nodes'])


def test_sensitivity_stops_when_within_budget():
    result = find_float_nodes(small_graph(), images(8), budget=1.0)
    assert result['within_budget'] and result['float_nodes'] == []
    assert result['groups'] == [] and result['evaluations'] == 1


@pytest.fixture(scope='module')
def emov2_graph(tmp_path_factory):
    """A deploy-mode EMOv2-1M classifier (non-trivial LayerScale) exported at 112x112
    through torch.export, and the model."""
    import torch

    from emo_mm.utils.onnx import export_onnx
    from helpers import build_classifier
    model = build_classifier('1M', window_size=7).eval()
    for module in model.modules():
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    path = str(tmp_path_factory.mktemp('emov2') / 'emov2_1m.onnx')
    export_onnx(model, path, trace_size=(112, 112), dynamic_spatial=False)
    return path, model


def emov2_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [{'input': rng.normal(0, 1, (1, 3, 112, 112)).astype(np.float32)}
            for _ in range(count)]


@pytest.mark.slow
def test_emov2_rewrites_keep_fp32_outputs_and_quantize(emov2_graph, tmp_path):
    from emo_mm.deploy.quantize import prepare
    path, _ = emov2_graph
    feeds = emov2_images(2, seed=3)
    expected = [run(load_model(path), f)[0] for f in feeds]
    prepared = prepare(path, QuantizeConfig(rewrites=('gelu', 'silu')))
    ops = [n.op_type for n in prepared.graph.node]
    assert 'Erf' not in ops and ops.count('Gelu') > 0 and ops.count('QuickGelu') > 0
    actual = [run(prepared, f)[0] for f in feeds]
    for a, e in zip(actual, expected):
        assert np.abs(a - e).max() <= 1e-5 * np.abs(e).max()
    out = tmp_path / 'int8.onnx'
    record = quantize(path, str(out), emov2_images(8))
    assert record['op_counts']['Gelu'] > 0 and 'Erf' not in record['op_counts']
    quantized = [run(out, f)[0] for f in feeds]
    assert relative_rms_error(quantized, expected) < 0.5


@pytest.mark.slow
def test_emov2_sensitivity_names_module_groups(emov2_graph):
    path, _ = emov2_graph
    result = find_float_nodes(path, emov2_images(8), budget=0.0, max_groups=6, refine=1,
                              max_float_groups=1)
    assert len(result['float_groups']) == 1
    group = result['float_groups'][0]
    # Groups are the exporter's module scopes, e.g. 'model.backbone.stage3'.
    assert group['group'].startswith('model.')
    assert group['error_after'] < group['error_quantized'] == result['error_int8']


def test_quantize_within_budget_records_the_float_nodes(tmp_path):
    from emo_mm.deploy.sensitivity import quantize_within_budget
    out = tmp_path / 'int8.onnx'
    record = quantize_within_budget(small_graph(tail=True), str(out), images(16), budget=0.0,
                                    max_float_groups=1)
    assert len(record['float_reasons']) == 1
    reason = record['float_reasons'][0]
    assert set(reason['nodes']) == set(record['float_nodes'])
    assert 'budget 0' in reason['reason'] and reason['error_after'] < reason['error_quantized']
    sensitivity = record['sensitivity']
    assert sensitivity['error_final'] < sensitivity['error_int8']
    assert not sensitivity['within_budget']
    import json
    json.dumps(record)  # the bundle's deploy.json takes it as it is
    run(out, images(1)[0])


def test_evaluation_inputs_are_batched_only_on_a_dynamic_batch_axis():
    from types import SimpleNamespace

    from emo_mm.deploy.sensitivity import _batches
    inputs = [{'input': np.full((1, 3, 4, 4), i, np.float32)} for i in range(20)]

    def session(first_axis):
        return SimpleNamespace(get_inputs=lambda: [
            SimpleNamespace(name='input', shape=[first_axis, 3, 4, 4]),
            SimpleNamespace(name='gate_0', shape=[])])
    batches = _batches(session('batch'), inputs)
    assert [b['input'].shape[0] for b in batches] == [16, 4]
    assert batches[1]['input'][:, 0, 0, 0].tolist() == [16, 17, 18, 19]
    assert _batches(session(1), inputs) is inputs


@pytest.mark.slow
def test_torchscript_graph_groups_by_module_path(tmp_path):
    """Graphs from the TorchScript exporter (the deploy bundles') carry no scope metadata:
    their node names' module paths give the groups and the sub-groups."""
    import torch

    from emo_mm.deploy.quantize import network_graph, prepare
    from emo_mm.deploy.sensitivity import candidate_nodes, group_nodes, split_group
    from emo_mm.utils.onnx import export_onnx
    from helpers import build_classifier
    torch.manual_seed(0)
    path = str(tmp_path / 'traced.onnx')
    export_onnx(build_classifier('1M', window_size=7).eval(), path, trace_size=(112, 112))
    network = network_graph(prepare(path))
    candidates = candidate_nodes(network, QuantizeConfig())
    groups = group_nodes(network, candidates, max_groups=6)
    assert 1 < len(groups) <= 6
    assert all(key.startswith('/model/') for key in groups), list(groups)
    key, names = max(groups.items(), key=lambda item: len(item[1]))
    parts = split_group(network, key, names)
    assert len(parts) > 1 and all(child.startswith(key + '/') for child in parts), list(parts)
