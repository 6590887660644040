"""MMEngine training checkpoints in plain types, loadable with ``weights_only=True``.

Upstream: open-mmlab/mmengine#1655. mmengine <= 0.10.7 saves the message hub's
``HistoryBuffer`` objects (holding numpy arrays) and numpy scalars (metrics, best scores)
in every checkpoint. torch >= 2.6 loads with ``weights_only=True`` by default and refuses
them, so resume, ``load_from`` and the toolboxes' inferencers fail on the toolbox's own
checkpoints; allow-listing the types is not enough (numpy's reconstruction needs
``getattr``, which defeats the check), and the usual advice, ``weights_only=False``, runs
whatever code a file carries.

Fix: :func:`to_plain` rewrites those objects as tagged dicts of tensors and Python
numbers before the checkpoint is written, so torch's safe loader reads it anywhere;
:func:`from_plain` restores them after loading (emo_mm's loader does this; without it
MMEngine skips the buffers with a warning, and everything else resumes). Applies to
mmengine 0.10.x with torch >= 2.6.
"""
from collections import OrderedDict
from typing import Any, Set

import numpy as np
import torch

#: Tags of the rewritten objects (dict keys no MMEngine checkpoint uses).
HISTORY_BUFFER = '__emo_mm_history_buffer__'
NDARRAY = '__emo_mm_ndarray__'
NUMPY_SCALAR = '__emo_mm_numpy_scalar__'

_PLAIN_LEAVES = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, torch.Size,
                 torch.dtype, torch.device)


def to_plain(obj: Any, unknown: Set[str] = None) -> Any:
    """A copy of ``obj`` with HistoryBuffers and numpy values as tagged plain dicts.

    Containers (dict, OrderedDict, list, tuple) keep their type (other mappings, such as
    a ``ConfigDict``, become dicts); unchanged ones are not copied. ``unknown`` collects the
    type names of other objects, which are kept as they are (the file then needs full
    unpickling; the caller warns).
    """
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, np.generic):  # before the leaves: np.float64 subclasses float
        return {NUMPY_SCALAR: obj.item(), 'dtype': obj.dtype.str}
    if isinstance(obj, _PLAIN_LEAVES):
        return obj
    if isinstance(obj, HistoryBuffer):
        logs, counts = obj.data
        return {HISTORY_BUFFER: True, 'logs': to_plain(logs), 'counts': to_plain(counts),
                'max_length': obj.max_length}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in 'biufc':
            return {NDARRAY: torch.from_numpy(np.ascontiguousarray(obj)).clone(),
                    'dtype': obj.dtype.str}
        return {NDARRAY: obj.tolist(), 'dtype': obj.dtype.str}
    if isinstance(obj, dict):
        # Unchanged containers are returned as they are (a state dict keeps its _metadata).
        items = {key: to_plain(value, unknown) for key, value in obj.items()}
        if type(obj) in (dict, OrderedDict) and all(items[k] is obj[k] for k in obj):
            return obj
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if type(obj) in (list, tuple):
        items = [to_plain(value, unknown) for value in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(items)
    if unknown is not None:
        unknown.add(f'{type(obj).__module__}.{type(obj).__qualname__}')
    return obj


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` (objects without tags are returned unchanged)."""
    if isinstance(obj, dict):
        if obj.get(HISTORY_BUFFER) is True:
            from mmengine.logging import HistoryBuffer
            buffer = HistoryBuffer(max_length=obj['max_length'])
            buffer._log_history = from_plain(obj['logs'])
            buffer._count_history = from_plain(obj['counts'])
            return buffer
        if NDARRAY in obj:
            value = obj[NDARRAY]
            array = value.numpy() if isinstance(value, torch.Tensor) else np.array(value)
            return array.astype(np.dtype(obj['dtype']), copy=False)
        if NUMPY_SCALAR in obj:
            return np.dtype(obj['dtype']).type(obj[NUMPY_SCALAR])
        for key, value in obj.items():
            restored = from_plain(value)
            if restored is not value:
                obj[key] = restored
        return obj
    if isinstance(obj, list):
        for i, value in enumerate(obj):
            obj[i] = from_plain(value)
        return obj
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(from_plain(v) for v in obj)
    return obj


__all__ = ['to_plain', 'from_plain']
