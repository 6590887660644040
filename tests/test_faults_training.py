"""Training faults: a diverging run, two runs in one work dir, a full disk.

The runs go through the real ``tools/train.py`` in subprocesses (marked slow) on the tiny
RetinaNet of :mod:`fault_helpers`, with faults from ``tests/fault_injection.py``; the AMP
case runs MMEngine's own ``AmpOptimWrapper`` in-process on a toy model. Every case asserts
its outcome: the message, the exit code, and which checkpoints are left and load.
"""
import json
import os
import os.path as osp
import socket
import subprocess
import time

import pytest
import torch

from emo_mm.demo.data import make_coco_shapes
from emo_mm.engine.worklock import LOCK_NAME, WorkDirLock, describe, process_start_time
from fault_helpers import (PY, error_line, is_finite_checkpoint, run, tool_env, train,
                           write_tiny_config)
from helpers import REPO


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    return tool_env(str(tmp_path_factory.mktemp('stamps')))


@pytest.fixture(scope='module')
def coco_root():
    return make_coco_shapes(osp.join(REPO, 'data', 'demo_coco'))


@pytest.fixture(scope='module')
def tiny(coco_root, tmp_path_factory):
    return write_tiny_config(tmp_path_factory.mktemp('cfg') / 'tiny.py', coco_root)


def _checkpoints(work_dir):
    return sorted(p.name for p in work_dir.glob('*.pth'))


# ---------------------------------------------------------------------------------------
# A diverging run.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # subprocess runs of the tools
def test_nan_loss_stops_before_any_save(tiny, env, tmp_path):
    work_dir = tmp_path / 'nan'
    line = error_line(train(tiny, work_dir, env, expect=2, fault='nan-loss-at-3'))
    assert line.startswith('error: Training stopped at iteration 3 (epoch 2): the loss is nan '
                           '(loss_cls nan, loss_bbox nan). Likely causes: a learning rate too '
                           'high (now '), line
    assert '; a bad sample in this batch (' in line and '/demo_coco/train/' in line
    assert line.endswith(f'Nothing was saved from these weights; the newest checkpoint, '
                         f'{work_dir / "epoch_1.pth"}, is from before; fix the cause and '
                         'continue with --resume.')
    assert _checkpoints(work_dir) == ['epoch_1.pth']
    assert is_finite_checkpoint(work_dir / 'epoch_1.pth')
    assert not (work_dir / LOCK_NAME).exists()  # released at exit


@pytest.mark.slow  # subprocess runs of the tools
def test_rotation_keeps_the_newest_finite_checkpoint(coco_root, env, tmp_path):
    """max_keep_ckpts=1: a blow-up in epoch 3 used to leave only a NaN epoch_3.pth."""
    config = write_tiny_config(tmp_path / 'keep1.py', coco_root, epochs=3, extra=[
        'default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))'])
    work_dir = tmp_path / 'rotation'
    line = error_line(train(config, work_dir, env, expect=2, fault='nan-loss-at-5'))
    assert line.startswith('error: Training stopped at iteration 5 (epoch 3): the loss is nan')
    assert _checkpoints(work_dir) == ['epoch_2.pth']
    assert is_finite_checkpoint(work_dir / 'epoch_2.pth')
    log = train(config, work_dir, env, '--resume').stdout  # the good checkpoint resumes
    assert 'resumed epoch: 2, iter: 4' in log
    assert _checkpoints(work_dir) == ['epoch_3.pth']
    assert is_finite_checkpoint(work_dir / 'epoch_3.pth')


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_infinite_gradient(coco_root, env, tmp_path):
    """A finite loss with infinite gradients: caught by the gradient norm where clip_grad
    computes it, otherwise by the weights it produced."""
    clipped = write_tiny_config(tmp_path / 'clip.py', coco_root, extra=[
        'optim_wrapper = dict(clip_grad=dict(_delete_=True, max_norm=10.0))'])
    line = error_line(train(clipped, tmp_path / 'clip', env, expect=2, fault='inf-grad-at-2'))
    assert line.startswith('error: Training stopped at iteration 2 (epoch 1): the gradient '
                           'norm is nan. Likely causes:'), line
    assert 'no checkpoint had been saved yet' in line
    unclipped = write_tiny_config(tmp_path / 'noclip.py', coco_root)
    line = error_line(train(unclipped, tmp_path / 'noclip', env, expect=2, fault='inf-grad-at-3'))
    assert line.startswith('error: Training stopped at iteration 3 (epoch 2): ')
    assert 'weight tensors are not finite (backbone.' in line
    assert _checkpoints(tmp_path / 'noclip') == ['epoch_1.pth']
    assert is_finite_checkpoint(tmp_path / 'noclip' / 'epoch_1.pth')


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_learning_rate_far_too_high(coco_root, env, tmp_path):
    """No injected fault: AdamW at lr=1e4 diverges by itself."""
    config = write_tiny_config(tmp_path / 'lr.py', coco_root, epochs=4, extra=[
        'optim_wrapper = dict(optimizer=dict(lr=1e4))', 'param_scheduler = []'])
    work_dir = tmp_path / 'lr'
    line = error_line(train(config, work_dir, env, expect=2))
    assert line.startswith('error: Training stopped at iteration ')
    assert 'Likely causes: a learning rate too high (now 1e+04)' in line
    for name in _checkpoints(work_dir):
        assert is_finite_checkpoint(work_dir / name), name


class _ToyData(torch.utils.data.Dataset):

    def __len__(self):
        return 64

    def __getitem__(self, index):
        return dict(inputs=torch.full((4, ), float(index % 7)))


def _toy_model(bad_iterations):
    from mmengine.model import BaseModel

    class InfiniteGradient(torch.autograd.Function):

        @staticmethod
        def forward(ctx, value):
            return value.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float('inf')

    class Toy(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)
            self.calls = 0

        def forward(self, inputs, data_samples=None, mode='loss'):
            self.calls += 1
            loss = self.linear(inputs.float()).float().pow(2).mean()
            if self.calls in bad_iterations:
                loss = InfiniteGradient.apply(loss)
            return dict(loss=loss)

    return Toy()


def _train_toy(tmp_path, monkeypatch, bad_iterations, amp, max_iters=6, max_skipped=3):
    """Trains the toy model with MMEngine's AmpOptimWrapper (its GradScaler swapped for
    torch's CPU one) or a plain OptimWrapper; returns (runner, scales after each iter)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    monkeypatch.setattr(amp_module, 'is_cuda_available', lambda: True)
    scales = []

    class CpuScaler(Hook):
        def before_run(self, runner):
            if amp:
                runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=256.)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if amp:
                scales.append(runner.optim_wrapper.loss_scaler.get_scale())

    wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16') if amp else dict(type='OptimWrapper')
    runner = Runner(
        model=_toy_model(bad_iterations), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=_ToyData(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(**wrapper, optimizer=dict(type='SGD', lr=0.01),
                           clip_grad=dict(max_norm=1.0)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1000)),
        custom_hooks=[dict(type='emo_mm.NonFiniteGuardHook', max_skipped_steps=max_skipped),
                      CpuScaler()])
    runner.train()
    return runner, scales


def test_amp_skipped_steps_are_not_errors(tmp_path, monkeypatch):
    """With AMP the loss scaler skips steps whose gradients overflow: the guard lets them
    pass (weights untouched, scale lowered) and stops only on a run of them."""
    from emo_mm.engine import NonFiniteError
    runner, scales = _train_toy(tmp_path / 'amp', monkeypatch, bad_iterations={2, 3}, amp=True)
    assert runner.iter == 6
    assert scales[:3] == [256., 128., 64.]  # iterations 2 and 3 skipped, each halving it
    assert all(bool(torch.isfinite(p).all()) for p in runner.model.parameters())
    with pytest.raises(NonFiniteError) as err:
        _train_toy(tmp_path / 'amp_dead', monkeypatch, bad_iterations=set(range(2, 99)),
                   amp=True)
    assert str(err.value).startswith(
        'Training stopped at iteration 4: the AMP loss scaler skipped 3 steps in a row for '
        'non-finite gradients (scale now 32). Likely causes: a learning rate too high')
    assert 'an fp16 overflow under AMP' in str(err.value)
    with pytest.raises(NonFiniteError, match=r'^Training stopped at iteration 2: the gradient '
                       r'norm is (nan|inf)\.'):
        _train_toy(tmp_path / 'fp32', monkeypatch, bad_iterations={2}, amp=False)


def test_no_save_of_nonfinite_weights_whatever_the_path():
    """The guard stops training first; a save reached another way (an EMA hook, a custom
    loop calling save_checkpoint) is refused before anything is written."""
    from types import SimpleNamespace

    from emo_mm.engine import CheckpointSafetyHook, NonFiniteError
    checkpoint = {'state_dict': {'a': torch.ones(2), 'b': torch.tensor([1., float('inf')])},
                  'meta': {}}
    with pytest.raises(NonFiniteError, match=r'^Not saving a checkpoint at iteration 7: 1 weight '
                       r'tensors are not finite \(b\)\. The checkpoints saved before are kept\.$'):
        CheckpointSafetyHook().before_save_checkpoint(SimpleNamespace(iter=7), checkpoint)


# ---------------------------------------------------------------------------------------
# One run per work dir.
# ---------------------------------------------------------------------------------------
def _wait_for_lock(path, proc, timeout=300):
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, 'the first run never took the lock'
        if path.exists():
            try:
                record = json.loads(path.read_text())
            except ValueError:
                record = {}
            if record.get('pid') == proc.pid:
                return record
        time.sleep(0.1)


@pytest.mark.slow  # subprocess runs of the tools
def test_second_run_is_refused_and_the_first_unharmed(tiny, env, tmp_path):
    work_dir = tmp_path / 'shared'
    first = subprocess.Popen([PY, 'tests/fault_injection.py', 'sleep-per-iter-3',
                              'tools/train.py', tiny, '--work-dir', str(work_dir)], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        record = _wait_for_lock(work_dir / LOCK_NAME, first)
        started = time.strftime('%Y-%m-%d %H:%M:%S',
                                time.localtime(process_start_time(first.pid)))
        expected = (f'error: The work dir {work_dir} is in use by another training run: pid '
                    f'{first.pid} on host {socket.gethostname()}, started {started} (')
        assert describe(record).startswith(f'pid {first.pid} on host ')
        seconds = [subprocess.Popen([PY, 'tools/train.py', tiny, '--work-dir', str(work_dir),
                                     *flags], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for flags in ([], ['--overwrite'], ['--resume'])]
        for second in seconds:
            out, err = second.communicate(timeout=300)
            assert second.returncode == 2, (out[-2000:], err[-2000:])
            line = error_line(subprocess.CompletedProcess([], 2, out, err))
            assert line.startswith(expected), (line, expected)
            assert line.endswith('Wait for it to finish, or train into another --work-dir (if '
                                 f'that run is gone, delete {work_dir / LOCK_NAME}).')
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-3000:]
    assert _checkpoints(work_dir) == ['epoch_1.pth', 'epoch_2.pth']
    assert torch.load(work_dir / 'epoch_2.pth', weights_only=True)['meta']['iter'] == 4
    assert is_finite_checkpoint(work_dir / 'epoch_2.pth')
    runs = [d for d in os.listdir(work_dir) if osp.isdir(work_dir / d)]
    assert len(runs) == 1  # one log folder: the refused runs wrote nothing
    assert not (work_dir / LOCK_NAME).exists()


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_stale_lock_is_taken_over(tiny, env, tmp_path):
    work_dir = tmp_path / 'stale'
    work_dir.mkdir()
    dead = subprocess.Popen(['sleep', '0'])
    dead.wait()  # its pid no longer runs
    stale = dict(pid=dead.pid, host=socket.gethostname(), start_ticks=1, started=1.7e9,
                 argv=['python', 'tools/train.py', 'killed'], run='x')
    (work_dir / LOCK_NAME).write_text(json.dumps(stale))
    log = train(tiny, work_dir, env, '--cfg-options', 'train_cfg.max_epochs=1').stdout
    assert (f'Took over the lock of {work_dir} from {describe(stale)}, which is no longer '
            'running.') in log
    assert _checkpoints(work_dir) == ['epoch_1.pth']
    assert not (work_dir / LOCK_NAME).exists()


@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_lock_record_of_a_live_process_is_respected(tiny, env, tmp_path):
    """On a file system without flock the record decides: this (live) test process."""
    work_dir = tmp_path / 'noflock'
    work_dir.mkdir()
    from emo_mm.engine.worklock import _process_start_ticks
    record = dict(pid=os.getpid(), host=socket.gethostname(),
                  start_ticks=_process_start_ticks(os.getpid()),
                  started=process_start_time(os.getpid()), argv=['pytest'], run='y')
    (work_dir / LOCK_NAME).write_text(json.dumps(record))
    line = error_line(train(tiny, work_dir, env, '--overwrite', expect=2))
    assert line.startswith(f'error: The work dir {work_dir} is in use by another training run: '
                           f'pid {os.getpid()} on host {socket.gethostname()}, started ')
    assert json.loads((work_dir / LOCK_NAME).read_text()) == record  # left alone


@pytest.mark.slow  # distributed subprocess runs
@pytest.mark.extended
def test_distributed_run_locks_once_and_is_refused_without_hanging(tiny, env, tmp_path):
    work_dir = tmp_path / 'dist'
    holder = WorkDirLock(str(work_dir)).acquire()  # this process holds it, as a run would
    try:
        start = time.time()
        result = run(['bash', 'tools/dist_train.sh', tiny, '2', '--work-dir', str(work_dir)],
                     dict(env, PORT='29517'), expect=1, timeout=300)
        assert time.time() - start < 240
        busy = f'The work dir {work_dir} is in use by another training run: pid {os.getpid()} '
        assert busy in result.stderr
        assert _checkpoints(work_dir) == []
    finally:
        holder.release()
    result = run(['bash', 'tools/dist_train.sh', tiny, '2', '--work-dir', str(work_dir),
                  '--cfg-options', 'train_cfg.max_epochs=1'], dict(env, PORT='29518'),
                 timeout=600)
    assert _checkpoints(work_dir) == ['epoch_1.pth']
    assert not (work_dir / LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------
# A full disk.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # subprocess runs of the tools
@pytest.mark.extended
def test_disk_full_during_save(tiny, env, tmp_path):
    work_dir = tmp_path / 'full'
    line = error_line(train(tiny, work_dir, env, expect=2, fault='enospc-during-write'))
    size = osp.getsize(work_dir / 'epoch_1.pth')
    need = f'{size / 2**20:.0f} MB' if size >= 2**20 else f'{size / 2**10:.0f} KB'
    assert line.startswith(f'error: Could not save {work_dir / "epoch_2.pth"}: no space left on '
                           f'device (it needs about {need}, '), line
    assert line.endswith('free). Nothing was written under that name and the checkpoints there '
                         'are intact (epoch_1.pth; newest epoch_1.pth). Free some space and '
                         'continue with --resume (same --work-dir).')
    assert _checkpoints(work_dir) == ['epoch_1.pth']
    assert not any(n.endswith('.partial') for n in os.listdir(work_dir))
    assert is_finite_checkpoint(work_dir / 'epoch_1.pth')
    log = train(tiny, work_dir, env, '--resume').stdout
    assert 'resumed epoch: 1, iter: 2' in log
    assert _checkpoints(work_dir) == ['epoch_1.pth', 'epoch_2.pth']
