"""Inference by name and with the toolboxes' own inferencers.

With emo_mm's upstream fixes applied (:func:`emo_mm.compat.apply`; emo_mm's tools and
:func:`build_inferencer` apply them):

- mmpretrain's model hub knows emo_mm's ImageNet classifiers, so ``list_models('*emov2*')``,
  ``get_model('emov2-5m_in1k', pretrained=True)`` and
  ``ImageClassificationInferencer('emov2-5m_in1k', pretrained=True)`` work. The names and
  weights come from ``configs/metafiles/emov{1,2}_in1k.yml``; they are read the first time
  mmpretrain's hub is used (:mod:`emo_mm.compat.mmpretrain_model_hub`). The authors'
  released weights (their key layout) are converted to the mmpretrain classifier's on
  loading.
- :func:`build_inferencer` picks the toolbox's inferencer for any emo_mm config or model
  name (``DetInferencer``, ``MMSegInferencer``, ``ImageClassificationInferencer``).

Checkpoints are read by MMEngine's loader with torch's weights-only unpickling: emo_mm's
own training checkpoints load, and a file that would run code is refused.
"""
import os.path as osp
import threading
from typing import Optional

PACKAGE_ROOT = osp.dirname(osp.abspath(__file__))
#: Metafiles of the classifiers registered in mmpretrain's model hub (the others are
#: detection / segmentation / video models, which mmpretrain cannot build).
CLASSIFIER_METAFILES = ('configs/metafiles/emov2_in1k.yml', 'configs/metafiles/emov1_in1k.yml')
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


def register_classifiers() -> None:
    """Registers emo_mm's classifiers in mmpretrain's model hub (once per process).

    Called by the hub when it first lists or builds a model
    (:mod:`emo_mm.compat.mmpretrain_model_hub`). Also makes MMEngine's checkpoint loader
    read ``emo_mm_authors:URL`` (the authors' file at URL, converted), the weights the
    registered names refer to.
    """
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
    from .models.weights import read_checkpoint
    return read_checkpoint(url)


def load_authors_classifier(filename: str, map_location=None) -> dict:
    """Loads the authors' classifier file as an mmpretrain ``ImageClassifier`` checkpoint.

    The authors' keys (``stage*``, ``norm.*``, ``head.*``) become ``backbone.*`` /
    ``head.fc.*``; every tensor is kept, so nothing of the released model is lost.
    """
    from .models.weights import authors_to_mmpretrain, extract_state_dict
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
        from .engine.errors import UserError
        raise UserError(f'{model!r} is neither a config file nor a model of emo_mm\'s model '
                        f'zoo; choose a config path or one of: {", ".join(sorted(names))}.')
    return config


def scope_of(model: str) -> str:
    """The toolbox (``default_scope``) of a config path or model-zoo name."""
    from .apis import load_config
    return load_config(resolve_model(model)).get('default_scope')


def build_inferencer(model: str, weights: Optional[str] = None, device: Optional[str] = None,
                     allow_nonfinite: bool = False):
    """The toolbox inferencer for an emo_mm config or model-zoo name.

    Args:
        model (str): Config path or a name from ``model-index.yml`` (``mim search emo_mm``).
        weights (str, optional): Checkpoint to load (e.g. the ``epoch_12.pth`` of a
            training run). For classifier names, ``'authors'`` loads the authors' released
            weights. Without weights, the model keeps its initialisation. A local file is
            read first without running code from it; one with NaN or infinite tensors is
            refused (unless ``allow_nonfinite``), a classifier in the authors' key layout
            is converted on the fly for mmpretrain configs (one line says so), and the file
            must hold exactly the model's tensors.
        device (str, optional): ``'cpu'``, ``'cuda:0'``, ... Defaults to the toolbox's
            choice (CUDA when available).
        allow_nonfinite (bool): Load weights that hold NaN or infinite values.
    """
    import importlib

    from . import compat
    compat.apply()
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
        if weights is None or weights.startswith(('http://', 'https://')):
            return inferencer(config, **{weights_arg: weights}, device=device)
        import tempfile
        state, converted = _read_weights(weights, scope, allow_nonfinite)
        with tempfile.TemporaryDirectory() as folder:
            if converted is not None:
                import torch
                weights = osp.join(folder, osp.basename(weights))
                torch.save(converted, weights)
            built = inferencer(config, **{weights_arg: weights}, device=device)
        _verify_weights(built.model, state, weights)
        return built


def _read_weights(path: str, scope: str, allow_nonfinite: bool):
    """Reads local weights with emo_mm's rules; returns ``(state dict, converted
    checkpoint or None)``."""
    from mmengine.logging import print_log

    from .models.weights import (adapt_layout, allow_nonfinite_checkpoints, extract_state_dict,
                                 is_authors_classifier, read_checkpoint)
    if not osp.isfile(path):
        raise FileNotFoundError(f'--weights {path!r} does not exist.')
    with allow_nonfinite_checkpoints(allow_nonfinite):
        checkpoint = read_checkpoint(path)
    state = extract_state_dict(checkpoint, path)
    if not is_authors_classifier(state):
        return state, None
    # An mmpretrain classifier's keys (backbone.*, head.fc.*), or any other whole model's.
    model_keys = ({'backbone.x': None, 'head.fc.weight': None} if scope == 'mmpretrain'
                  else {'backbone.x': None})
    state, note = adapt_layout(state, model_keys, path)
    print_log(note, logger='current')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return state, {'state_dict': state, **({'meta': meta} if isinstance(meta, dict) else {})}


def _verify_weights(model, state, path: str) -> None:
    """The inferencer loads with ``strict=False`` (missing tensors stay random, with a
    warning): an incomplete or mismatched file is an error here instead."""
    from .models.weights import CheckpointError, shape_problems
    own = {k: v for k, v in model.state_dict().items()
           if not k.startswith('data_preprocessor.')}
    problems = shape_problems(state, own, require_all=True)
    if problems:
        raise CheckpointError(f'--weights {path} does not match the model of this config '
                              '(trained with another config or variant?): '
                              + '; '.join(problems))


#: What the toolboxes' inferencers take from a folder (mmcv's image extensions).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def check_inputs(inputs: str) -> int:
    """Every image :func:`build_inferencer`'s inferencer would read from ``inputs`` (a file,
    or the image files of a folder) decodes; returns their number. Raises
    :class:`~emo_mm.engine.errors.UserError` naming the first that does not."""
    from PIL import Image

    from .engine.errors import UserError
    if not osp.exists(inputs):
        raise UserError(f'{inputs} does not exist: give an image file or a folder of images.')
    if osp.isdir(inputs):
        import os
        files = sorted(osp.join(inputs, f) for f in os.listdir(inputs)
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise UserError(f'{inputs} holds no image files '
                            f'({", ".join(IMAGE_EXTENSIONS)}).')
    else:
        files = [inputs]
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as err:  # PIL raises its own errors for every kind of bad file
            detail = ' '.join(str(err).split())[:160] or type(err).__name__
            raise UserError(f'{path} is not an image that can be decoded ({detail}); give image '
                            'files (JPEG, PNG, ...).') from None
    return len(files)
