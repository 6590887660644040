"""emo_mm: the EMOv2 (and EMOv1) family as an OpenMMLab 2.x plugin.

Importing the package applies the upstream fixes of :mod:`emo_mm.compat` (idempotent);
models register in the ``emo_mm`` scope when :mod:`emo_mm.models` is imported, which
MMEngine does by itself for ``type='emo_mm.*'``. mmpretrain's model hub learns emo_mm's
classifier names (``list_models('*emov2*')``) when it is first used (:mod:`emo_mm.inference`).
"""
from . import compat, inference

__version__ = '0.1.0'

compat.apply()
inference.install()

__all__ = ['__version__']
