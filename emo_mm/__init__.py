"""emo_mm: the EMOv2 (and EMOv1) family as an OpenMMLab 2.x plugin.

Importing the package (or :mod:`emo_mm.models`) changes nothing in the upstream packages:
the fixes emo_mm needs for them are applied by :func:`emo_mm.compat.apply`, which emo_mm's
tools, configs and Python API call when they start (see :mod:`emo_mm.compat`). Models
register in the ``emo_mm`` scope when :mod:`emo_mm.models` is imported, which MMEngine does
by itself for ``type='emo_mm.*'``.
"""
from .version import __version__

__all__ = ['__version__']
