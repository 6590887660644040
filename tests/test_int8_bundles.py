"""int8 deploy bundles (tools/deploy.py --precision int8).

Fast: the calibration files and graph inputs, the refusals. Slow: demo trainings (the
session's shared DeepLabv3 and RetinaNet, tests/trained_models.py) deployed at int8 keep
their toolbox metric on the held-out demo split within 1 point of the PyTorch model's,
measured by the toolbox's test loop on the bundle (tools/test.py's path), and deploy.json
records the quantization with the reason for every float group.
"""
import json
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('onnxruntime', reason='onnxruntime is a test dependency (requirements)')

from emo_mm.deploy.predictor import graph_feeds, slide_windows  # noqa: E402
from helpers import REPO, load_tool  # noqa: E402

CLS_CONFIG = 'configs/demo/emov2_1m_shapes-cls_demo.py'


def test_graph_feeds_follow_the_task():
    image = np.zeros((1, 3, 40, 50), np.float32)
    meta = dict(inputs=image, img_shape=(40, 50), ori_shape=(80, 100), scale_factor=(.5, .5))
    detection = graph_feeds('detection', {}, meta)
    assert len(detection) == 1 and set(detection[0]) == {'image', 'img_shape', 'scale_factor'}
    assert detection[0]['img_shape'].dtype == np.int64
    assert detection[0]['scale_factor'].dtype == np.float64
    crops = graph_feeds('segmentation', dict(mode='slide', crop_size=(32, 32),
                                             stride=(16, 16)), meta)
    assert len(crops) == len(slide_windows(40, 50, (32, 32), (16, 16))) == 6
    assert all(c['image'].shape == (1, 3, 32, 32) for c in crops)
    whole = graph_feeds('segmentation', dict(mode='whole'), meta)
    assert set(whole[0]) == {'image', 'img_shape', 'ori_shape'}
    assert set(graph_feeds('classification', {}, meta)[0]) == {'image'}
    assert set(graph_feeds('video', {}, meta)[0]) == {'clips'}


def test_calibration_files_spread_over_the_split(monkeypatch):
    from emo_mm.apis import load_config
    from emo_mm.deploy.calibration import CalibrationError, split_files
    monkeypatch.chdir(REPO)
    cfg = load_config(osp.join(REPO, CLS_CONFIG))
    files = split_files(cfg, 'train', 8)
    assert len(files) == len(set(files)) == 8
    assert all(osp.isfile(f) and '/train/' in f for f in files)
    # Evenly spaced: the first and the last file of the split.
    every = split_files(cfg, 'train', 10**6)
    assert files[0] == every[0] and files[-1] == every[-1] and len(every) > 8
    assert all('/val/' in f for f in split_files(cfg, 'test', 2))
    with pytest.raises(CalibrationError, match='positive'):
        split_files(cfg, 'train', 0)
    with pytest.raises(CalibrationError, match='choose one of'):
        split_files(cfg, 'extra', 4)


def test_calibration_inputs_are_the_bundle_preprocessing(monkeypatch):
    from emo_mm.apis import load_config
    from emo_mm.deploy.calibration import calibration_inputs, split_files
    from emo_mm.deploy.export import pipeline_spec, test_pipeline
    from emo_mm.deploy.preprocess import ImagePreprocessor, read_image
    monkeypatch.chdir(REPO)
    cfg = load_config(osp.join(REPO, CLS_CONFIG))
    spec = dict(steps=pipeline_spec(test_pipeline(cfg), 'classification'), mean=[0., 0., 0.],
                std=[1., 1., 1.], bgr_to_rgb=True, pad_size_divisor=1, pad_value=0.,
                pad_size=None)
    inputs, files = calibration_inputs(cfg, 'classification', spec, {}, 'train', 3)
    assert len(inputs) == 3 and all(set(i) == {'image'} for i in inputs)
    assert files == split_files(cfg, 'train', 3)
    first = ImagePreprocessor(spec)(read_image(files[0]))['inputs']
    assert inputs[0]['image'].shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(inputs[0]['image'], first)


def test_bf16_and_unknown_precisions_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    deploy = load_tool('deploy')
    from emo_mm.engine import run_cli
    for precision, reason in (('bf16', 'bf16 is not offered'), ('fp8', 'unknown')):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(lambda: deploy.main([CLS_CONFIG, '--out', str(tmp_path / precision),
                                         '--precision', precision]))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith('error: ') and reason in err and err.count('\n') == 1, err
        assert not osp.exists(tmp_path / precision)


def test_bundle_benchmark_times_pytorch_where_the_graph_has_no_task_tail():
    """benchmark_bundles --torch-checkpoint times PyTorch only where the bundle's graph is
    the network plus what PyTorch computes too; detectors and sliding-window segmentors are
    evaluated by --evaluate but not timed."""
    runner = load_tool('analysis_tools/benchmark_bundles').TorchRunner
    assert runner.times('classification', {}) and runner.times('video', {})
    assert runner.times('segmentation', dict(mode='whole'))
    assert not runner.times('segmentation', dict(mode='slide'))
    assert not runner.times('detection', {})


def test_precision_table_shows_fractions_in_percent():
    """mmdet's COCO and mmaction's accuracies (fractions) are shown in points, as mIoU and
    mmpretrain's top-1 are; rows that were evaluated but not timed show '-' speeds."""
    table = load_tool('analysis_tools/benchmark_bundles').precision_table
    rows = [dict(name='a', precision='fp32', float='-', values={'acc/top1': 0.7167},
                 wall=10., cpu=8.),
            dict(name='b', precision='int8', float='none', values={'acc/top1': 0.7333},
                 wall=20., cpu=12.),
            dict(name='c', precision='fp32 (torch)', float='-', values={'acc/top1': 0.7167},
                 wall=None, cpu=None)]
    lines = table(rows, ('acc/top1', ), markdown=True).splitlines()
    assert lines[3] == '| b | int8 | none | 73.33 | +1.66 | 12.0 | 1.50 | 20.0 | 2.00 |'
    assert lines[4] == '| c | fp32 (torch) | - | 71.67 | +0.00 | - | - | - | - |'
    rows[0]['values'] = rows[1]['values'] = {'mIoU': 40.39}
    rows[2]['values'] = {'mIoU': 40.16}
    assert table(rows, ('mIoU', ), markdown=True).splitlines()[4].startswith(
        '| c | fp32 (torch) | - | 40.16 | -0.23 |')


#: Demo trainings deployed at int8: the metric (toolbox key, scale to points) and the
#: least fp32 value that shows the model learned.
INT8_FAMILIES = {
    'deeplabv3_emov2': ('mIoU', 1, 20.),
    'retinanet_emov2': ('coco/bbox_mAP_50', 100, 10.),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', [  # RetinaNet's case: make test-all
    'deeplabv3_emov2', pytest.param('retinanet_emov2', marks=pytest.mark.extended)])
def test_int8_bundle_keeps_the_metric(name, demo_training, tmp_path, monkeypatch, capsys):
    """A demo training deployed at int8 (8 calibration files): the toolbox metric on the
    held-out demo split, measured by the test loop on the bundle, within 1 point of the
    PyTorch model's; deploy.json records the quantization and the reason per float group."""
    from test_deploy_bundles import evaluate
    key, scale, learned = INT8_FAMILIES[name]
    run = demo_training(name)
    monkeypatch.chdir(REPO)
    out = str(tmp_path / 'int8')
    status = load_tool('deploy').main([run.config, run.checkpoint, '--out', out, '--precision',
                                       'int8', '--calib', '8'])
    assert status == 0
    manifest = json.load(open(osp.join(out, 'deploy.json')))
    record = manifest['quantization']
    assert manifest['precision'] == 'int8' and record['calibration']['files'] == 8
    assert record['calibration']['split'] == 'train'
    assert record['config']['quant_format'] == 'qdq' and record['config']['per_channel']
    assert record['config']['float_attention']  # tools/deploy.py's --int8-attention float
    assert len(record['float_reasons']) == len({g['group'] for g in record['float_reasons']})
    listed = {n for g in record['float_reasons'] for n in g['nodes']}
    assert listed == set(record['float_nodes'])
    assert all('budget' in g['reason'] for g in record['float_reasons'])
    assert record['op_counts'].get('QuantizeLinear', 0) > 0
    metrics, _ = evaluate(run.config, out, str(tmp_path / 'eval'), bundle=True)
    fp32, int8 = float(run.after[key]) * scale, float(metrics[key]) * scale
    print(f'\n{name}: {key} PyTorch fp32 {fp32:.2f}, int8 bundle {int8:.2f} (points); '
          f'{len(record["float_nodes"])} float nodes; network error '
          f'{record["sensitivity"]["error_final"]:.4f}')
    assert fp32 > learned, 'the trained model must have learned for the test'
    assert fp32 - int8 <= 1.0
    # The precision table of docs/deploy.md, generated by the bundle benchmark, reports
    # the same metric and the float nodes the sensitivity pass kept, and the checkpoint's
    # own metric in fp32 and with the network under bf16 autocast.
    capsys.readouterr()
    assert load_tool('analysis_tools/benchmark_bundles').main([
        run.config, out, '--evaluate', '--markdown', '--metric', key, '--images', '2',
        '--repeat', '1', '--min-time', '0', '--threads', '1',
        '--torch-checkpoint', run.checkpoint]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')]
    assert table[0].startswith('| bundle | precision | kept in float | ' + key + ' | change |')
    cells = [cell.strip() for cell in table[1].strip('|').split('|')]
    assert cells[:2] == [out, 'int8'] and cells[4] == '+0.00'
    assert cells[3] == f'{int8:.2f}'
    nodes = len(record['float_nodes'])
    chosen = f' + {nodes} nodes in {len(record["float_reasons"])} groups' if nodes else ''
    assert cells[2] == 'attention core' + chosen  # the default keeps it float
    rows = {row[1]: row for row in ([c.strip() for c in line.strip('|').split('|')]
                                    for line in table[2:])}
    assert set(rows) == {'fp32 (torch)', 'bf16 autocast (torch)'}
    assert rows['fp32 (torch)'][3] == f'{fp32:.2f}'  # the training's own evaluation
    bf16 = float(rows['bf16 autocast (torch)'][3])
    print(f'{name}: {key} PyTorch bf16 autocast {bf16:.2f}')
    assert abs(bf16 - fp32) <= 1.0
    timed = name != 'retinanet_emov2'  # the detector's NMS is not timed in torch
    assert (rows['fp32 (torch)'][5] != '-') == timed


def test_bundle_with_an_unknown_precision_is_refused(tmp_path):
    from emo_mm.deploy import BundleError, read_bundle
    manifest = dict(format='emo_mm-deploy', format_version=1, task='classification',
                    precision='fp8', graphs={}, preprocess={}, postprocess={}, files={},
                    input={})
    (tmp_path / 'deploy.json').write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown precision 'fp8'"):
        read_bundle(str(tmp_path))
    manifest['precision'] = 'int8'
    (tmp_path / 'deploy.json').write_text(json.dumps(manifest))
    assert read_bundle(str(tmp_path))['precision'] == 'int8'
