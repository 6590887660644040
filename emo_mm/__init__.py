"""emo_mm: the EMOv2 (and EMOv1) family as an OpenMMLab 2.x plugin.

Importing the package applies only the two upstream fixes that must precede any toolbox
import (:func:`emo_mm.compat.apply_on_import`; both import nothing); the others are applied
where they are needed. Models register in the ``emo_mm`` scope when :mod:`emo_mm.models`
is imported, which MMEngine does by itself for ``type='emo_mm.*'``. mmpretrain's model hub
learns emo_mm's classifier names (``list_models('*emov2*')``) when it is first used: a
one-shot watcher for that single mmpretrain module, removed once it has run
(:func:`emo_mm.inference.install`; importing mmpretrain here would cost seconds).
"""
from . import compat, inference

from .version import __version__

compat.apply_on_import()
inference.install()

__all__ = ['__version__']
