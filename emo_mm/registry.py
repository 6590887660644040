"""emo_mm's registries: children of MMEngine's roots under the scope ``emo_mm``.

Every OpenMMLab 2.x toolbox's registries are children of the same roots, so a config of
any toolbox reaches emo_mm's modules as ``type='emo_mm.EMOv2'``: MMEngine imports
``emo_mm.registry`` for the scope and then the ``locations`` below, which register them.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='emo_mm', locations=['emo_mm.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='emo_mm', locations=['emo_mm.engine'])
