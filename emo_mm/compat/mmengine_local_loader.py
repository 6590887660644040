"""MMEngine's loader of local checkpoint files, made safe and able to read emo_mm's files.

Upstream: mmengine 0.10.7 ``load_from_local`` calls ``torch.load`` without
``weights_only``: torch >= 2.6 then refuses every checkpoint MMEngine itself saved (its
message hub holds ``HistoryBuffer`` and numpy objects; open-mmlab/mmengine#1655) with a
page-long unpickling error, and older torch unpickles any file, running its code.

Fix: the loader of local files (the ``''`` scheme of ``CheckpointLoader``) becomes
:func:`emo_mm.engine.checkpoints.safe_load`: weights-only reading, the tagged plain values
of :mod:`.mmengine_checkpoint` restored, files trusted by
:func:`~emo_mm.models.weights.trusted_checkpoints` unpickled fully, one-line refusals.
"""
import importlib

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmengine.runner.checkpoint'


def load_local(filename: str, map_location=None):
    """The replacement loader: :func:`emo_mm.engine.checkpoints.safe_load`."""
    from ..engine.checkpoints import safe_load
    return safe_load(filename, map_location=map_location)


def apply() -> None:
    """Registers :func:`load_local` for local paths (idempotent)."""
    loader = importlib.import_module(TARGET).CheckpointLoader
    if loader._schemes.get('') is not load_local:
        loader.register_scheme(prefixes='', loader=load_local, force=True)
