"""emo_mm's registries: children of MMEngine's roots under the scope ``emo_mm``.

Every OpenMMLab 2.x toolbox's registries are children of the same roots, so a config of
any toolbox reaches emo_mm's modules as ``type='emo_mm.EMOv2'``: MMEngine imports
``emo_mm.registry`` for the scope and then the ``locations`` below, which register them.
"""
import mmengine.registry as mmengine_registry
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='emo_mm',
                  locations=['emo_mm.models', 'emo_mm.generation', 'emo_mm.deploy.runner'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='emo_mm', locations=['emo_mm.engine'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='emo_mm',
                      locations=['emo_mm.checks.guard'])
# The generation demo's data sets and metric (configs with default_scope='emo_mm').
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='emo_mm',
                    locations=['emo_mm.generation'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='emo_mm',
                   locations=['emo_mm.generation'])


def _child(root: Registry) -> Registry:
    return Registry(root.name, parent=root, scope='emo_mm')


# The other roots get an empty emo_mm child each, as every toolbox's registry module does:
# a Runner under default_scope='emo_mm' then finds its loops, samplers, optimizers, ...
# through the parent instead of warning that the scope has no such registry.
DATA_SAMPLERS = _child(mmengine_registry.DATA_SAMPLERS)
EVALUATOR = _child(mmengine_registry.EVALUATOR)
FUNCTIONS = _child(mmengine_registry.FUNCTIONS)
INFERENCERS = _child(mmengine_registry.INFERENCERS)
LOG_PROCESSORS = _child(mmengine_registry.LOG_PROCESSORS)
LOOPS = _child(mmengine_registry.LOOPS)
MODEL_WRAPPERS = _child(mmengine_registry.MODEL_WRAPPERS)
OPTIMIZERS = _child(mmengine_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmengine_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmengine_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmengine_registry.PARAM_SCHEDULERS)
RUNNERS = _child(mmengine_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmengine_registry.RUNNER_CONSTRUCTORS)
STRATEGIES = _child(mmengine_registry.STRATEGIES)
TASK_UTILS = _child(mmengine_registry.TASK_UTILS)
VISBACKENDS = _child(mmengine_registry.VISBACKENDS)
VISUALIZERS = _child(mmengine_registry.VISUALIZERS)
WEIGHT_INITIALIZERS = _child(mmengine_registry.WEIGHT_INITIALIZERS)
