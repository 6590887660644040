"""Inference by name and with the toolboxes' own inferencers.

After ``import emo_mm``:

- mmpretrain's model hub knows emo_mm's ImageNet classifiers, so ``list_models('*emov2*')``,
  ``get_model('emov2-5m_in1k', pretrained=True)`` and
  ``ImageClassificationInferencer('emov2-5m_in1k', pretrained=True)`` work. The names and
  weights come from ``configs/metafiles/emov{1,2}_in1k.yml``; they are read the first time
  mmpretrain's hub is used, not at import. The authors' released weights (their key
  layout) are converted to the mmpretrain classifier's on loading.
- :func:`build_inferencer` picks the toolbox's inferencer for any emo_mm config or model
  name (``DetInferencer``, ``MMSegInferencer``, ``ImageClassificationInferencer``).

Checkpoints are read by MMEngine's loader with torch's weights-only unpickling: emo_mm's
own training checkpoints load, and a file that would run code is refused.
"""
import importlib.abc
import importlib.util
import os.path as osp
import sys
import threading
from typing import Optional

PACKAGE_ROOT = osp.dirname(osp.abspath(__file__))
#: Metafiles of the classifiers registered in mmpretrain's model hub (the others are
#: detection / segmentation / video models, which mmpretrain cannot build).
CLASSIFIER_METAFILES = ('configs/metafiles/emov2_in1k.yml', 'configs/metafiles/emov1_in1k.yml')
#: The mmpretrain module that holds the model hub.
HUB_MODULE = 'mmpretrain.apis.model'
#: Checkpoint-loader prefix of "the authors' classifier file at this URL, converted".
AUTHORS_WEIGHTS = 'emo_mm_authors:'
#: The inferencer of each toolbox (config ``default_scope``): module, class, and the names
#: of its checkpoint argument and of the output-folder argument of its ``__call__``.
INFERENCERS = {
    'mmpretrain': ('mmpretrain', 'ImageClassificationInferencer', 'pretrained', 'show_dir'),
    'mmdet': ('mmdet.apis', 'DetInferencer', 'weights', 'out_dir'),
    'mmseg': ('mmseg.apis', 'MMSegInferencer', 'weights', 'out_dir'),
}

_lock = threading.Lock()
_registered = False


def model_zoo_root() -> str:
    """The folder holding ``model-index.yml`` and ``configs/``.

    An installed package carries them in ``emo_mm/.mim``; a source checkout has them at
    the repository root.
    """
    mim = osp.join(PACKAGE_ROOT, '.mim')
    if osp.isfile(osp.join(mim, 'model-index.yml')):
        return mim
    return osp.dirname(PACKAGE_ROOT)


def install() -> None:
    """Makes mmpretrain's hub register emo_mm's classifiers on its first use.

    Called by ``import emo_mm``; costs nothing: mmpretrain is not imported for it and the
    metafiles are read only when the hub first lists or builds a model. If mmpretrain's
    hub module is already imported it is extended now, otherwise right after its import.
    """
    module = sys.modules.get(HUB_MODULE)
    if module is not None:
        _extend_model_hub(module)
    elif not any(isinstance(f, _HubImportWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _HubImportWatcher())


class _HubImportWatcher(importlib.abc.MetaPathFinder):
    """Extends mmpretrain's ``ModelHub`` right after ``mmpretrain.apis.model`` executes.

    mmpretrain offers plugins no way to add their model index, and importing it eagerly
    would cost ``import emo_mm`` seconds; so the watcher waits for mmpretrain's own import
    of that one module, then leaves ``sys.meta_path``.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != HUB_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_extend(module):
            exec_module(module)
            _extend_model_hub(module)

        spec.loader.exec_module = exec_and_extend
        return spec


def _extend_model_hub(module) -> None:
    hub = module.ModelHub
    original = hub._register_mmpretrain_models
    if getattr(original, '_emo_mm', False):
        return

    def register(cls):
        original()
        register_classifiers()

    register._emo_mm = True
    hub._register_mmpretrain_models = classmethod(register)


def register_classifiers() -> None:
    """Registers emo_mm's classifiers in mmpretrain's model hub (once per process)."""
    global _registered
    with _lock:
        if _registered:
            return
        from mmengine.runner import CheckpointLoader
        from mmpretrain.apis.model import ModelHub
        root = model_zoo_root()
        before = set(ModelHub._models_dict)
        for path in CLASSIFIER_METAFILES:
            full = osp.join(root, path)
            if not osp.isfile(full):
                raise FileNotFoundError(
                    f'{full} is missing, so emo_mm\'s classifiers cannot be listed by name. '
                    f'Reinstall emo_mm (its model zoo ships with the package).')
            ModelHub.register_model_index(full, config_prefix=root)
        for name in set(ModelHub._models_dict) - before:
            metainfo = ModelHub._models_dict[name]
            if metainfo.weights:
                metainfo.weights = AUTHORS_WEIGHTS + metainfo.weights
        CheckpointLoader.register_scheme(AUTHORS_WEIGHTS, load_authors_classifier, force=True)
        _registered = True


def fetch(url: str):
    """Downloads (or reads from MMEngine's cache) a checkpoint; tests replace this."""
    from .models.checkpoint import read_checkpoint
    return read_checkpoint(url)


def load_authors_classifier(filename: str, map_location=None) -> dict:
    """Loads the authors' classifier file as an mmpretrain ``ImageClassifier`` checkpoint.

    The authors' keys (``stage*``, ``norm.*``, ``head.*``) become ``backbone.*`` /
    ``head.fc.*``; every tensor is kept, so nothing of the released model is lost.
    """
    from .models.checkpoint import authors_to_mmpretrain, extract_state_dict
    url = filename[len(AUTHORS_WEIGHTS):]
    state = extract_state_dict(fetch(url), url)
    return {'state_dict': authors_to_mmpretrain(state)}


def resolve_model(model: str) -> str:
    """A config path, or a model name of ``model-index.yml`` -> its config path.

    Names mmpretrain's hub knows (its own and emo_mm's classifiers) are returned unchanged.
    """
    if osp.isfile(model):
        return model
    import yaml
    root = model_zoo_root()
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    names = {}
    for path in index['Import']:
        with open(osp.join(root, path)) as f:
            for entry in yaml.safe_load(f).get('Models', []):
                names[entry['Name'].lower()] = osp.join(root, entry['Config'])
    config = names.get(model.lower())
    if config is None:
        raise ValueError(f'{model!r} is neither a config file nor a model of emo_mm\'s model '
                         f'zoo; choose a config path or one of: {", ".join(sorted(names))}.')
    return config


def scope_of(model: str) -> str:
    """The toolbox (``default_scope``) of a config path or model-zoo name."""
    from mmengine.config import Config
    return Config.fromfile(resolve_model(model)).get('default_scope')


def build_inferencer(model: str, weights: Optional[str] = None, device: Optional[str] = None):
    """The toolbox inferencer for an emo_mm config or model-zoo name.

    Args:
        model (str): Config path or a name from ``model-index.yml`` (``mim search emo_mm``).
        weights (str, optional): Checkpoint to load (e.g. the ``epoch_12.pth`` of a
            training run). For classifier names, ``'authors'`` loads the authors' released
            weights. Without weights, the model keeps its initialisation.
        device (str, optional): ``'cpu'``, ``'cuda:0'``, ... Defaults to the toolbox's
            choice (CUDA when available).
    """
    import importlib
    config = resolve_model(model)
    scope = scope_of(config)
    if scope not in INFERENCERS:
        raise ValueError(f'{model}: no image inferencer for default_scope {scope!r} '
                         f'(supported: {sorted(INFERENCERS)}).')
    package, name, weights_arg, _ = INFERENCERS[scope]
    inferencer = getattr(importlib.import_module(package), name)
    if weights == 'authors' and (scope != 'mmpretrain' or osp.isfile(model)):
        raise ValueError("weights='authors' needs a classifier's model name "
                         "(e.g. emov2-5m_in1k); give a checkpoint path otherwise.")
    from mmengine.registry import DefaultScope

    # A toolbox left as the current scope (e.g. mmdet after a DetInferencer) would build
    # this inferencer's pipeline from the wrong registry.
    with DefaultScope.overwrite_default_scope(scope):
        if weights == 'authors':
            return inferencer(model, pretrained=True, device=device)
        return inferencer(config, **{weights_arg: weights}, device=device)
