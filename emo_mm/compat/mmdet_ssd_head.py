"""Gives mmdet's ``SSDHead`` the ``loss_cls`` attribute its prediction path reads.

Upstream: open-mmlab/mmdetection#11305 and #11780. mmdet 3.3.0's ``SSDHead.__init__``
computes its softmax loss inline and never sets ``loss_cls``, but the prediction path it
inherits reads that attribute, so every SSD test / inference fails with ``AttributeError: 'SSDHead'
object has no attribute 'loss_cls'``. Applies to mmdet 3.x up to 3.3.0; a no-op where the
head sets the attribute itself (the check runs on each built head).

Fix: ``__init__`` of that one class sets the attribute when the head did not (under a
lock, so that concurrent first applications wrap it once).
"""
import functools
import importlib
import threading

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmdet.models.dense_heads.ssd_head'

_lock = threading.Lock()
_MARK = '_emo_mm_loss_cls_fix'


def apply() -> None:
    """Wraps ``SSDHead.__init__`` to set ``loss_cls = None`` when the head did not."""
    head = importlib.import_module(TARGET).SSDHead
    with _lock:
        original = head.__init__
        if getattr(original, _MARK, False):
            return

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            if not hasattr(self, 'loss_cls'):
                # SSD computes its loss inline; prediction only checks this attribute.
                self.loss_cls = None

        setattr(__init__, _MARK, True)
        head.__init__ = __init__
