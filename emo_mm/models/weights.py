"""Reading the authors' and emo_mm's checkpoints, loudly.

The authors' loaders accept only flat state dicts and drop whatever does not fit without a
word; a nested file would leave a backbone untrained. Here every container the authors'
trainers and MMEngine write is unwrapped, shapes are checked before anything is copied,
and every key that is not loaded is reported.
"""
import contextlib
import logging
import os
import os.path as osp
import re
import zipfile
from collections import OrderedDict
from contextvars import ContextVar
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

#: Container keys, in order of preference: MMEngine's ``state_dict``, then the authors'
#: EMA weights ``net_E`` (what their README numbers use), then ``net``, then ``model``.
CONTAINER_KEYS = ('state_dict', 'net_E', 'net', 'model')


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that needs full unpickling (which can run code) and is not trusted."""


class NonFiniteCheckpointError(CheckpointError):
    """A checkpoint whose tensors hold NaN or infinite values."""


class LoadReport(NamedTuple):
    loaded: Tuple[str, ...]
    dropped: Tuple[str, ...]
    missing: Tuple[str, ...]
    unexpected: Tuple[str, ...]


#: How a user trusts a file, named in the refusal; callers with their own switch pass theirs.
TRUST_HINT = ("If you trust the file, pass --trust-checkpoint (tools/train.py, tools/test.py) "
              "or weights_only=False in the Pretrained init_cfg.")

#: How a user loads a checkpoint with non-finite tensors anyway, named in the refusal.
NONFINITE_HINT = ('To load it anyway (to inspect it), pass --allow-nonfinite (tools/train.py, '
                  'tools/test.py, tools/infer.py) or set EMO_MM_ALLOW_NONFINITE=1.')

#: Real paths of the files trusted in the current context (see :func:`trusted_checkpoints`).
_trusted: ContextVar = ContextVar('emo_mm_trusted_checkpoints', default=frozenset())
#: Whether checkpoints with non-finite tensors load in the current context.
_allow_nonfinite: ContextVar = ContextVar('emo_mm_allow_nonfinite', default=False)


@contextlib.contextmanager
def allow_nonfinite_checkpoints(allow: bool = True):
    """Within this context, checkpoints with NaN or infinite tensors load (they are
    refused otherwise). Context-local, like :func:`trusted_checkpoints`."""
    token = _allow_nonfinite.set(_allow_nonfinite.get() or bool(allow))
    try:
        yield
    finally:
        _allow_nonfinite.reset(token)


def nonfinite_allowed() -> bool:
    return _allow_nonfinite.get() or os.environ.get('EMO_MM_ALLOW_NONFINITE', '') not in ('', '0')


def nonfinite_tensors(obj, prefix: str = '') -> List[str]:
    """Names of the floating-point tensors in ``obj`` (a tensor, or mappings and sequences
    of them, nested) that hold NaN or infinite values; nested names are joined by dots."""
    found = []
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and obj.numel() and \
                not bool(torch.isfinite(obj).all()):
            found.append(prefix or 'tensor')
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            found += nonfinite_tensors(value, f'{prefix}.{key}' if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += nonfinite_tensors(value, f'{prefix}.{i}' if prefix else str(i))
    return found


def check_finite(checkpoint, path: str) -> None:
    """Raises :class:`NonFiniteCheckpointError` naming the tensors of ``checkpoint`` that
    hold NaN or infinite values, unless allowed (:func:`allow_nonfinite_checkpoints`)."""
    if nonfinite_allowed():
        return
    bad = nonfinite_tensors(checkpoint)
    if bad:
        shown = ', '.join(bad[:5]) + (f', ... ({len(bad)} in all)' if len(bad) > 5 else '')
        raise NonFiniteCheckpointError(
            f'{path} holds NaN or infinite values in {len(bad)} tensors ({shown}): it was saved '
            f'from a diverged run and would evaluate or train as garbage. {NONFINITE_HINT}')


@contextlib.contextmanager
def trusted_checkpoints(*paths: str):
    """Within this context, the named files may be unpickled fully (they can run code).

    Context-local (a :class:`~contextvars.ContextVar`): other threads are not affected.
    """
    token = _trusted.set(_trusted.get() | {osp.realpath(osp.expanduser(p)) for p in paths})
    try:
        yield
    finally:
        _trusted.reset(token)


def is_trusted(path: str) -> bool:
    return osp.realpath(osp.expanduser(path)) in _trusted.get()


#: How torch's weights-only unpickler names the global it refused.
_REFUSED_GLOBAL = re.compile(r'GLOBAL ([\w.]+)')


def _unsafe_globals(path: str, err: BaseException) -> Optional[List[str]]:
    """Python objects a checkpoint refers to beyond torch's safe set; None if unreadable.

    Zip checkpoints: all of them, read from the pickle's opcodes without executing
    anything. Legacy (non-zip) files, which torch cannot scan: the one its weights-only
    unpickler refused (named in its error).
    """
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a legacy file, truncated, garbage
        pass
    if zipfile.is_zipfile(path):
        return None
    match = _REFUSED_GLOBAL.search(str(err))
    return [match.group(1)] if match else None


def read_checkpoint(path: str, weights_only: bool = True, map_location='cpu',
                    trust_hint: str = TRUST_HINT):
    """Loads a checkpoint file (or URL) with clear errors, running no code from it.

    Files are read with torch's safe loader (tensors, numbers, strings, containers); the
    tagged plain values emo_mm writes for MMEngine's message hub are restored
    (:mod:`emo_mm.compat.mmengine_checkpoint`). A file that needs more is refused with
    :class:`UnsafeCheckpointError` naming the objects it refers to, unless
    ``weights_only=False`` or the file is trusted in the current context
    (:func:`trusted_checkpoints`).

    Args:
        path (str): Local path or http(s) URL.
        weights_only (bool): False unpickles untrusted files fully; only for files you trust.
        map_location: As for :func:`torch.load`. Defaults to ``'cpu'``.
        trust_hint (str): How the user trusts a file, appended to the refusal.
    """
    from ..compat.mmengine_checkpoint import from_plain
    if path.startswith(('http://', 'https://')):
        from mmengine.runner.checkpoint import CheckpointLoader
        checkpoint = from_plain(CheckpointLoader.load_checkpoint(path, map_location=map_location))
        check_finite(checkpoint, path)
        return checkpoint
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist.')
    trusted = not weights_only or is_trusted(path)
    try:
        checkpoint = from_plain(torch.load(path, map_location=map_location, weights_only=True))
    except Exception as err:  # garbage makes the unpickler fail in arbitrary ways
        unsafe = _unsafe_globals(path, err) if 'Weights only load failed' in str(err) else None
        if not unsafe:
            raise CheckpointError(
                f'{path} is not a readable PyTorch checkpoint: corrupt or truncated '
                f'({_first_line(err)}).') from err
        if not trusted:
            legacy = '' if zipfile.is_zipfile(path) else \
                ' (a legacy, non-zip PyTorch file: a pickle stream)'
            raise UnsafeCheckpointError(
                f'{path}{legacy} refers to Python objects besides tensors '
                f'({", ".join(unsafe[:4])}{", ..." if len(unsafe) > 4 else ""}); unpickling '
                f'them could run code from the file, so it was not loaded. {trust_hint}') \
                from None
        checkpoint = from_plain(torch.load(path, map_location=map_location, weights_only=False))
    check_finite(checkpoint, path)
    return checkpoint


def _first_line(err: BaseException) -> str:
    """The informative line of a loading error (torch's weights-only message is long)."""
    text = str(err)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = 'unpickling: ' + text[text.index(marker) + len(marker):].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    return line.split('. ')[0].rstrip('.')[:200]


def extract_state_dict(checkpoint, source: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """Unwraps the state dict from any container the authors or MMEngine write.

    Accepts a flat state dict, ``{'state_dict': ...}``, the authors' ``{'net': ...}`` /
    ``{'net_E': ...}`` (``net_E``, the EMA weights, wins when both are there) and
    ``{'model': ...}``; strips a leading ``module.`` (DataParallel) from keys.
    """
    obj = checkpoint
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        key = next((k for k in CONTAINER_KEYS if k in obj), None)
        if key is None:
            raise CheckpointError(
                f'{source} holds no state dict: top-level keys {sorted(obj)[:10]}; expected '
                f'tensors or one of {list(CONTAINER_KEYS)}.')
        if key == 'net_E' and 'net' in obj:
            print_log(f"{source}: using the EMA weights 'net_E' (it also has 'net').",
                      logger='current', level=logging.INFO)
        obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f'{source} holds no state dict (found {type(obj).__name__}).')
    return OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v) for k, v in obj.items())


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_pretrained(model: nn.Module,
                    path: str,
                    prefix: Optional[str] = None,
                    drop_prefixes: Sequence[str] = ('norm.', 'head.'),
                    weights_only: bool = True,
                    convert: Optional[Callable] = None) -> LoadReport:
    """Loads a checkpoint into ``model`` and reports everything that was not loaded.

    Args:
        model (nn.Module): Target (an EMO backbone or any module).
        path (str): Checkpoint path or URL.
        prefix (str, optional): Load only keys under this prefix (e.g. ``'backbone.'`` of
            a detector checkpoint), stripped. Without it, a checkpoint with no key of the
            model but with them under one prefix (a detector's ``backbone.``) is unwrapped
            automatically, with an info line.
        drop_prefixes (Sequence[str]): Keys that the model lacks on purpose (a backbone
            loading a classifier: final ``norm.`` and ``head.``). Dropped with an info line.
        weights_only (bool): See :func:`read_checkpoint`.
        convert (callable, optional): ``convert(state, model_state) -> state``, applied
            before any check (e.g. V-EMO's 2-D -> 3-D inflation).

    Raises:
        CheckpointError: unreadable file, no state dict, no key in common with the model,
            or any tensor whose shape differs from the model's.
    """
    state = extract_state_dict(read_checkpoint(path, weights_only), path)
    own = model.state_dict()
    if prefix:
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
        if not state:
            raise CheckpointError(f'{path} has no keys under prefix {prefix!r}.')
    elif not own.keys() & state.keys():
        found = _matching_prefix(state, own)
        if found:
            # A whole model's checkpoint (a detector's backbone.*, ...): take that part.
            others = sum(not k.startswith(found) for k in state)
            state = OrderedDict((k[len(found):], v) for k, v in state.items()
                                if k.startswith(found))
            print_log(f'{path}: loading its {found}* tensors ({others} others ignored; pass '
                      f"prefix='{found}' in the init_cfg to say so).", logger='current',
                      level=logging.INFO)

    if convert is not None:
        state = OrderedDict(convert(state, own))
    dropped = tuple(k for k in state if k not in own and k.startswith(tuple(drop_prefixes)))
    for key in dropped:
        del state[key]
    if not own.keys() & state.keys():
        raise CheckpointError(
            f'None of the {len(state)} tensors in {path} belong to {type(model).__name__}: it '
            f'has keys like {list(state)[:3]}, the model expects {list(own)[:3]}. Is it a '
            f'checkpoint of this model family?')
    problems = shape_problems(state, own)
    if problems:
        raise CheckpointError(f'{path} does not fit {type(model).__name__} (was it saved for '
                              f'another variant or arch?): {problems[0]}')

    result = model.load_state_dict(state, strict=False)
    report = LoadReport(
        loaded=tuple(k for k in state if k in own), dropped=dropped,
        missing=tuple(result.missing_keys), unexpected=tuple(result.unexpected_keys))
    print_log(f'Loaded {len(report.loaded)} tensors into {type(model).__name__} from {path}.',
              logger='current', level=logging.INFO)
    if dropped:
        print_log(f'Dropped {len(dropped)} classifier tensors the backbone does not have: '
                  f'{_summary(dropped)}.', logger='current', level=logging.INFO)
    for kind, keys in (('missing from the checkpoint (left as initialised)', report.missing),
                       ('in the checkpoint but not in the model (ignored)', report.unexpected)):
        if keys:
            print_log(f'{len(keys)} keys {kind}: {_summary(keys)}', logger='current',
                      level=logging.WARNING)
    return report


def _matching_prefix(state: Mapping[str, torch.Tensor], own: Mapping) -> Optional[str]:
    """The key prefix (``'backbone.'``, ...) under which ``state`` holds ``own``'s keys."""
    prefixes = {k.split('.', 1)[0] + '.' for k in state if '.' in k}
    matches = [p for p in prefixes if any(k[len(p):] in own for k in state if k.startswith(p))]
    return max(matches, key=lambda p: sum(k.startswith(p) for k in state)) if matches else None


def shape_problems(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                   require_all: bool = False) -> List[str]:
    """What keeps ``state`` from loading into a model with state dict ``own``.

    Args:
        state: The checkpoint's tensors (keys already mapped to the model's).
        own: The model's state dict.
        require_all (bool): Also report keys of ``own`` missing from ``state`` (evaluating
            a trained checkpoint: a missing tensor would stay random).

    Returns:
        list[str]: One entry per kind of problem (empty: it fits).
    """
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state] if require_all else []
    problems = []
    if mismatched:
        lines = '\n'.join(f'  {k}: checkpoint {a} vs model {b}' for k, a, b in mismatched[:10])
        more = f'\n  ... and {len(mismatched) - 10} more' if len(mismatched) > 10 else ''
        problems.append(f'{len(mismatched)} tensors of other shapes:\n{lines}{more}')
    if missing:
        problems.append(f'{len(missing)} tensors missing, e.g. {missing[:5]}')
    return problems


def pretrained_without_checkpoint(where: str) -> str:
    """The error for ``init_cfg=dict(type='Pretrained')`` without a checkpoint at ``where``
    (a config path or a class name)."""
    return (f"{where}.init_cfg=dict(type='Pretrained') has no checkpoint: add "
            'checkpoint=PATH_OR_URL, or remove the init_cfg.')


def load_pretrained_from_init_cfg(model: nn.Module, init_cfg: Mapping,
                                  drop_prefixes: Sequence[str] = ('norm.', 'head.'),
                                  convert: Optional[Callable] = None) -> LoadReport:
    """:func:`load_pretrained` driven by ``init_cfg=dict(type='Pretrained', ...)``.

    Keys: ``checkpoint`` (required), ``prefix``, ``weights_only`` (False: trust a full
    training checkpoint).
    """
    if not init_cfg.get('checkpoint'):
        raise CheckpointError(pretrained_without_checkpoint(type(model).__name__))
    return load_pretrained(model, init_cfg['checkpoint'], prefix=init_cfg.get('prefix'),
                           drop_prefixes=drop_prefixes,
                           weights_only=init_cfg.get('weights_only', True), convert=convert)


def _summary(keys: Sequence[str], limit: int = 8) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... (+{len(keys) - limit})' if len(keys) > limit else '')


# ---------------------------------------------------------------------------------------
# Classifier layout: authors' flat keys  <->  mmpretrain ImageClassifier with an EMO
# backbone (final_norm=True), GlobalAveragePooling neck and LinearClsHead.
# ---------------------------------------------------------------------------------------
def authors_to_mmpretrain(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``stage*``/``norm.*`` -> ``backbone.*``; ``head.*`` -> ``head.fc.*``."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith(('backbone.', 'head.fc.')):
            raise CheckpointError(f'{key!r} is already in mmpretrain layout.')
        out[('head.fc.' + key[5:]) if key.startswith('head.') else 'backbone.' + key] = value
    return out


def mmpretrain_to_authors(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`authors_to_mmpretrain`."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith('backbone.'):
            out[key[len('backbone.'):]] = value
        elif key.startswith('head.fc.'):
            out['head.' + key[len('head.fc.'):]] = value
        else:
            raise CheckpointError(f'{key!r} has no place in the authors\' classifier layout '
                                  f"(expected 'backbone.*' or 'head.fc.*').")
    return out


def is_authors_classifier(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is an ImageNet classifier in the authors' key layout
    (``stage*``, ``norm.*``, ``head.weight``), as their released files and ``mim download``
    give it."""
    keys = list(state)
    return ('head.weight' in state and any(k.startswith('stage') for k in keys)
            and not any(k.startswith(('backbone.', 'head.fc.')) for k in keys))


def convert_command(path: str) -> str:
    """The command that converts an authors'-layout file once, for messages."""
    if not osp.isfile(path):
        return 'python tools/model_converters/convert_checkpoint.py IN OUT'
    stem = osp.splitext(osp.basename(path))[0]
    return f'python tools/model_converters/convert_checkpoint.py {path} {stem}_mmpretrain.pth'


def adapt_layout(state: Mapping[str, torch.Tensor], model_state: Mapping,
                 source: str) -> Tuple[Mapping[str, torch.Tensor], Optional[str]]:
    """Converts an authors'-layout classifier state dict for an mmpretrain classifier.

    Returns ``(state, note)``: the converted state and a line saying so when ``state`` is
    in the authors' layout and ``model_state`` is an mmpretrain ``ImageClassifier``'s
    (``backbone.*``, ``head.fc.*``); ``(state, None)`` unchanged otherwise.

    Raises:
        CheckpointError: an authors' classifier given to a whole detector / segmentor /
            recogniser (it belongs in the backbone's ``Pretrained`` init_cfg).
    """
    if not is_authors_classifier(state):
        return state, None
    if 'head.fc.weight' in model_state and any(k.startswith('backbone.') for k in model_state):
        note = (f'{source} is in the authors\' key layout (stage*, norm.*, head.*): converted to '
                f'the mmpretrain classifier\'s on the fly ({convert_command(source)} does it '
                'once).')
        return authors_to_mmpretrain(state), note
    if any(k.startswith('backbone.') for k in model_state):
        raise CheckpointError(
            f'{source} is an ImageNet classifier in the authors\' key layout (stage*, norm.*, '
            "head.*), not a checkpoint of this model. Start the backbone from it instead: "
            f"model.backbone.init_cfg=dict(type='Pretrained', checkpoint='{source}').")
    return state, None
