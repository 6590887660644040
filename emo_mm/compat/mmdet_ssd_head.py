"""Gives mmdet's ``SSDHead`` the ``loss_cls`` attribute its prediction path reads.

Upstream: open-mmlab/mmdetection#11305 and #11780. mmdet 3.3.0's ``SSDHead.__init__``
computes its softmax loss inline and never sets ``loss_cls``, but the prediction path it
inherits reads that attribute, so every SSD test / inference fails with ``AttributeError: 'SSDHead'
object has no attribute 'loss_cls'``. Applies to mmdet 3.x up to 3.3.0; a no-op where the
head sets the attribute itself (the check runs on each built head).

Applied once, when emo_mm first sees mmdet's heads imported (:func:`emo_mm.compat.
apply_to_loaded`) or a config with an ``SSDHead`` about to be built; it wraps ``__init__``
of that one class, under a lock so concurrent first builds patch once.
"""
import functools
import threading

_lock = threading.Lock()
_MARK = '_emo_mm_loss_cls_fix'


def apply() -> None:
    """Wraps ``SSDHead.__init__`` to set ``loss_cls = None`` when the head did not."""
    from mmdet.models.dense_heads import ssd_head
    head = ssd_head.SSDHead
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
