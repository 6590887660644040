"""The run-time fixes of emo_mm.compat."""
import subprocess
import sys

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

from emo_mm import compat


class _Opaque:  # a Python object, like the message hub in an MMEngine checkpoint
    pass


def test_full_unpickling_only_when_trusted(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': _Opaque()}, path)
    with pytest.raises(Exception, match='Weights only load failed'):
        _load_checkpoint(path, map_location='cpu')
    with compat.trusted_checkpoints():
        assert isinstance(_load_checkpoint(path, map_location='cpu')['meta'], _Opaque)
    with pytest.raises(Exception, match='Weights only load failed'):
        _load_checkpoint(path, map_location='cpu')  # the context does not leak


def test_runner_load_checkpoint_is_trusted():
    from mmengine.runner import Runner
    assert getattr(Runner.load_checkpoint, '_emo_mm_trusted', False)
    assert getattr(Runner.wrap_model, '_emo_mm_cpu', False)


def test_apply_is_idempotent():
    from mmengine.runner import Runner
    before = Runner.load_checkpoint
    compat._applied = False
    compat.apply()
    assert Runner.load_checkpoint is before


def test_missing_drn_and_ssd_head_fix():
    script = '''
import emo_mm
import mmaction.models
from mmaction.models.localizers.drn.drn import DRN
try:
    DRN()
except RuntimeError as err:
    print('DRN:', err)
from mmdet.models.dense_heads import SSDHead
head = SSDHead(num_classes=3, in_channels=(8, 8), anchor_generator=dict(
    type='SSDAnchorGenerator', scale_major=False, strides=[16, 32], ratios=[[2, 3], [2, 3]],
    min_sizes=[48, 100], max_sizes=[100, 150]))
print('loss_cls:', head.loss_cls)
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'DRN: DRN is not part of the installed mmaction2 1.2.0 wheel' in result.stdout
    assert 'loss_cls: None' in result.stdout
