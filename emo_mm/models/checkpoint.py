"""Reading the authors' and emo_mm's checkpoints, loudly.

The authors' loaders accept only flat state dicts and drop whatever does not fit without a
word; a nested file would leave a backbone untrained. Here every container the authors'
trainers and MMEngine write is unwrapped, shapes are checked before anything is copied,
and every key that is not loaded is reported.
"""
import logging
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

#: Container keys, in order of preference: MMEngine's ``state_dict``, then the authors'
#: EMA weights ``net_E`` (what their README numbers use), then ``net``, then ``model``.
CONTAINER_KEYS = ('state_dict', 'net_E', 'net', 'model')


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class LoadReport(NamedTuple):
    loaded: Tuple[str, ...]
    dropped: Tuple[str, ...]
    missing: Tuple[str, ...]
    unexpected: Tuple[str, ...]


def read_checkpoint(path: str, weights_only: bool = True):
    """Loads a checkpoint file (or URL) on the CPU with clear errors for bad files.

    Args:
        path (str): Local path or http(s) URL.
        weights_only (bool): Refuse arbitrary pickled objects (torch's safe loader).
            Released weights never need more; pass False only for trusted files.
    """
    if path.startswith(('http://', 'https://')):
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(path, map_location='cpu')
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist. Check the path in '
                                f"init_cfg=dict(type='Pretrained', checkpoint=...).")
    try:
        return torch.load(path, map_location='cpu', weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and 'Weights only load failed' in str(err):
            raise CheckpointError(
                f'{path} holds Python objects besides tensors (a full training '
                f'checkpoint?), which are not loaded for safety. If you trust the file, add '
                f"weights_only=False to the Pretrained init_cfg.\n{err}") from err
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt or '
                              f'truncated?): {err}. Download or save it again.') from err
    except Exception as err:  # garbage makes the unpickler fail in arbitrary ways
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt or '
                              f'truncated?): {err}. Download or save it again.') from err


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
            a detector checkpoint), stripped. Without it, a checkpoint whose keys all sit
            under ``backbone.`` is unwrapped automatically.
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
    elif not own.keys() & state.keys() and all(k.startswith('backbone.') for k in state):
        state = OrderedDict((k[len('backbone.'):], v) for k, v in state.items())

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
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
    if mismatched:
        lines = '\n'.join(f'  {k}: checkpoint {a} vs model {b}' for k, a, b in mismatched[:10])
        more = f'\n  ... and {len(mismatched) - 10} more' if len(mismatched) > 10 else ''
        raise CheckpointError(
            f'{len(mismatched)} tensors in {path} do not fit {type(model).__name__} '
            f'(was it saved for another variant or arch?):\n{lines}{more}')

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
