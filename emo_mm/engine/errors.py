"""Errors a person can act on: one or two lines, exit code 2, no traceback.

The command-line tools run their ``main`` through :func:`run_cli`. User errors (bad data,
checkpoints, configs, command lines) print ``error: <what is wrong and how to fix it>``
and exit with 2; ``--debug`` or ``EMO_MM_DEBUG=1`` shows the traceback instead. Anything
else is a bug and keeps its traceback (exit 1).
"""
import os
import re
import sys
from typing import Callable, Optional

from ..datasets.checks import DataError
from ..deploy.bundle import BundleError
from ..models.checkpoint import CheckpointError

#: Exit status for errors in what the user gave (argparse uses 2 as well).
USER_ERROR_EXIT = 2
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPT_EXIT = 130


class UserError(ValueError):
    """A problem in the command line, config or files that the user has to fix."""


def debug_enabled() -> bool:
    return '--debug' in sys.argv or os.environ.get('EMO_MM_DEBUG', '') not in ('', '0')


_REGISTRY_MISS = re.compile(r"'?([\w.]+) is not in the ([\w.]+)::(\w+) registry")
_WORKER_ORIGIN = re.compile(r'Caught (\w+) in DataLoader worker process \d+\.')


def user_message(err: BaseException) -> Optional[str]:
    """The one- or two-line message for a user error, or None for anything else."""
    text = str(err)
    if _WORKER_ORIGIN.search(text):
        # A DataLoader worker re-raises with its traceback in the message: keep the last line.
        lines = [line for line in text.splitlines() if line.strip()]
        text = re.sub(r'^[\w.]+: ', '', lines[-1]) if lines else text
    if isinstance(err, (UserError, DataError, CheckpointError, BundleError)):
        return text
    if isinstance(err, FileNotFoundError):
        return text if err.filename is None else f'{err.filename}: {err.strerror or text}'
    if isinstance(err, KeyError):
        match = _REGISTRY_MISS.search(text)
        if match:
            return registry_message(*match.groups())
    return None


def registry_message(name: str, scope: str, registry: str) -> str:
    """Names the scope to write when a type is emo_mm's but was given without it."""
    short = name.split('.')[-1]
    if registry == 'model':
        from ..registry import MODELS
        try:
            import emo_mm.models  # noqa: F401  (registers them)
        except ImportError:
            pass
        if short in MODELS.module_dict and '.' not in name:
            return (f"type='{name}' is not a {scope} model: it is emo_mm's. Write "
                    f"type='emo_mm.{name}' (configs whose default_scope is {scope} need "
                    'the scope prefix).')
    return (f"type='{name}' is not registered in {scope}'s {registry} registry. Check the "
            "spelling, or prefix it with the toolbox that defines it (e.g. 'emo_mm.', "
            "'mmpretrain.').")


def run_cli(main: Callable, interrupt_hint: Optional[Callable[[], str]] = None):
    """Runs a tool's ``main`` with the error policy above; returns what it returns."""
    try:
        return main()
    except KeyboardInterrupt as err:
        if debug_enabled():
            raise
        detail = f' {err}' if str(err) else ''
        hint = interrupt_hint() if interrupt_hint else ''
        print(f'Interrupted{detail}.' + (f' {hint}' if hint else ''), file=sys.stderr)
        sys.exit(INTERRUPT_EXIT)
    except Exception as err:  # noqa: B902  (classified below; bugs are re-raised)
        message = user_message(err)
        if message is None or debug_enabled():
            raise
        print(f'error: {message}', file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


__all__ = ['UserError', 'run_cli', 'user_message', 'debug_enabled']
