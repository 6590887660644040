"""Runs a tool with a fault injected (test helper).

    python tests/fault_injection.py KIND tools/train.py CONFIG [ARGS...]

KIND, at the second checkpoint save (the first goes through untouched, so the previous
checkpoint exists when the fault hits):
    kill-during-write   the process writes half of the checkpoint file, then SIGKILLs itself
    sigint-during-write Ctrl-C (SIGINT) half-way through writing the checkpoint file
    sigint-in-config    Ctrl-C while MMEngine formats the config for the checkpoint's meta
                        (MMEngine turned this into "SyntaxError: Failed to format the config")
    enospc-during-write the disk fills up half-way through writing the checkpoint file
                        (OSError ENOSPC, as a full file system raises it)

KIND, at training iteration N (1-based):
    nan-loss-at-N       the loss of iteration N is NaN (as after an fp16 overflow or a NaN
                        in a sample); its backward pass makes every gradient NaN
    inf-grad-at-N       the loss of iteration N is finite but its gradients are infinite

KIND, at every training iteration:
    sleep-per-iter-S    sleeps S seconds after each iteration (a run that lasts a while)
"""
import errno
import os
import re
import runpy
import signal
import sys
import time


def _second_save_only(runner_cls):
    """Wraps Runner.save_checkpoint to flag the second save (class-level: this process only)."""
    original = runner_cls.save_checkpoint
    state = {'saves': 0, 'armed': False}

    def save_checkpoint(self, *args, **kwargs):
        state['saves'] += 1
        state['armed'] = state['saves'] == 2
        try:
            return original(self, *args, **kwargs)
        finally:
            state['armed'] = False

    runner_cls.save_checkpoint = save_checkpoint
    return state


def _signal_self(sig):
    os.kill(os.getpid(), sig)
    time.sleep(5)  # the signal arrives here (SIGKILL never returns)


class _InfiniteGradient:
    """Identity forward; the backward pass multiplies the gradient by infinity."""

    @staticmethod
    def make():
        import torch

        class InfiniteGradient(torch.autograd.Function):

            @staticmethod
            def forward(ctx, value):
                return value.clone()

            @staticmethod
            def backward(ctx, grad):
                return grad * float('inf')

        return InfiniteGradient


def _fault_at_iteration(kind: str, iteration: int) -> None:
    from mmengine.model import BaseModel
    parse_losses = BaseModel.parse_losses
    calls = {'n': 0}
    infinite_gradient = _InfiniteGradient.make()

    def faulty_parse_losses(self, losses):
        fault = False
        if self.training:
            calls['n'] += 1
            fault = calls['n'] == iteration
        if fault and kind == 'nan-loss':
            losses = {k: [v * float('nan') for v in value] if isinstance(value, list)
                      else value * float('nan') for k, value in losses.items()}
        loss, log_vars = parse_losses(self, losses)
        if fault and kind == 'inf-grad':
            loss = infinite_gradient.apply(loss)
        return loss, log_vars

    BaseModel.parse_losses = faulty_parse_losses


def _sleep_per_iteration(seconds: float) -> None:
    from mmengine.model import BaseModel
    parse_losses = BaseModel.parse_losses

    def slow_parse_losses(self, losses):
        if self.training:
            time.sleep(seconds)
        return parse_losses(self, losses)

    BaseModel.parse_losses = slow_parse_losses


def install(kind: str) -> None:
    match = re.fullmatch(r'(nan-loss|inf-grad)-at-(\d+)', kind)
    if match:
        _fault_at_iteration(match.group(1), int(match.group(2)))
        return
    match = re.fullmatch(r'sleep-per-iter-([\d.]+)', kind)
    if match:
        _sleep_per_iteration(float(match.group(1)))
        return
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner import Runner
    state = _second_save_only(Runner)
    if kind == 'enospc-during-write':
        put = LocalBackend.put

        def half_then_full(self, obj, filepath):
            if not state['armed']:
                return put(self, obj, filepath)
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filepath)

        LocalBackend.put = half_then_full
    elif kind in ('kill-during-write', 'sigint-during-write'):
        put = LocalBackend.put

        def half_then_fault(self, obj, filepath):
            if not state['armed']:
                return put(self, obj, filepath)
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
                _signal_self(signal.SIGKILL if kind == 'kill-during-write' else signal.SIGINT)
                f.write(obj[len(obj) // 2:])

        LocalBackend.put = half_then_fault
    elif kind == 'sigint-in-config':
        import mmengine.config.config as config_module
        format_code = config_module.FormatCode

        def interrupted_format(*args, **kwargs):
            if state['armed']:
                _signal_self(signal.SIGINT)
            return format_code(*args, **kwargs)

        config_module.FormatCode = interrupted_format
    else:
        raise SystemExit(f'unknown fault {kind!r}')


if __name__ == '__main__':
    # Ctrl-C as in a terminal: a process started in the background by a non-interactive
    # shell (CI runners, `make test &`) inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kind, script = sys.argv[1], sys.argv[2]
    sys.argv = [script] + sys.argv[3:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    import emo_mm.compat.enable  # noqa: F401  (as the tools' first import)
    install(kind)
    runpy.run_path(script, run_name='__main__')
