"""emo_mm: the EMOv2 (and EMOv1) family as an OpenMMLab 2.x plugin.

Importing the package applies only the two upstream fixes that must precede any toolbox
import (:func:`emo_mm.compat.apply_on_import`; both import nothing); the others are applied
where they are needed. Models register in the ``emo_mm`` scope when :mod:`emo_mm.models`
is imported, which MMEngine does by itself for ``type='emo_mm.*'``.
"""
from . import compat

from .version import __version__

compat.apply_on_import()

__all__ = ['__version__']
