"""Runs a tool with a fault injected at the second checkpoint save (test helper).

    python tests/fault_injection.py KIND tools/train.py CONFIG [ARGS...]

KIND:
    kill-during-write   the process writes half of the checkpoint file, then SIGKILLs itself
    sigint-during-write Ctrl-C (SIGINT) half-way through writing the checkpoint file
    sigint-in-config    Ctrl-C while MMEngine formats the config for the checkpoint's meta
                        (MMEngine turned this into "SyntaxError: Failed to format the config")

The first save goes through untouched, so the previous checkpoint exists when the fault hits.
"""
import os
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


def install(kind: str) -> None:
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner import Runner
    state = _second_save_only(Runner)
    if kind in ('kill-during-write', 'sigint-during-write'):
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
    import emo_mm  # noqa: F401
    install(kind)
    runpy.run_path(script, run_name='__main__')
