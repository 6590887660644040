"""mmpretrain's model hub learns emo_mm's classifiers (``list_models('*emov2*')``).

Upstream: mmpretrain 1.2.0's ``ModelHub`` reads only mmpretrain's own ``model-index.yml``
(``_register_mmpretrain_models``) and offers plugins no entry point to add theirs, so
``get_model('emov2-5m_in1k')`` and ``ImageClassificationInferencer('emov2-5m_in1k')`` fail
with "Failed to find model".

Fix: ``ModelHub._register_mmpretrain_models`` also registers emo_mm's classifier
metafiles (:func:`emo_mm.inference.register_classifiers`), so they are read the first time
the hub is used, not when the fix is applied.
"""
import importlib

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmpretrain.apis.model'


def apply() -> None:
    """Wraps ``ModelHub._register_mmpretrain_models`` (idempotent)."""
    hub = importlib.import_module(TARGET).ModelHub
    original = hub._register_mmpretrain_models
    if getattr(original, 'emo_mm_fix', False):
        return

    def register(cls):
        original()
        from ..inference import register_classifiers
        register_classifiers()

    register.emo_mm_fix = True
    hub._register_mmpretrain_models = classmethod(register)
