"""Errors a person can act on: one or two lines, exit code 2, no traceback.

The command-line tools run their ``main`` through :func:`run_cli`. User errors (bad data,
checkpoints, configs, command lines) print ``error: <what is wrong and how to fix it>``
and exit with 2; ``--debug`` or ``EMO_MM_DEBUG=1`` shows the traceback instead. Anything
else is a bug and keeps its traceback (exit 1).
"""
import difflib
import os
import re
import sys
from typing import Callable, List, Optional

from ..apis import ConfigSyntaxError
from ..checks.data import DataError
from ..deploy.bundle import BundleError
from ..models.weights import CheckpointError

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
#: Errors that constructors raise for bad arguments (AssertionError: the toolboxes validate
#: their configs with asserts).
_ARGUMENT_ERRORS = (ValueError, TypeError, KeyError, AssertionError, IndexError)


def _built_classes(err: BaseException) -> List[type]:
    """The classes MMEngine's registry was building when ``err`` was raised, outermost
    first (from the ``build_from_cfg`` frames of its traceback)."""
    classes = []
    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'build_from_cfg' and 'mmengine' in frame.f_code.co_filename:
            cls = frame.f_locals.get('obj_cls')
            if cls is not None:
                classes.append(cls)
        tb = tb.tb_next
    return classes


def build_message(err: BaseException) -> Optional[str]:
    """The message for an error raised by a constructor while MMEngine's registry built
    an object from the config (the model, a data set, a hook); None for anything else.

    Names the classes being built (outermost first); an unknown argument is named with
    the closest argument the class has.
    """
    if not isinstance(err, _ARGUMENT_ERRORS):
        return None
    classes = _built_classes(err)
    if not classes:
        return None
    names = [getattr(c, '__name__', str(c)) for c in classes]
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = ' '.join(text.split()) or type(err).__name__
    unexpected = re.search(r"got an unexpected keyword argument '(\w+)'", text)
    if unexpected:
        key = unexpected.group(1)
        known = _arguments(classes[-1])
        close = difflib.get_close_matches(key, known, n=1)
        text = (f'{names[-1]} has no argument {key!r}'
                + (f' (did you mean {close[0]!r}?)' if close else
                   (f' (it takes {", ".join(known)})' if known else ''))
                + '; check the config and --cfg-options')
    return f'Building {" > ".join(names)} from the config failed: {text}'


def _arguments(cls) -> List[str]:
    import inspect
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def user_message(err: BaseException) -> Optional[str]:
    """The one- or two-line message for a user error, or None for anything else."""
    text = str(err)
    if _WORKER_ORIGIN.search(text):
        # A DataLoader worker re-raises with its traceback in the message: keep the last line.
        lines = [line for line in text.splitlines() if line.strip()]
        text = re.sub(r'^[\w.]+: ', '', lines[-1]) if lines else text
    if isinstance(err, (UserError, DataError, CheckpointError, ConfigSyntaxError, BundleError)):
        return text
    if isinstance(err, FileNotFoundError):
        return text if err.filename is None else f'{err.filename}: {err.strerror or text}'
    if isinstance(err, KeyError):
        match = _REGISTRY_MISS.search(text)
        if match:
            return registry_message(*match.groups())
    return build_message(err)


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
