"""What the fault tests share: the tiny training config, running the tools, reading errors."""
import hashlib
import os
import os.path as osp
import subprocess
import sys

import torch

from helpers import REPO

DEMO = osp.join(REPO, 'configs', 'demo', 'retinanet_emov2_1m_demo.py')
PY = sys.executable


def tool_env(stamps: str) -> dict:
    """The environment of a tool run: this checkout first, its own data-check stamps."""
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=PY, EMO_MM_CACHE_DIR=stamps,
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def write_tiny_config(path, data_root: str, epochs: int = 2, extra=()) -> str:
    """RetinaNet-EMOv2-1M with a 32-channel neck and head, 4 demo images at 96 px, batch 2
    (2 iterations per epoch), a checkpoint per epoch, no validation."""
    path.write_text('\n'.join([
        f'_base_ = [{DEMO!r}]',
        f'data_root = {data_root + "/"!r}',
        'model = dict(backbone=dict(drop_path_rate=0., init_cfg=None), neck=dict(out_channels=32),'
        ' bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))',
        'train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, '
        'dataset=dict(data_root=data_root, indices=4, pipeline=[dict(type="LoadImageFromFile"), '
        'dict(type="LoadAnnotations", with_bbox=True), '
        'dict(type="Resize", scale=(96, 96), keep_ratio=True), dict(type="PackDetInputs")]))',
        'val_dataloader = None', 'val_cfg = None', 'val_evaluator = None',
        'test_dataloader = None', 'test_cfg = None', 'test_evaluator = None',
        'randomness = dict(seed=0)',
        'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))',
        f'train_cfg = dict(max_epochs={epochs}, val_interval=100)', *extra]) + '\n')
    return str(path)


def config_with(folder, base: str, **entries) -> str:
    """A config file in ``folder`` that inherits ``base`` and sets ``entries``."""
    path = folder / f'cfg_{len(list(folder.iterdir()))}.py'
    lines = [f'_base_ = [{base!r}]'] + [f'{k} = {v}' for k, v in entries.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def run(args, env, expect=0, timeout=600):
    """Runs a command in the repository; asserts its exit code."""
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == expect, (result.returncode, result.stdout[-2000:],
                                         result.stderr[-3000:])
    return result


def train(config, work_dir, env, *extra, expect=0, fault=None):
    """``tools/train.py CONFIG --work-dir WORK_DIR EXTRA``, optionally with a fault of
    tests/fault_injection.py."""
    prefix = [PY, 'tests/fault_injection.py', fault] if fault else [PY]
    return run(prefix + ['tools/train.py', config, '--work-dir', str(work_dir), *extra], env,
               expect)


def error_line(result) -> str:
    """stderr of a failed tool: exactly one line starting with 'error: ', no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    return lines[0]


def digest(path) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def is_finite_checkpoint(path) -> bool:
    """Loads with torch's weights-only unpickler; every weight tensor finite."""
    state = torch.load(path, weights_only=True)['state_dict']
    return bool(state) and all(bool(torch.isfinite(v).all()) for v in state.values()
                               if v.is_floating_point())


def same_training_state(a_path, b_path):
    """Weights, optimizer state, iteration, epoch and learning rate agree."""
    import pytest
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter'])
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=1e-5, atol=1e-7, msg=key)
    state_a, state_b = a['optimizer']['state'], b['optimizer']['state']
    assert state_a.keys() == state_b.keys() and state_a
    for key in state_a:
        for name in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(state_b[key][name], state_a[key][name], rtol=1e-4,
                                       atol=1e-9)
    lr_a = [g['lr'] for g in a['optimizer']['param_groups']]
    lr_b = [g['lr'] for g in b['optimizer']['param_groups']]
    assert lr_a == pytest.approx(lr_b, rel=1e-9)
