"""tools/analysis_tools/benchmark.py runs end to end (CLI smoke test; nothing here checks a
speed)."""
import json

import pytest

from helpers import load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools/benchmark')


@pytest.mark.slow
def test_inference_rows_header_and_json(tool, tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    path = tmp_path / 'bench.json'
    rows = tool.main(['--models', 'EMOv2-1M', 'timm:does_not_exist', '--batch-sizes', '1', '2',
                      '--backend', 'torch', 'onnxruntime', '--deploy', 'both',
                      '--min-time', '0', '--warmup', '1', '--threads', '1',
                      '--json', str(path)])
    printed = capsys.readouterr().out
    # 2 models x (torch, onnxruntime) x (deploy off, on)
    assert len(rows) == 8
    emo = [r for r in rows if r['model'] == 'EMOv2-1M']
    assert all(r['error'] is None for r in emo)
    assert {(r['backend'], r['deploy_requested']) for r in emo} == {
        ('torch', False), ('torch', True), ('onnxruntime', False), ('onnxruntime', True)}
    for row in emo:
        assert set(row['images_per_s']) == {1, 2} and min(row['images_per_s'].values()) > 0
        assert row['ratio'] == {1: 1.0, 2: 1.0}  # the baseline against itself
        assert row['params'] > 1e6
    assert all(r['deploy'] in ('on', 'n/a') for r in emo if r['deploy_requested'])
    # A model that cannot be built is reported, not fatal.
    failed = [r for r in rows if r['model'] == 'timm:does_not_exist']
    assert failed and all(r['error'] for r in failed)
    assert 'error: timm:does_not_exist' in printed
    for text in ('threads: torch 1, onnxruntime 1', 'torch ', 'load average',
                 'bs1 img/s', 'x EMOv2-1M', 'classifier at 224x224'):
        assert text in printed
    saved = json.loads(path.read_text())
    assert saved['header']['torch_threads'] == 1 and len(saved['rows']) == 8


def test_rounds_report_the_median(tool, capsys):
    rows = tool.main(['--models', 'EMOv2-1M', '--input', '64x64', '--batch-sizes', '1', '2',
                      '--min-time', '0', '--warmup', '1', '--repeat', '3'])
    printed = capsys.readouterr().out
    row = rows[0]
    assert row['error'] is None
    for batch in (1, 2):
        runs = row['runs'][batch]
        assert len(runs) == 3 and min(runs) > 0
        assert row['images_per_s'][batch] == sorted(runs)[1]
    assert 'round 3/3' in printed and 'median of 3 rounds' in printed


def test_backbone_training_step(tool, capsys):
    rows = tool.main(['--models', 'EMOv2-1M', '--input', '64x96', '--train',
                      '--batch-sizes', '2', '--min-time', '0', '--warmup', '1'])
    printed = capsys.readouterr().out
    assert rows[0]['error'] is None and rows[0]['images_per_s'][2] > 0
    assert 'backbone at 64x96, train step' in printed


@pytest.mark.slow
def test_profile_names_the_operators(tool, tmp_path, capsys, monkeypatch):
    """--profile: each cell's top operators with their share of the time, for torch
    (a backbone has convolutions) and onnxruntime (Conv nodes), and no profile file
    left behind in the working directory. Which operators lead depends on the CPU
    (onnxruntime's layout and fusion passes differ between machines), so the cells are
    profiled whole and the cut to the top N is checked on the tool's own ranking."""
    pytest.importorskip('onnxruntime')
    monkeypatch.chdir(tmp_path)
    rows = tool.main(['--models', 'EMOv2-1M', '--input', '64x64', '--batch-sizes', '1',
                      '--backend', 'torch', 'onnxruntime', '--min-time', '0', '--warmup', '1',
                      '--profile', '1000'])
    printed = capsys.readouterr().out
    for row in rows:
        assert row['error'] is None
        shares = row['profile'][1]
        assert len(shares) > 4 and all(0 < share <= 1 for _, share in shares)
        assert sum(s for _, s in shares) == pytest.approx(1)  # nothing left out
        assert [s for _, s in shares] == sorted((s for _, s in shares), reverse=True)
    torch_ops = [op for op, _ in rows[0]['profile'][1]]
    assert any('convolution' in op for op in torch_ops), torch_ops
    # A convolution kernel under whichever name this CPU's graph optimisation gives it.
    onnx_ops = [op for op, _ in rows[1]['profile'][1]]
    assert {'Conv', 'FusedConv'} & set(onnx_ops), onnx_ops
    assert printed.count('profile bs1: ') == 2
    assert list(tmp_path.iterdir()) == []
    # The cut to the top N keeps the N largest, as fractions of the whole.
    times = {'Conv': 6., 'MatMul': 2., 'Transpose': 1., 'Add': 1.}
    assert tool._shares(times, 2) == [('Conv', 0.6), ('MatMul', 0.2)]


@pytest.mark.slow
@pytest.mark.mobile
def test_executorch_rows_with_ratios_to_torch(tool, capsys):
    """--backend torch executorch: the program is exported and timed in the same run; its
    speed over the model's torch row is in the table."""
    rows = tool.main(['--models', 'EMOv2-1M', '--input', '64x64', '--batch-sizes', '1',
                      '--backend', 'torch', 'executorch', '--min-time', '0', '--warmup', '1',
                      '--threads', '1'])
    printed = capsys.readouterr().out
    assert [(r['backend'], r['precision']) for r in rows] == [('torch', 'fp32'),
                                                              ('executorch', 'fp32')]
    for row in rows:
        assert row['error'] is None and row['images_per_s'][1] > 0
        speed_over_torch = row['images_per_s'][1] / rows[0]['images_per_s'][1]
        assert row['backend_ratio'][1] == pytest.approx(speed_over_torch)
    assert rows[1]['export_s'][1] > 0 and 'outside_delegate' in rows[1]
    assert 'x torch' in printed and 'ExecuTorch 1' in printed and 'executorch 1.5.1' in printed


@pytest.mark.slow
def test_precisions_with_peak_shares_and_fastest_rows(tool, capsys):
    """--precision fp32 bf16 int8 --peak: every backend at every precision it runs (the
    others named once with the reason), int8 graphs quantized by the deploy code, each
    row's speed over the model's torch fp32 row, its share of its precision's measured
    matrix-multiply peak, and each model's fastest row against the baseline's."""
    pytest.importorskip('onnxruntime')
    rows = tool.main(['--models', 'EMOv2-1M', 'MobileNetV2', '--input', '64x64',
                      '--batch-sizes', '1', '--backend', 'torch', 'onnxruntime',
                      '--precision', 'fp32', 'bf16', 'int8', '--deploy', '--peak',
                      '--min-time', '0', '--warmup', '1', '--threads', '1'])
    printed = capsys.readouterr().out
    assert [(r['model'], r['backend'], r['precision']) for r in rows] == [
        (model, backend, precision)
        for backend, precision in [('torch', 'fp32'), ('torch', 'bf16'),
                                   ('onnxruntime', 'fp32'), ('onnxruntime', 'int8')]
        for model in ('EMOv2-1M', 'MobileNetV2')]
    assert 'not timed: torch int8 (' in printed and 'not timed: onnxruntime bf16 (' in printed
    first = {r['model']: r['images_per_s'][1] for r in rows
             if (r['backend'], r['precision']) == ('torch', 'fp32')}
    for row in rows:
        assert row['error'] is None and row['images_per_s'][1] > 0
        assert row['backend_ratio'][1] == pytest.approx(
            row['images_per_s'][1] / first[row['model']])
        assert 0 < row['peak_share'][1] < 5  # of the fastest matmul rate of its precision
    int8 = [r for r in rows if r['precision'] == 'int8']
    assert all(r['qdq_node_counts']['QuantizeLinear'] > 10 for r in int8)
    # The share is the row's multiply-accumulate rate over its precision's peak.
    peak_line = next(line for line in printed.splitlines() if line.startswith('peak: fp32'))
    for precision in ('fp32', 'bf16', 'int8'):
        assert f'{precision} ' in peak_line
    emo_int8 = int8[0]
    shares = [r['peak_share'][1] / (r['images_per_s'][1] * r['flops']) for r in int8]
    assert shares[0] == pytest.approx(shares[1])  # one peak for the precision
    assert emo_int8['model'] == 'EMOv2-1M'
    # The fastest row of each model, and its speed over the baseline's fastest.
    assert 'fastest row of each model, over EMOv2-1M' in printed
    best = {m: max(r['images_per_s'][1] for r in rows if r['model'] == m) for m in first}
    lines = [line for line in printed.splitlines() if f'{best["MobileNetV2"]:8.1f} img/s' in line]
    assert lines and f'{best["MobileNetV2"] / best["EMOv2-1M"]:.2f}x' in lines[0]


@pytest.mark.parametrize('argv,message', [
    (['--models', 'NoSuchNet'], 'Unknown model'),
    (['--models', 'EMOv2-1M', '--baseline', 'EMOv2-5M'], None),
    (['--models', 'EMOv2-1M', '--input', '224'], None),
    (['--models', 'EMOv2-1M', '--train', '--backend', 'onnxruntime'], None),
    (['--models', 'EMOv2-1M', '--profile', '-1'], None),
    (['--models', 'EMOv2-1M', '--repeat', '0'], None),
    (['--models', 'EMOv2-1M', '--backend', 'executorch', '--profile'], None),
    (['--models', 'EMOv2-1M', '--backend', 'torch', 'torch'], None),
    (['--models', 'EMOv2-1M', '--backend', 'torch', '--precision', 'int8'], None),
    (['--models', 'EMOv2-1M', '--amp', 'bf16', '--precision', 'bf16'], None),
    (['--models', 'EMOv2-1M', '--train', '--precision', 'int8', '--backend', 'onnxruntime'],
     None),
])
def test_bad_arguments_exit_with_a_message(tool, argv, message):
    with pytest.raises(SystemExit) as info:
        tool.main(argv)
    if message:
        assert message in str(info.value)
    else:
        assert info.value.code == 2  # argparse usage error, message on stderr
