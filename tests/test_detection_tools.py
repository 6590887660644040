"""tools/train.py, tools/test.py and tools/dist_train.sh on the generated detection set:
resume, two-process CPU training, visualisation, and the errors for bad data / checkpoints."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from emo_mm.checks.data import DataError, check_coco_annotations
from emo_mm.demo.data import DEMO_SETTINGS, make_coco_shapes
from emo_mm.engine import prepare_train_config, verify_checkpoint
from emo_mm.models.weights import CheckpointError
from helpers import REPO

# Some tests build configs with the default work dir (work_dirs/<config name> of the
# repository), which prepare_train_config locks: under pytest-xdist they share a worker.
pytestmark = pytest.mark.xdist_group('default_work_dirs')

DEMO = osp.join(REPO, 'configs', 'demo', 'retinanet_emov2_1m_demo.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable)


@pytest.fixture(scope='module')
def demo_data():
    return make_coco_shapes(osp.join(REPO, DEMO_SETTINGS.demo_coco_root))


def _tiny_config(tmp_path, name, **extra) -> str:
    """The demo config on 16 images, deterministic (no flip, no drop-path), logging each iter."""
    lines = [f"_base_ = [{DEMO!r}]",
             "data_root = " + repr(osp.join(REPO, DEMO_SETTINGS.demo_coco_root) + '/'),
             # from scratch: these test the tools, not learning (no pretrained file needed)
             "model = dict(backbone=dict(drop_path_rate=0., init_cfg=None), "
             "test_cfg=dict(score_thr=0.))",
             "train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root, "
             "indices=16, pipeline=[dict(type='LoadImageFromFile'), "
             "dict(type='LoadAnnotations', with_bbox=True), "
             "dict(type='Resize', scale=(160, 160), keep_ratio=True), "
             "dict(type='PackDetInputs')]))",
             "val_dataloader = dict(dataset=dict(data_root=data_root, indices=8))",
             "test_dataloader = val_dataloader",
             "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')",
             "test_evaluator = val_evaluator",
             "randomness = dict(seed=0)",
             "default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))",
             "train_cfg = dict(max_epochs=2, val_interval=100)"]
    lines += [f'{k} = {v}' for k, v in extra.items()]
    path = tmp_path / f'{name}.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def _run(args, cwd=REPO, timeout=600):
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _scalars(work_dir):
    """Logged training iterations of every run in work_dir, oldest run first."""
    rows = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if '"lr"' in line]
    return rows


@pytest.mark.slow  # trains through the tools in subprocesses
@pytest.mark.extended
def test_resume_continues_where_it_stopped(demo_data, tmp_path):
    cfg = _tiny_config(tmp_path, 'tiny')
    train = [sys.executable, 'tools/train.py', cfg]
    straight, split = str(tmp_path / 'straight'), str(tmp_path / 'split')
    _run(train + ['--work-dir', straight])
    _run(train + ['--work-dir', split, '--cfg-options', 'train_cfg.max_epochs=1'])
    log = _run(train + ['--work-dir', split, '--resume'])  # latest checkpoint: epoch_1
    assert 'resumed epoch: 1, iter: 4' in log

    reference = {s['step']: s for s in _scalars(straight)}
    resumed = _scalars(split)
    first_run, second_run = resumed[:4], resumed[4:]
    assert [s['step'] for s in first_run] == [1, 2, 3, 4]
    assert [s['step'] for s in second_run] == [5, 6, 7, 8]  # continues at N + 1
    for s in resumed:
        assert s['lr'] == pytest.approx(reference[s['step']]['lr'], rel=1e-9)
    # Same lr schedule, data order and optimizer state: the same weights at the end.
    a = torch.load(osp.join(straight, 'epoch_2.pth'), weights_only=False)
    b = torch.load(osp.join(split, 'epoch_2.pth'), weights_only=False)
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=1e-5, atol=1e-7, msg=key)
    state_a, state_b = a['optimizer']['state'], b['optimizer']['state']
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_b[key]['exp_avg'], state_a[key]['exp_avg'],
                                   rtol=1e-4, atol=1e-9)


@pytest.mark.slow  # trains through the tools in subprocesses
@pytest.mark.extended
def test_two_cpu_processes_stay_in_sync(demo_data, tmp_path):
    cfg = _tiny_config(tmp_path, 'dist',
                       custom_hooks="[dict(type='emo_mm.ParameterSyncCheckHook')]")
    work_dir = str(tmp_path / 'dist')
    log = _run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work_dir],
               timeout=900)
    with open(osp.join(work_dir, 'param_sync.json')) as f:
        sync = json.load(f)
    assert sync['world_size'] == 2 and len(set(sync['hashes'])) == 1, sync
    assert 'Parameters identical on all 2 ranks' in log
    assert _scalars(work_dir)[-1]['step'] == 4  # 16 images / (2 ranks x 4) x 2 epochs


@pytest.mark.slow  # trains through the tools in subprocesses
def test_test_tool_evaluates_and_draws(demo_data, tmp_path):
    cfg = _tiny_config(tmp_path, 'tiny', train_cfg='dict(max_epochs=1, val_interval=100)')
    work_dir = str(tmp_path / 'work')
    _run([sys.executable, 'tools/train.py', cfg, '--work-dir', work_dir])
    # a relative --show-dir is a folder of the run's log folder, as mmdet's tools/test.py does
    log = _run([sys.executable, osp.join(REPO, 'tools', 'test.py'), cfg,
                osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir, '--show-dir', 'vis',
                '--show-score-thr', '0'], cwd=str(tmp_path))
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]' in log
    assert 'coco/bbox_mAP' in log
    (show_dir, ) = glob.glob(osp.join(work_dir, '2*', 'vis'))
    assert f'Images with the predictions drawn: {show_dir}' in log
    assert len(glob.glob(osp.join(show_dir, '*.png'))) == 8
    assert not osp.exists(tmp_path / 'vis')

    # Deploy mode evaluates the same detector (BatchNorm and LayerScale folded).
    deployed = _run([sys.executable, 'tools/test.py', cfg, osp.join(work_dir, 'epoch_1.pth'),
                     '--work-dir', work_dir, '--deploy'])
    assert 'switched to deploy mode' in deployed

    def metric(text):
        return float(re.search(r'coco/bbox_mAP_50: ([0-9.]+)', text).group(1))
    assert abs(metric(deployed) - metric(log)) < 2e-3, (metric(deployed), metric(log))

    other = str(tmp_path / 'other.py')
    with open(other, 'w') as f:
        f.write(f"_base_ = [{cfg!r}]\nmodel = dict(backbone=dict(arch='2M'), "
                "neck=dict(in_channels=[32, 48, 120, 200]))\n")
    result = subprocess.run([sys.executable, 'tools/test.py', other,
                             osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert 'does not match the model of this config' in result.stderr
    assert 'stage3.0.proj.conv.weight' in result.stderr


def test_missing_coco_is_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/coco here
    with pytest.raises(DataError) as err:
        prepare_train_config(osp.join(REPO, 'configs', 'retinanet_emov2_5m_coco.py'))
    message = str(err.value)
    assert "data_root 'data/coco/' does not exist" in message
    assert 'annotations/instances_{train,val}2017.json' in message
    assert '--data-root' in message


def test_data_root_option(demo_data, tmp_path):
    cfg = prepare_train_config(osp.join(REPO, 'configs', 'retinanet_emov2_5m_coco.py'),
                               data_root=demo_data + '/', cfg_options={
                                   'train_dataloader.dataset.ann_file':
                                   'annotations/instances_train.json',
                                   'train_dataloader.dataset.data_prefix.img': 'train/',
                                   'val_dataloader.dataset.ann_file':
                                   'annotations/instances_val.json',
                                   'val_dataloader.dataset.data_prefix.img': 'val/',
                                   'val_evaluator.ann_file':
                                   'data/coco/annotations/instances_val.json'})
    assert cfg.train_dataloader.dataset.data_root == demo_data + '/'
    assert cfg.val_evaluator.ann_file == osp.join(demo_data, 'annotations/instances_val.json')


@pytest.mark.parametrize('content,match', [
    ('', 'is empty'),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 8, "wi', 'not valid JSON'),
    ('[]', 'must hold a JSON object'),
    ('{"images": [], "annotations": [], "categories": []}', 'lists no images'),
    ('{"annotations": [], "categories": []}', r"lacks the list\(s\) \['images'\]"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [], "categories": []}',
     r"images\[0\] lacks \['height', 'width'\]"),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}], '
     '"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4]}], '
     '"categories": [{"id": 1, "name": "circle"}]}', r'bbox must be \[x, y, w, h\]'),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}], '
     '"annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 4, 4]}], '
     '"categories": [{"id": 1, "name": "circle"}]}', 'category_id 7'),
    ('{"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}], '
     '"annotations": [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4]}], '
     '"categories": [{"id": 1, "name": "circle"}]}', 'image_id 2'),
])
def test_malformed_annotations(tmp_path, content, match):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'train').mkdir()
    (root / 'annotations' / 'train.json').write_text(content)
    cfg = osp.join(REPO, 'configs', 'retinanet_emov2_1m_coco.py')
    with pytest.raises(DataError, match=match):
        prepare_train_config(cfg, data_root=str(root), cfg_options={
            'train_dataloader.dataset.ann_file': 'annotations/train.json',
            'train_dataloader.dataset.data_prefix.img': 'train/', 'val_dataloader': None})


def test_unknown_classes_in_config(demo_data):
    with pytest.raises(DataError, match=r"classes \['zebra'\] are not categories"):
        check_coco_annotations(osp.join(demo_data, 'annotations', 'instances_val.json'),
                               dict(classes=('circle', 'zebra')))


def test_verify_checkpoint(tmp_path):
    from emo_mm.models import EMOv2
    path = str(tmp_path / 'm.pth')
    torch.save({'state_dict': EMOv2('1M').state_dict(), 'meta': {}}, path)
    verify_checkpoint(EMOv2('1M'), path)
    with pytest.raises(CheckpointError, match='tensors of other shapes'):
        verify_checkpoint(EMOv2('2M'), path)
    torch.save({'state_dict': {k: v for k, v in EMOv2('1M').state_dict().items()
                               if 'stage4' not in k}}, path)
    with pytest.raises(CheckpointError, match='tensors missing'):
        verify_checkpoint(EMOv2('1M'), path)


@pytest.mark.slow  # trains through the tools in subprocesses
def test_mmdet_own_train_script(demo_data, tmp_path):
    """The same config file through mmdet's own tools/train.py (shipped in its wheel)."""
    import mmdet
    script = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    cfg = _tiny_config(tmp_path, 'tiny', train_cfg='dict(max_epochs=1, val_interval=1)')
    log = _run([sys.executable, script, cfg, '--work-dir', str(tmp_path / 'mmdet')])
    assert 'coco/bbox_mAP' in log
    assert osp.isfile(tmp_path / 'mmdet' / 'epoch_1.pth')
