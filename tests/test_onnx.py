"""ONNX export: dynamic batch, height and width, checked against onnxruntime."""
import math

import pytest
import torch

from emo_mm.models import EMO, EMOv2
from emo_mm.utils.onnx import TRACE_SIZE, export_onnx, switch_to_deploy, verify_onnx
from helpers import build_classifier, load_tool

pytest.importorskip('onnxruntime', reason='onnxruntime is a test dependency (requirements)')

#: Sizes that need window padding in some stage and sizes that need none (224: 14x14 and
#: 7x7 maps at strides 16 / 32), odd ones, and a batch of 2.
CHECK_SHAPES = [(1, 3, 224, 224), (2, 3, 256, 320), (1, 3, 193, 257), (1, 3, 97, 131)]


def test_trace_size_pads_every_attention_stage():
    # The traced graph keeps the padding only if the trace pads (see TRACE_SIZE).
    for stride in (16, 32):
        for size in TRACE_SIZE:
            for window in (7, 8, 10):
                assert math.ceil(size / stride) % window, (size, stride, window)


@pytest.mark.parametrize('name', ['emov2_1m', 'emov1_1m'])
def test_classifier_matches_onnxruntime_on_dynamic_sizes(tmp_path, name):
    if name.startswith('emov2'):
        model = build_classifier('1M')
    else:
        from emo_mm.apis import build_model, load_config
        model = build_model(load_config('emov1_1m_in1k'))
    model.eval()
    # Non-trivial LayerScale, so the attention branches weigh in the outputs.
    for module in model.modules():
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    path = str(tmp_path / f'{name}.onnx')
    info = export_onnx(model, path)
    assert info['outputs'] == ['output']
    results = verify_onnx(path, model, CHECK_SHAPES, tolerance=1e-4)
    assert [r['output_shapes'][0] for r in results] == [(s[0], 1000) for s in CHECK_SHAPES]


@pytest.mark.parametrize('window', [10])
def test_backbone_matches_onnxruntime_on_dynamic_sizes(tmp_path, window):
    model = EMOv2('1M', window_size=window, out_indices=(1, 2, 3, 4)).eval()
    for module in model.modules():
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    path = str(tmp_path / 'backbone.onnx')
    info = export_onnx(model, path)
    assert info['outputs'] == ['output0', 'output1', 'output2', 'output3']
    results = verify_onnx(path, model, [(1, 3, 96, 128), (2, 3, 131, 97)], tolerance=1e-4)
    strides = (4, 8, 16, 32)
    assert results[1]['output_shapes'] == [
        (2, c, -(-131 // s), -(-97 // s)) for c, s in zip(model.embed_dims, strides)]


def test_emov1_backbone_exports(tmp_path):
    model = EMO('1M', out_indices=(3, 4)).eval()
    path = str(tmp_path / 'emov1.onnx')
    export_onnx(model, path)
    verify_onnx(path, model, [(1, 3, 112, 144), (1, 3, 65, 99)], tolerance=1e-4)


@pytest.mark.slow
def test_fixed_size_export_has_no_shape_arithmetic(tmp_path):
    """dynamic_spatial=False (torch.export): any batch, one size, no Shape operators."""
    import onnx
    model = EMOv2('1M', window_size=7, out_indices=(3, 4)).eval()
    for module in model.modules():
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    path = str(tmp_path / 'fixed.onnx')
    info = export_onnx(model, path, trace_size=(100, 130), dynamic_spatial=False)
    assert info['opset'] >= 18
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert 'Shape' not in ops and 'MatMul' in ops, sorted(ops)
    verify_onnx(path, model, [(1, 3, 100, 130), (3, 3, 100, 130)], tolerance=1e-4)


@pytest.mark.slow
def test_verify_detects_a_wrong_graph(tmp_path):
    # The check must be able to fail: a graph traced without dynamic height and width
    # cannot run a different size, and one of another model differs in value.
    model = EMOv2('1M', window_size=7, out_indices=(4, )).eval()
    path = str(tmp_path / 'static.onnx')
    export_onnx(model, path, trace_size=(64, 64), dynamic_spatial=False)
    with pytest.raises(Exception):
        verify_onnx(path, model, [(1, 3, 96, 96)])
    other = EMOv2('1M', window_size=7, out_indices=(4, )).eval()
    with pytest.raises(AssertionError, match='relative error'):
        verify_onnx(path, other, [(1, 3, 64, 64)])


def test_switch_to_deploy_reports_what_it_switched():
    class Reparam(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.inner = torch.nn.Identity()

        def switch_to_deploy(self):
            self.calls += 1

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), Reparam(), Reparam())
    assert switch_to_deploy(model) == ['1', '2']
    assert model[1].calls == model[2].calls == 1
    assert switch_to_deploy(torch.nn.Conv2d(3, 3, 1)) == []


def test_export_tool_cli(tmp_path, capsys):
    tool = load_tool('model_converters/export_onnx')
    out = tmp_path / 'emov2_1m.onnx'
    status = tool.main(['emov2_1m_in1k', '--out', str(out), '--backbone-only',
                        '--out-indices', '3', '4', '--check', '1x97x131', '2x64x64'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert out.is_file()
    assert printed.count('relative error') == 2 and 'OK: every check within 0.0001' in printed
    assert "outputs ['output0', 'output1']" in printed
    with pytest.raises(SystemExit, match='--backbone-only'):
        tool.main(['configs/retinanet_emov2_1m_coco.py', '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(SystemExit):
        tool.main(['emov2_1m_in1k', '--out', str(tmp_path / 'x.onnx'), '--check', '224x224'])


@pytest.mark.slow
def test_export_tool_fixed_size(tmp_path, capsys):
    tool = load_tool('model_converters/export_onnx')
    out = tmp_path / 'fixed.onnx'
    status = tool.main(['emov2_1m_in1k', '--out', str(out), '--backbone-only',
                        '--out-indices', '4', '--input-size', '96x112'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'input size fixed to 96x112' in printed
    assert printed.count('relative error') == 2 and 'input 2x3x96x112' in printed
    with pytest.raises(SystemExit):  # a fixed-size graph cannot be checked at another size
        tool.main(['emov2_1m_in1k', '--out', str(out), '--input-size', '96x112',
                   '--check', '1x64x64'])
    assert 'runs that size only' in capsys.readouterr().err
