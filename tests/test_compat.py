"""emo_mm.compat: each fix, shown to be needed (the upstream failure) and to work."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import REPO

ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
TOOLBOXES = ('mmdet', 'mmseg', 'mmaction', 'mmpretrain')


def _python(script: str, env=None, timeout=300, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=cwd, env=env or ENV, timeout=timeout)


def test_import_emo_mm_imports_no_toolbox():
    result = _python('import sys, emo_mm\n'
                     'print(sorted(m for m in sys.modules if m.split(".")[0] in '
                     f'{TOOLBOXES!r} and not m.startswith("mmaction.models.localizers.drn")))\n'
                     'print("mmengine" in sys.modules)')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['[]', 'False']


@pytest.mark.slow
def test_mmaction_drn_stand_in():
    without = _python('import mmaction.models')
    assert without.returncode != 0 and 'drn' in without.stderr  # the upstream defect
    result = _python('import emo_mm.compat.enable\nimport mmaction.models\n'
                     'from mmaction.models.localizers.drn.drn import DRN\n'
                     'try:\n    DRN()\nexcept RuntimeError as err:\n    print("DRN:", err)')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'DRN: DRN is not part of the installed mmaction2 1.2.0 wheel' in result.stdout


def test_pkg_resources_warning_silenced():
    script = ('import warnings\nwarnings.simplefilter("error")\n{}'
              'import pkg_resources\nprint("ok")')
    without = _python(script.format(''))
    assert without.returncode != 0 and 'pkg_resources is deprecated' in without.stderr
    result = _python(script.format('import emo_mm.compat.enable\n'))
    assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-2000:]


def test_mmengine_checkpoint_in_plain_types(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub

    from emo_mm.compat.mmengine_checkpoint import from_plain, to_plain
    hub = MessageHub('compat-test')
    for loss in (2.5, 1.5):
        hub.update_scalar('train/loss', np.float64(loss))
    hub.update_info('best_score', np.float64(0.25))
    checkpoint = {'meta': {'epoch': 3, 'dataset_meta': {'classes': ('a', 'b')}},
                  'message_hub': hub.state_dict(),
                  'state_dict': torch.nn.Linear(2, 2).state_dict()}
    raw, plain = str(tmp_path / 'raw.pth'), str(tmp_path / 'plain.pth')
    torch.save(checkpoint, raw)
    with pytest.raises(Exception, match='Weights only load failed'):  # the upstream defect
        torch.load(raw, weights_only=True)
    torch.save({k: to_plain(v) for k, v in checkpoint.items()}, plain)
    loaded = from_plain(torch.load(plain, weights_only=True))
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    np.testing.assert_array_equal(buffer.data[0], [2.5, 1.5])
    best = loaded['message_hub']['runtime_info']['best_score']
    assert type(best) is np.float64 and best == 0.25
    assert loaded['meta'] == checkpoint['meta']
    assert to_plain(checkpoint['state_dict']) is checkpoint['state_dict']  # not copied


@pytest.mark.skipif(torch.cuda.is_available(), reason='the defect needs a machine without CUDA')
def test_cpu_distributed_without_set_device():
    env = dict(ENV, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
               MASTER_PORT='29731', CUDA_VISIBLE_DEVICES='')
    without = _python('from mmengine.dist import init_dist\ninit_dist("pytorch", backend="gloo")',
                      env=env)
    assert without.returncode != 0  # torch.cuda.set_device without a GPU
    script = '''
import torch, torch.nn as nn, torch.distributed as dist
from mmengine.config import Config
import mmengine.model  # registers the wrappers
from mmengine.registry import MODEL_WRAPPERS
from emo_mm.compat import cpu_distributed
cfg = Config(dict(launcher='pytorch'))
cpu_distributed.prepare(cfg)
print('backend', dist.get_backend())
model = MODEL_WRAPPERS.build(dict(cfg.model_wrapper_cfg), default_args=dict(
    module=nn.Linear(2, 2), device_ids=[0]))
print('wrapped', type(model).__name__, model.device_ids)
dist.destroy_process_group()
'''
    result = _python(script, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'backend gloo' in result.stdout
    assert 'wrapped MMDistributedDataParallel None' in result.stdout


_SSD_HEAD = '''
def build():
    from mmdet.models.dense_heads import SSDHead
    return SSDHead(num_classes=3, in_channels=(8, 8), anchor_generator=dict(
        type='SSDAnchorGenerator', scale_major=False, strides=[16, 32], ratios=[[2, 3], [2, 3]],
        min_sizes=[48, 100], max_sizes=[100, 150]))
'''


def test_ssd_head_loss_cls():
    """Applied at once when mmdet's head is imported (the upstream defect shows before)."""
    result = _python(_SSD_HEAD + '''
print('before:', hasattr(build(), 'loss_cls'))
import emo_mm.compat
emo_mm.compat.apply()
print('after:', build().loss_cls)
''')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'before: False' in result.stdout  # the upstream defect
    assert 'after: None' in result.stdout


def test_fixes_wait_for_their_targets():
    """Applied before mmdet is imported, the fix lands when its module is first imported;
    the watcher leaves sys.meta_path once every target was imported."""
    result = _python(_SSD_HEAD + '''
import sys
import emo_mm.compat
emo_mm.compat.apply()
print('waiting:', 'mmdet_ssd_head' in emo_mm.compat.pending(), 'mmdet' in sys.modules)
print('built:', build().loss_cls)
print('waiting:', 'mmdet_ssd_head' in emo_mm.compat.pending())
import importlib
for fix in emo_mm.compat.fix_modules():
    if fix.TARGET:
        importlib.import_module(fix.TARGET)
print('left:', emo_mm.compat.pending(), len([f for f in sys.meta_path
                                             if 'TargetImportWatcher' in type(f).__name__]))
''')
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[:3] == ['waiting: True False', 'built: None', 'waiting: False'], lines
    assert lines[-1] == 'left: [] 0', lines


def test_mmengine_config_prefix(tmp_path):
    (tmp_path / 'mine.py').write_text("_base_ = ['emo_mm::emov2_1m_in1k.py']\n"
                                      "model = dict(head=dict(num_classes=7))\n")
    script = '''
from mmengine.config import Config
def load():
    try:
        cfg = Config.fromfile('mine.py')
        return cfg.model.backbone.type, cfg.model.head.num_classes, cfg.get('scope')
    except Exception as err:
        return type(err).__name__
print('before:', load())
import emo_mm.compat
emo_mm.compat.apply()
print('after:', load())
'''
    result = _python(script, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith('before: ') and 'emo_mm' not in lines[0]  # the upstream defect
    assert lines[1] == "after: ('emo_mm.EMOv2', 7, None)", lines


def test_mmengine_local_loader(tmp_path):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

    from emo_mm.compat import mmengine_local_loader
    from emo_mm.compat.mmengine_checkpoint import to_plain
    history = HistoryBuffer()
    history.update(1.5)
    path = str(tmp_path / 'plain.pth')
    torch.save(to_plain({'message_hub': {'log_scalars': {'loss': history}}}), path)
    installed = CheckpointLoader._schemes['']
    try:
        CheckpointLoader.register_scheme('', load_from_local, force=True)  # MMEngine's own
        raw = CheckpointLoader.load_checkpoint(path)['message_hub']['log_scalars']['loss']
        assert not isinstance(raw, HistoryBuffer)  # the upstream defect: tags not restored
        mmengine_local_loader.apply()
        loaded = CheckpointLoader.load_checkpoint(path)['message_hub']['log_scalars']['loss']
        assert isinstance(loaded, HistoryBuffer) and loaded.current() == 1.5
    finally:
        CheckpointLoader.register_scheme('', installed, force=True)


def test_mmpretrain_model_hub():
    script = '''
import mmpretrain
print('before:', len(mmpretrain.list_models('emov2*')))
import emo_mm.compat
emo_mm.compat.apply()
print('after:', sorted(mmpretrain.list_models('emov2-5m')))
'''
    result = _python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'before: 0' in result.stdout  # the upstream defect: emo_mm's names unknown
    assert "after: ['emov2-5m-kd_in1k', 'emov2-5m_in1k']" in result.stdout


def test_mim_editable(tmp_path):
    """mim looks for emo_mm's files next to its metadata in site-packages (an editable
    install, as make setup makes, keeps them in the repository). Run as a user runs mim, away
    from the checkout and without it on PYTHONPATH: pkg_resources would otherwise find the
    editable build's ``emo_mm.egg-info`` in the checkout's root."""
    script = '''
import os.path as osp
import mim.utils as mim_utils
from emo_mm.compat import mim_editable
def has_index(path):
    return osp.isfile(osp.join(path, '.mim', 'model-index.yml')) or osp.isfile(
        osp.join(path, 'model-index.yml'))
print('before:', has_index(mim_utils.get_installed_path('emo_mm')))
mim_editable.apply()
print('after:', has_index(mim_utils.get_installed_path('emo_mm')))
print('others unchanged:', mim_utils.get_installed_path('mmdet').endswith('site-packages/mmdet'))
'''
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    result = _python(script, env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'before: False' in result.stdout  # the upstream defect (editable install)
    assert 'after: True' in result.stdout and 'others unchanged: True' in result.stdout


def test_mmseg_visualizer_layout():
    script = '''
import numpy as np, torch
from mmengine.structures import PixelData
from mmseg.visualization import SegLocalVisualizer
from emo_mm.compat import mmseg_visualizer_layout
image = torch.rand(3, 24, 32).mul(255).byte().permute(1, 2, 0).numpy()[..., [2, 1, 0]]
label = PixelData(data=torch.randint(0, 2, (1, 24, 32)))
vis = SegLocalVisualizer(name='v')
def draw():
    try:
        out = vis._draw_sem_seg(image, label, ('a', 'b'), [[255, 0, 0], [0, 255, 0]])
        return f'ok {out.shape}'
    except Exception as err:
        return type(err).__name__
print('before:', draw())
mmseg_visualizer_layout.apply()
print('after:', draw())
'''
    result = _python(script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'before: error' in result.stdout  # the upstream defect (cv2.error)
    assert 'after: ok (24, 32, 3)' in result.stdout


def test_mmaction_video_writer(tmp_path):
    script = f'''
import cv2, numpy as np
from mmaction.visualization.video_backend import LocalVisBackend
from emo_mm.compat import mmaction_video_writer
frames = np.random.randint(0, 255, (5, 32, 48, 3), dtype=np.uint8)
backend = LocalVisBackend(save_dir={str(tmp_path)!r})
try:
    backend.add_video('clip', frames, out_type='video')
except ImportError as err:
    print('before:', err)
mmaction_video_writer.apply()
backend.add_video('clip', frames, out_type='video')
clip = cv2.VideoCapture({str(tmp_path / 'clip.mp4')!r})
print('after:', int(clip.get(cv2.CAP_PROP_FRAME_COUNT)), int(clip.get(cv2.CAP_PROP_FRAME_WIDTH)))
'''
    result = _python(script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'before: Please install moviepy' in result.stdout  # the upstream defect
    assert 'after: 5 48' in result.stdout


def test_mmaction_visualization_hook(tmp_path):
    script = f'''
import glob, torch
from mmaction.engine.hooks import VisualizationHook
from mmaction.structures import ActionDataSample
from mmaction.visualization import ActionVisualizer
from emo_mm.compat import mmaction_visualization_hook
ActionVisualizer.get_instance('visualizer', save_dir={str(tmp_path)!r})
sample = ActionDataSample().set_gt_label(1).set_pred_score(torch.tensor([0.2, 0.8]))
one_view = torch.randint(0, 255, (3, 4, 16, 16), dtype=torch.uint8)  # (C, T, H, W)
three_views = torch.randint(0, 255, (3, 3, 4, 16, 16), dtype=torch.uint8)  # ThreeCrop
def draw(folder, video):
    hook = VisualizationHook(enable=True, interval=1, out_dir=folder)
    try:
        hook._draw_samples(0, dict(inputs=[video]), [sample])
        return len(glob.glob(folder + '/**/*.png', recursive=True))
    except Exception as err:
        return type(err).__name__
root = {str(tmp_path)!r}
print('before:', draw(root + '/a', one_view), draw(root + '/b', three_views))
mmaction_visualization_hook.apply()
print('after:', draw(root + '/c', one_view), draw(root + '/d', three_views))
'''
    result = _python(script)
    assert result.returncode == 0, result.stderr[-2000:]
    # the upstream defects: show= to the visualiser; permute of a multi-view sample
    assert 'before: TypeError RuntimeError' in result.stdout
    assert 'after: 4 4' in result.stdout  # 4 frames; of three views, the first


def test_mmengine_file_client_notices_dropped():
    # what mmengine's CheckpointHook.before_train does on every training run
    script = '''
from mmengine.logging import MMLogger
MMLogger.get_instance('compat-test', log_level='WARNING')
{}
from mmengine.fileio import FileClient
FileClient.infer_client(None, '.')
print('client:', type(FileClient.infer_client(dict(backend='disk'), '.').client).__name__)
'''
    notices = ('"FileClient" will be deprecated', '"HardDiskBackend" is the alias')
    without = _python(script.format(''))
    assert without.returncode == 0, without.stderr[-3000:]
    assert all(n in without.stdout + without.stderr for n in notices)  # the upstream defect
    result = _python(script.format('from emo_mm.compat import mmengine_file_client\n'
                                   'mmengine_file_client.apply()\nmmengine_file_client.apply()'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'client: HardDiskBackend' in result.stdout  # still works
    assert not any(n in result.stdout + result.stderr for n in notices)
