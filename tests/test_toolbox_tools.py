"""The toolbox tools the docs defer to (docs/tools.md), and emo_mm's own small tools around them.

- mmdet's analyze_logs.py (seaborn) and MMEngine's TensorboardVisBackend on a short demo
  training;
- tools/analysis_tools/browse_dataset.py on every demo config, bounded by a count (the toolboxes'
  scripts walk a RepeatDataset's every repetition);
- ``python -m emo_mm.mim search / run`` (mim for an editable install) and collection names
  that ``--model retinanet`` finds;
- emo_mm.apis.list_configs without bases, tools/analysis_tools/get_flops.py's input size, the
  backbones' out_channels against every config's consumers.
"""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import yaml

from emo_mm.apis import list_configs, load_config
from emo_mm.demo.data import (make_ade20k_regions, make_coco_shapes, make_demo_det_shapes,
                              make_hrf_vessels, make_motion_videos)
from emo_mm.engine import UserError
from helpers import REPO, load_tool

PY = sys.executable
DEMO_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'demo', '*.py')))


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp('stamps'))
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=PY, EMO_MM_CACHE_DIR=cache,
                MPLBACKEND='Agg', PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def _run(args, env, expect=0, timeout=600, cwd=REPO):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == expect, (result.returncode, result.stdout[-3000:],
                                         result.stderr[-3000:])
    return result


# ---------------------------------------------------------------------------------------
# Logs: mmdet's analyze_logs.py and TensorBoard.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # trains (briefly) through tools/train.py
@pytest.mark.extended
def test_analyze_logs_and_tensorboard_on_a_demo_training(env, tmp_path):
    import mmdet
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    root = make_coco_shapes(str(tmp_path / 'coco'), num_train=4, num_val=2)
    config = tmp_path / 'tiny.py'
    demo = osp.join(REPO, 'configs', 'demo', 'retinanet_emov2_1m_demo.py')
    config.write_text('\n'.join([
        f'_base_ = [{demo!r}]',
        f'data_root = {root + "/"!r}',
        # from scratch (no pretrained file); every box kept, so that the mAP is computed
        'model = dict(backbone=dict(init_cfg=None), neck=dict(out_channels=32),'
        ' bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1), '
        'test_cfg=dict(score_thr=0.))',
        'train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, '
        'dataset=dict(data_root=data_root, pipeline=[dict(type="LoadImageFromFile"), '
        'dict(type="LoadAnnotations", with_bbox=True), '
        'dict(type="Resize", scale=(96, 96), keep_ratio=True), dict(type="PackDetInputs")]))',
        'val_dataloader = dict(num_workers=0, persistent_workers=False, '
        'dataset=dict(data_root=data_root))',
        'test_dataloader = val_dataloader',
        'val_evaluator = dict(ann_file=data_root + "annotations/instances_val.json")',
        'test_evaluator = val_evaluator',
        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')])",
        'default_hooks = dict(logger=dict(interval=1))',
        'train_cfg = dict(max_epochs=3, val_interval=1)']) + '\n')
    work_dir = str(tmp_path / 'work')
    _run([PY, 'tools/train.py', str(config), '--work-dir', work_dir], env)
    (run_dir, ) = glob.glob(osp.join(work_dir, '2*'))
    json_log = osp.join(run_dir, 'vis_data', osp.basename(run_dir) + '.json')
    assert osp.isfile(json_log)

    # mmdet's own script, as its docs run it (seaborn draws the curves)
    script = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'analysis_tools',
                      'analyze_logs.py')
    curve = str(tmp_path / 'loss.png')
    _run([PY, script, 'plot_curve', json_log, '--keys', 'loss', 'loss_cls', '--out', curve], env)
    assert osp.getsize(curve) > 1000
    mAP = str(tmp_path / 'map.png')
    _run([PY, script, 'plot_curve', json_log, '--keys', 'bbox_mAP', '--out', mAP], env)
    assert osp.getsize(mAP) > 1000
    timing = _run([PY, script, 'cal_train_time', json_log], env).stdout
    assert 'average iter time' in timing

    # TensorBoard event file with every logged training iteration's loss
    (events, ) = glob.glob(osp.join(run_dir, 'vis_data', '**', 'events.out.tfevents.*'),
                           recursive=True)
    accumulator = EventAccumulator(events)
    accumulator.Reload()
    losses = accumulator.Scalars('loss')
    assert [e.step for e in losses] == [1, 2, 3, 4, 5, 6]  # 2 iterations x 3 epochs
    assert all(torch.isfinite(torch.tensor(e.value)) for e in losses)
    assert len(accumulator.Scalars('coco/bbox_mAP')) == 3


# ---------------------------------------------------------------------------------------
# Browsing the data sets.
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_demo_sets(tmp_path_factory):
    """Small copies of every demo set, by the config's data root name."""
    root = tmp_path_factory.mktemp('demo_sets')
    return {
        'demo_coco': make_coco_shapes(str(root / 'coco'), num_train=3, num_val=2),
        'demo_det_shapes': make_demo_det_shapes(str(root / 'det'), num_train=3, num_val=2),
        'demo_ade20k': make_ade20k_regions(str(root / 'ade'), num_train=3, num_val=2),
        'demo_hrf': make_hrf_vessels(str(root / 'hrf'), num_train=3, num_val=2),
        'demo_kinetics': make_motion_videos(str(root / 'kinetics'), num_train=6, num_val=2),
    }


def _demo_set(config, sets):
    """The small set standing in for the demo set the config's training data points at."""
    from emo_mm.checks.data import iter_datasets
    (leaf, ) = iter_datasets(load_config(config).train_dataloader.dataset)
    where = str(leaf.get('data_root') or leaf.get('ann_file'))
    names = [name for name in sets if f'data/{name}' in where]
    assert len(names) == 1, (config, where)
    return sets[names[0]]


#: Runs tools/analysis_tools/browse_dataset.py on several configs in one process (the
#: toolboxes' imports are paid once): argv = [output folder, (config, data root) ...].
BROWSE_ALL = """
import os, runpy, sys
out, pairs = sys.argv[1], sys.argv[2:]
for config, root in zip(pairs[::2], pairs[1::2]):
    sys.argv = ['tools/analysis_tools/browse_dataset.py', config, '-n', '2', '--not-show',
                '--output-dir', os.path.join(out, os.path.basename(config)), '--data-root', root]
    runpy.run_path('tools/analysis_tools/browse_dataset.py', run_name='__main__')
"""


@pytest.mark.slow  # every demo config through the toolboxes' browse_dataset scripts
@pytest.mark.extended
def test_browse_dataset_on_every_demo_config_stops_after_the_count(small_demo_sets, env,
                                                                   tmp_path):
    """Two samples each, RepeatDataset or not (uemo_demo repeats its set 1000 times);
    mmdet / mmseg draw images, mmaction2 writes MP4 clips."""
    import cv2
    pairs = []
    for config in DEMO_CONFIGS:
        pairs += [config, _demo_set(config, small_demo_sets)]
    _run([PY, '-c', BROWSE_ALL, str(tmp_path), *pairs], env, timeout=900)
    for config in DEMO_CONFIGS:
        drawn = sorted((tmp_path / osp.basename(config)).iterdir())
        assert len(drawn) == 2, (config, drawn)
        for path in drawn:
            if path.suffix == '.mp4':
                clip = cv2.VideoCapture(str(path))
                assert clip.get(cv2.CAP_PROP_FRAME_COUNT) >= 4 and clip.read()[0], path
            else:
                assert cv2.imread(str(path)) is not None, path


def test_browse_dataset_bounds_repeated_data():
    """RepeatDataset is taken off (each sample once) and the leaf cut to the count."""
    tool = load_tool('analysis_tools/browse_dataset')

    class Args:
        config = osp.join(REPO, 'configs', 'demo', 'uemo_demo.py')
        show_number = 5
        phase = 'train'
        cfg_options = data_root = None

    cfg, scope = tool.bounded_config(Args)
    assert scope == 'mmseg'
    assert load_config(Args.config).train_dataloader.dataset.type == 'RepeatDataset'
    dataset = cfg.train_dataloader.dataset
    assert dataset.type != 'RepeatDataset' and dataset.indices == 5
    Args.show_number = 0
    with pytest.raises(UserError, match='at least 1'):
        tool.bounded_config(Args)


# ---------------------------------------------------------------------------------------
# mim.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # three mim runs in subprocesses (mim imports pandas, pip, ...)
def test_mim_search_and_run_through_the_wrapper(env):
    found = _run([PY, '-m', 'emo_mm.mim', 'search', 'emo_mm', '--model', 'retinanet'],
                 env, timeout=300).stdout
    for name in ('retinanet_emov2_1m_coco', 'retinanet_emov2_20m_coco',
                 'retinanet_emov1_5m_coco'):
        assert name in found
    assert 'ssdlite_emov2_1m_320_coco' not in found
    fields = _run([PY, '-m', 'emo_mm.mim', 'search', 'emo_mm', '--model', 'deeplabv3',
                   '--field', 'backbone', 'config', 'ade20k/miou'], env, timeout=300).stdout
    entry = fields.split('config id: deeplabv3_emov1_5m_ade20k')[1].split('-----')[0]
    assert entry.split() == ['ade20k/miou', '37.8', 'backbone', 'emov1', 'config',
                             'configs/deeplabv3_emov1_5m_ade20k.py']
    flops = _run([PY, '-m', 'emo_mm.mim', 'run', 'emo_mm', 'get_flops', '1M'], env,
                 timeout=300).stdout
    assert 'EMOv2-1M' in flops and 'The script finished successfully.' in flops


def test_mim_root_of_an_installed_and_of_a_checkout_package(tmp_path, monkeypatch):
    import emo_mm
    from emo_mm.compat.mim_editable import emo_mm_root

    # this checkout (no install links): mim reads model-index.yml and tools/ at its root
    assert emo_mm_root() in (REPO, osp.join(REPO, 'emo_mm'))
    assert osp.isfile(osp.join(emo_mm_root(), 'tools', 'train.py')) or osp.isfile(
        osp.join(emo_mm_root(), '.mim', 'tools', 'train.py'))
    # a package with its .mim folder (wheel; editable install links): the package itself
    package = tmp_path / 'site' / 'emo_mm'
    (package / '.mim').mkdir(parents=True)
    (package / '.mim' / 'model-index.yml').write_text('Import: []\n')
    monkeypatch.setattr(emo_mm, '__file__', str(package / '__init__.py'))
    assert emo_mm_root() == str(package)


def test_collections_are_the_models_mim_searches():
    """``mim search emo_mm --model NAME`` matches collection names (lower-cased): one
    collection per model, defined once, e.g. RetinaNet for both backbones."""
    from modelindex.load_model_index import load
    index = load(osp.join(REPO, 'model-index.yml'))
    names = [c.name for c in index.collections]
    assert len(names) == len(set(names))
    assert {'EMOv2', 'EMOv1', 'SSDLite', 'RetinaNet', 'Mask R-CNN', 'DeepLabV3', 'PSPNet',
            'FPN', 'SegFormer', 'U-EMO', 'V-EMO'} == set(names)
    retinanet = {m.name for m in index.models if m.in_collection == 'RetinaNet'}
    assert retinanet == {f'retinanet_emov{v}_{s}_coco' for v, s in
                         [(2, '1m'), (2, '2m'), (2, '5m'), (2, '20m'),
                          (1, '1m'), (1, '2m'), (1, '5m')]}


# ---------------------------------------------------------------------------------------
# list_configs, get_flops, out_channels.
# ---------------------------------------------------------------------------------------
def test_list_configs_has_no_bases():
    names = list_configs()
    assert not [n for n in names if '_base_' in n.split('/')]
    assert {'emov2_5m_in1k', 'demo/uemo_demo', 'finetune/emov2_5m_custom-cls',
            'dit/d-emo-s-2_imagenet256'} <= set(names)
    on_disk = {osp.relpath(p, osp.join(REPO, 'configs'))[:-3] for p in
               glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
               if '_base_' not in p.split(os.sep)}
    assert set(names) == on_disk


def test_get_flops_input_size():
    tool = load_tool('analysis_tools/get_flops')
    assert tool.fixed_test_size(load_config('emov2_1m_in1k')) == (224, 224)
    assert tool.fixed_test_size(load_config('ssdlite_emov2_1m_320_coco')) == (320, 320)
    for name in ('retinanet_emov2_1m_coco', 'deeplabv3_emov2_1m_ade20k', 'uemo_hrf'):
        cfg = load_config(name)
        assert tool.fixed_test_size(cfg) is None, name
        with pytest.raises(UserError, match='give one with --shape H W'):
            tool.input_size(cfg, name, None)
        assert tool.input_size(cfg, name, [512]) == (512, 512)


@pytest.mark.slow  # two tool runs in subprocesses
def test_get_flops_on_detection_configs(env):
    result = _run([PY, 'tools/analysis_tools/get_flops.py', 'configs/retinanet_emov2_1m_coco.py'],
                  env, expect=2)
    assert result.stderr.strip().startswith('error: configs/retinanet_emov2_1m_coco.py: its '
                                            'test images keep their aspect ratio')
    assert 'Traceback' not in result.stderr
    table = _run([PY, 'tools/analysis_tools/get_flops.py', 'configs/ssdlite_emov2_1m_320_coco.py'],
                 env).stdout
    row = [line for line in table.splitlines() if 'ssdlite' in line]
    assert row and '320x320' in row[0]
    with open(osp.join(REPO, 'configs', 'metafiles', 'ssdlite_coco.yml')) as f:
        entry = [m for m in yaml.safe_load(f)['Models']
                 if m['Name'] == 'ssdlite_emov2_1m_320_coco']
    assert f'{entry[0]["Metadata"]["FLOPs"]:,}' in row[0]  # the metafile's measurement


def _consumers(cfg):
    """(where, declared in_channels, the backbone outputs it takes) for every part that
    reads the backbone: necks, decode / auxiliary heads (in_index), classifier heads."""
    model = cfg.model
    if model.get('neck') and 'in_channels' in model.neck:
        yield 'neck', model.neck.in_channels, 'all'
        return
    for key in ('decode_head', 'auxiliary_head'):
        head = model.get(key)
        if head and 'in_channels' in head:
            yield key, head.in_channels, head.get('in_index', -1)
    for key in ('head', 'cls_head'):
        if model.get(key) and 'in_channels' in model[key]:
            yield key, model[key].in_channels, -1


#: One config per base file with an EMO backbone (1M variants; test_config_sizes.py builds
#: every variant against the authors' logged sizes), the examples and the demo configs.
OUT_CHANNEL_CONFIGS = sorted(
    name for name in list_configs()
    if ('_1m_' in name or name == 'vemo_5m_k400' or name.startswith(('finetune/', 'demo/')))
    and not any(part in name for part in ('uemo', '_512_', 'emov1_1m_demo', 'single_frame')))


@pytest.mark.parametrize('name', OUT_CHANNEL_CONFIGS)
def test_out_channels_match_every_consumer(name):
    from emo_mm import models
    cfg = load_config(name)
    kwargs = dict(cfg.model.backbone)
    kwargs.pop('init_cfg', None)
    backbone_cls = getattr(models, kwargs.pop('type').split('.')[-1])  # EMOv2, EMO, VEMO
    with torch.device('meta'):
        backbone = backbone_cls(**kwargs)
    out = backbone.out_channels
    assert out == [backbone.stage_channels[i] for i in backbone.out_indices]
    consumers = list(_consumers(cfg))
    assert consumers, name
    for where, declared, index in consumers:
        if index == 'all':
            expected = out
        elif isinstance(index, (list, tuple)):
            expected = [out[i] for i in index]
        else:
            expected = out[index]
        declared = list(declared) if isinstance(declared, (list, tuple)) else declared
        assert declared == expected, (name, where, declared, out)


# ---------------------------------------------------------------------------------------
# tools/test.py --show-dir: a relative folder goes under the run's folder for every toolbox.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['demo/retinanet_emov2_1m_demo', 'demo/deeplabv3_emov2_1m_demo',
                                  'emov2_1m_in1k', 'demo/vemo_demo'])
def test_show_dir_is_a_folder_of_the_run(name, tmp_path):
    """mmdet's hook joins test_out_dir to work_dir/timestamp itself; mmseg saves through
    the LocalVisBackend of work_dir/timestamp/vis_data; mmpretrain's and mmaction2's hooks
    get the joined folder once the Runner exists (emo_mm.engine.place_show_dir).
    tests/test_detection_tools.py and test_segmentation_tools.py run them end to end."""
    from emo_mm.engine.launch import enable_visualization, place_show_dir
    cfg = load_config(name)
    enable_visualization(cfg, 'vis')
    log_dir = str(tmp_path / 'work' / '20260101_000000')
    scope = cfg.default_scope
    vis = cfg.default_hooks.visualization
    expected = osp.join(log_dir, 'vis')

    class Hook:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class Runner:
        rank = 0
        hooks = [Hook(**{k: v for k, v in vis.items() if k != 'type'})]

    Runner.cfg, Runner.log_dir = cfg, log_dir
    assert place_show_dir(Runner) == expected and osp.isdir(expected)
    if scope == 'mmdet':
        assert vis.draw and vis.test_out_dir == 'vis'  # DetVisualizationHook joins it
        assert osp.join(log_dir, vis.test_out_dir) == expected
    elif scope == 'mmseg':
        (backend, ) = cfg.visualizer.vis_backends
        assert vis.draw and osp.normpath(
            osp.join(log_dir, 'vis_data', backend.img_save_dir)) == expected
    else:
        assert vis.enable and Runner.hooks[0].out_dir == expected
    absolute = str(tmp_path / 'elsewhere')
    cfg = load_config(name)
    enable_visualization(cfg, absolute)
    Runner.cfg = cfg
    assert place_show_dir(Runner) == absolute
