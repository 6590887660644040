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


def _python(script: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=REPO, env=env or ENV, timeout=timeout)


def test_import_emo_mm_imports_no_toolbox():
    result = _python('import sys, emo_mm\n'
                     'print(sorted(m for m in sys.modules if m.split(".")[0] in '
                     f'{TOOLBOXES!r} and not m.startswith("mmaction.models.localizers.drn")))\n'
                     'print("mmengine" in sys.modules)')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['[]', 'False']


def test_mmaction_drn_stand_in():
    without = _python('import mmaction.models')
    assert without.returncode != 0 and 'drn' in without.stderr  # the upstream defect
    result = _python('import emo_mm\nimport mmaction.models\n'
                     'from mmaction.models.localizers.drn.drn import DRN\n'
                     'try:\n    DRN()\nexcept RuntimeError as err:\n    print("DRN:", err)')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'DRN: DRN is not part of the installed mmaction2 1.2.0 wheel' in result.stdout


def test_pkg_resources_warning_silenced():
    script = ('import warnings\nwarnings.simplefilter("error")\n{}'
              'import pkg_resources\nprint("ok")')
    without = _python(script.format(''))
    assert without.returncode != 0 and 'pkg_resources is deprecated' in without.stderr
    result = _python(script.format('import emo_mm\n'))
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


def test_ssd_head_loss_cls():
    script = '''
import emo_mm
from mmdet.models.dense_heads import SSDHead
def build():
    return SSDHead(num_classes=3, in_channels=(8, 8), anchor_generator=dict(
        type='SSDAnchorGenerator', scale_major=False, strides=[16, 32], ratios=[[2, 3], [2, 3]],
        min_sizes=[48, 100], max_sizes=[100, 150]))
print('before:', hasattr(build(), 'loss_cls'))
from mmdet.registry import MODELS
MODELS.get('emo_mm.EMOv2')  # first use of an emo_mm model with mmdet's heads imported
print('after:', build().loss_cls)
'''
    result = _python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'before: False' in result.stdout  # the upstream defect
    assert 'after: None' in result.stdout


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
