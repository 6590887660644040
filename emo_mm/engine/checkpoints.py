"""Checkpoints that are never lost, never half-written and never run code when loaded.

* :class:`CheckpointSafetyHook` (``tools/train.py`` / ``tools/test.py`` add it) writes each
  checkpoint under a temporary name in the same folder, fsyncs it and renames it into
  place, so a killed process never leaves a partial file under a final name; and it saves
  MMEngine's message hub in plain types, so emo_mm's checkpoints load with torch's
  ``weights_only=True`` everywhere (resume, ``load_from``, the toolboxes' inferencers).
* :func:`safe_load` reads a checkpoint without running code from it; a file that needs
  full unpickling is refused unless trusted (``--trust-checkpoint``,
  :func:`~emo_mm.models.weights.trusted_checkpoints`).
* :func:`find_resume_checkpoint` picks the newest readable checkpoint of a work dir and
  says so when the newest one is damaged.
"""
import errno
import functools
import glob
import logging
import os
import os.path as osp
import re
import shutil
from typing import List, Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..compat.mmengine_checkpoint import from_plain, to_plain
from ..models.weights import (TRUST_HINT, CheckpointError, NonFiniteCheckpointError,
                              UnsafeCheckpointError, adapt_layout, extract_state_dict,
                              nonfinite_tensors, read_checkpoint, trusted_checkpoints)
from ..registry import HOOKS
from .errors import UserError

#: Suffix of a checkpoint being written (not a ``.pth``: never taken for a checkpoint).
PARTIAL_SUFFIX = '.partial'


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (a full disk, a quota)."""


def safe_load(path: str, map_location='cpu', trust: bool = False,
              trust_hint: str = TRUST_HINT):
    """Loads a checkpoint without running code from it, unless ``trust``.

    emo_mm's checkpoints (and any plain state dict) load as they are. A file that refers
    to other Python objects raises :class:`~emo_mm.models.weights.UnsafeCheckpointError`
    naming them and ``trust_hint``; a truncated or corrupt one raises
    :class:`~emo_mm.models.weights.CheckpointError`.
    """
    return read_checkpoint(path, weights_only=not trust, map_location=map_location,
                           trust_hint=trust_hint)


def install_checkpoint_loader() -> None:
    """Makes MMEngine load local files through :func:`safe_load` (restores plain values,
    honours :func:`~emo_mm.models.weights.trusted_checkpoints`, clear refusals): the
    fix :mod:`emo_mm.compat.mmengine_local_loader`, applied on its own."""
    from ..compat import mmengine_local_loader
    mmengine_local_loader.apply()


def _interrupted(err: BaseException) -> bool:
    """True if ``err`` is, or was raised while handling, a KeyboardInterrupt.

    MMEngine's ``Config.pretty_text`` turns any exception inside yapf, Ctrl-C included,
    into ``SyntaxError: Failed to format the config file`` with a dump of the config.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def atomic_save(save_checkpoint):
    """Wraps ``Runner.save_checkpoint`` (bound) to write to a temporary name, then rename."""

    @functools.wraps(save_checkpoint)
    def save(out_dir, filename, *args, **kwargs):
        if ('://' in str(out_dir) or kwargs.get('backend_args')
                or kwargs.get('file_client_args')):
            return save_checkpoint(out_dir, filename, *args, **kwargs)  # remote storage
        final = osp.join(out_dir, filename)
        partial_name = f'.{osp.basename(filename)}{PARTIAL_SUFFIX}'
        partial = osp.join(out_dir, osp.dirname(filename), partial_name)
        try:
            save_checkpoint(out_dir, osp.join(osp.dirname(filename), partial_name),
                            *args, **kwargs)
            if get_rank() != 0 or not osp.exists(partial):
                return None
            with open(partial, 'rb') as f:
                os.fsync(f.fileno())
            os.replace(partial, final)
            _fsync_dir(osp.dirname(final))
        except BaseException as err:
            if osp.exists(partial):
                os.remove(partial)
            if _interrupted(err):
                raise KeyboardInterrupt(f'while saving {final}') from None
            if _disk_full(err):
                raise _save_failed(final, err, getattr(save_checkpoint, '__self__', None)) \
                    from None
            raise

    save._emo_mm_atomic = True
    return save


def _disk_full(err: BaseException) -> bool:
    """True if ``err`` is, or was raised while handling, a full disk or an exceeded quota
    (torch's writer reports it as a RuntimeError from its zip writer)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if 'No space left on device' in str(err) or 'Disk quota exceeded' in str(err):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _tensor_bytes(obj) -> int:
    if hasattr(obj, 'element_size') and hasattr(obj, 'numel'):
        return obj.element_size() * obj.numel()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _megabytes(size: float) -> str:
    return f'{size / 2**20:.0f} MB' if size >= 2**20 else f'{size / 2**10:.0f} KB'


def _save_failed(final: str, err: BaseException, runner) -> 'CheckpointSaveError':
    """The one-line message for a save that ran out of space: what was kept and how much
    space the checkpoint needs."""
    folder = osp.dirname(final) or '.'
    kept = [p for p in list_checkpoints(folder) if osp.abspath(p) != osp.abspath(final)]
    if kept:
        need = osp.getsize(kept[0])  # the same model and state: about the same size
    else:
        need = 0
        if runner is not None:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            need = _tensor_bytes(model.state_dict())
            wrapper = getattr(runner, 'optim_wrapper', None)
            if wrapper is not None and hasattr(wrapper, 'state_dict'):
                need += _tensor_bytes(wrapper.state_dict())
    free = shutil.disk_usage(folder).free
    kind = 'quota exceeded' if 'quota' in str(err).lower() else 'no space left on device'
    names = ', '.join(osp.basename(p) for p in kept[:3]) + (', ...' if len(kept) > 3 else '')
    have = (f'the checkpoints there are intact ({names}; newest {osp.basename(kept[0])})'
            if kept else 'no earlier checkpoint was saved')
    return CheckpointSaveError(
        f'Could not save {final}: {kind} (it needs about {_megabytes(need)}, {_megabytes(free)} '
        f'free). Nothing was written under that name and {have}. Free some space and continue '
        'with --resume (same --work-dir).')


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@HOOKS.register_module()
class CheckpointSafetyHook(Hook):
    """Atomic checkpoint files in plain types; restores them on load.

    Runs last before a save (after other hooks added their state) and rewrites the
    message hub's ``HistoryBuffer`` and numpy values as tagged plain values
    (:mod:`emo_mm.compat.mmengine_checkpoint`); after a load it restores them. It makes
    this runner's ``save_checkpoint`` write atomically (the instance's method only:
    nothing global is patched).
    """

    priority = 'LOWEST'

    def before_run(self, runner) -> None:
        if not getattr(runner.save_checkpoint, '_emo_mm_atomic', False):
            runner.save_checkpoint = atomic_save(runner.save_checkpoint)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = nonfinite_tensors(checkpoint.get('state_dict') or {})
        if bad:
            # NonFiniteGuardHook stops training before this; weights that turned non-finite
            # another way (an EMA hook, a custom loop) are never written either.
            from .nonfinite import NonFiniteError
            raise NonFiniteError(
                f'Not saving a checkpoint at iteration {runner.iter}: {len(bad)} weight tensors '
                f'are not finite ({", ".join(bad[:3])}). The checkpoints saved before are kept.')
        unknown = set()
        for key in list(checkpoint):
            checkpoint[key] = to_plain(checkpoint[key], unknown)
        if unknown:
            print_log(f'This checkpoint holds Python objects ({", ".join(sorted(unknown))}); '
                      'loading it will need --trust-checkpoint.', logger='current',
                      level=logging.WARNING)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in list(checkpoint):
            checkpoint[key] = from_plain(checkpoint[key])


@HOOKS.register_module()
class CheckpointLayoutHook(Hook):
    """Converts a loaded classifier checkpoint in the authors' key layout (their released
    files, what ``mim download`` fetches) for an mmpretrain classifier, with one line
    saying so, and refuses it for other models (see :func:`adapt_loaded_checkpoint`).

    Runs first after a load: other hooks (mmpretrain's ``EMAHook``) read the checkpoint's
    ``state_dict``, which the authors' files do not have.
    """

    priority = 'HIGHEST'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # The Runner loads (and resumes from) its load_from; hooks are not told the file.
        source = getattr(runner, '_load_from', None)
        adapt_loaded_checkpoint(runner.model, checkpoint,
                                source if isinstance(source, str) else 'The checkpoint')


def adapt_loaded_checkpoint(model, checkpoint: dict, source: str) -> None:
    """Converts, in place, a loaded checkpoint in the authors' classifier layout for
    ``model`` (an mmpretrain classifier), with one line saying so; refuses it for other
    models (see :func:`emo_mm.models.weights.adapt_layout`)."""
    model = model.module if hasattr(model, 'module') else model
    try:
        state = extract_state_dict(checkpoint, source)
    except CheckpointError:
        return  # not a state dict at all: MMEngine's loader reports what it finds
    state, note = adapt_layout(state, model.state_dict(), source)
    if note:
        checkpoint.clear()
        checkpoint['state_dict'] = state
        print_log(note, logger='current', level=logging.INFO)


def _number(path: str) -> int:
    match = re.search(r'(\d+)\.pth$', path)
    return int(match.group(1)) if match else -1


def list_checkpoints(work_dir: str) -> List[str]:
    """The work dir's resumable checkpoints, newest first.

    The one named in ``last_checkpoint`` (MMEngine's record of the latest save) first,
    then ``epoch_N.pth`` / ``iter_N.pth`` by decreasing N.
    """
    found = []
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            named = f.read().strip()
        if named:
            # The record holds the path at save time; the work dir may have moved since.
            named = osp.join(work_dir, osp.basename(named))
            if osp.isfile(named):
                found.append(named)
    numbered = glob.glob(osp.join(work_dir, 'epoch_*.pth')) + glob.glob(
        osp.join(work_dir, 'iter_*.pth'))
    for path in sorted(numbered, key=lambda p: (_number(p), osp.getmtime(p)), reverse=True):
        if not any(osp.samefile(path, other) for other in found):
            found.append(path)
    return found


def find_resume_checkpoint(work_dir: str, trust: bool = False) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that loads; None if it holds none.

    A newer checkpoint that is truncated or corrupt is reported by name and skipped (the
    previous good one is used, with a warning); a file refused as unsafe is an error
    (silently resuming from an older one would hide it).
    """
    candidates = list_checkpoints(work_dir)
    damaged = []
    for path in candidates:
        try:
            safe_load(path, trust=trust)
        except UnsafeCheckpointError:
            raise
        except NonFiniteCheckpointError as err:
            older = _newest_finite(candidates[candidates.index(path) + 1:], trust)
            offer = (f' The newest finite one is {older}: resume from it with --resume {older}.'
                     if older else ' No older checkpoint there is finite.')
            raise NonFiniteCheckpointError(f'--resume: {err}{offer}') from None
        except CheckpointError as err:
            damaged.append((path, str(err)))
            continue
        for bad, reason in damaged:
            print_log(f'{reason} Resuming from the previous good checkpoint {path} instead.',
                      logger='current', level=logging.WARNING)
        return path
    if damaged:
        raise CheckpointError(
            f'No readable checkpoint in {work_dir}: {"; ".join(r for _, r in damaged)} '
            'Start afresh with --overwrite, or restore the files.')
    return None


def _newest_finite(paths: List[str], trust: bool) -> Optional[str]:
    for path in paths:
        try:
            safe_load(path, trust=trust)
        except CheckpointError:
            continue
        return path
    return None


def remove_partial_files(work_dir: str) -> None:
    """Deletes the leftovers of saves that were interrupted (never a final name)."""
    for path in glob.glob(osp.join(work_dir, f'.*{PARTIAL_SUFFIX}')):
        os.remove(path)


__all__ = ['CheckpointSafetyHook', 'safe_load', 'install_checkpoint_loader', 'atomic_save',
           'list_checkpoints', 'find_resume_checkpoint', 'remove_partial_files',
           'trusted_checkpoints', 'adapt_loaded_checkpoint', 'CheckpointSaveError',
           'CheckpointLayoutHook']
