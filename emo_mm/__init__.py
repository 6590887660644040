"""emo_mm: the EMOv2 (and EMOv1) family as an OpenMMLab 2.x plugin.

Importing the package applies the upstream fixes of :mod:`emo_mm.compat` (idempotent);
models register in the ``emo_mm`` scope when :mod:`emo_mm.models` is imported, which
MMEngine does by itself for ``type='emo_mm.*'``.
"""
from . import compat

from .version import __version__

compat.apply()

__all__ = ['__version__']
