"""Every fix emo_mm applies to the pinned upstream stack, in one place.

The OpenMMLab 2.x releases emo_mm pins (mmengine 0.10.7, mmcv 2.1.0, mmdet 3.3.0,
mmaction2 1.2.0, ...) predate the torch they must run on and are no longer maintained.
Nothing here edits installed files; each fix patches the running process, is applied by
``import emo_mm`` (once; :func:`apply` is idempotent) and is a no-op where upstream is
already right. Fixes for modules not imported yet are deferred until they are imported.

Run time (this module):

1. ``mmaction2 1.2.0`` wheel lacks ``mmaction/models/localizers/drn/`` (upstream issue
   2714), so ``import mmaction.models`` fails. A stand-in ``DRN`` module is provided; using
   DRN itself raises a clear error.
2. torch >= 2.6 loads with ``weights_only=True`` by default; MMEngine's full training
   checkpoints (optimizer state, message hub) need full unpickling. Only the checkpoints
   the user names for the Runner (``resume`` / ``load_from`` / ``tools/test.py``) are
   unpickled fully; released weights loaded through ``init_cfg`` stay on the safe path.
3. MMEngine's ``pytorch``/``slurm`` launchers call ``torch.cuda.set_device`` even without
   a GPU, and DDP is built with ``device_ids=[local_rank]``. Without CUDA the process
   group uses gloo and DDP gets ``device_ids=None``, so distributed training runs on CPUs.
4. mmdet 3.3.0 ``SSDHead`` never sets ``loss_cls`` but prediction reads it (upstream issues
   11305 / 11780): heads get ``loss_cls = None`` after construction.

5. setuptools < 81 is pinned on purpose (mmcv and mmengine import ``pkg_resources``);
   its deprecation warning, printed on every import, is silenced.

Install time (``tools/setup_env.sh``, listed here so the whole story is in one file):

6. mmcv 2.1.0 is built from its sdist with ``-std=c++20`` (torch >= 2.14 headers need it;
   mmcv's setup.py hard-codes c++17), against the exact torch, with ``setuptools<81``
   (mmcv and mmengine import ``pkg_resources``).
"""
import contextlib
import functools
import importlib.abc
import importlib.util
import os.path as osp
import sys
import threading
import types
import warnings

_applied = False
_trusted_load = threading.local()


def apply() -> None:
    """Applies all run-time fixes (safe to call more than once)."""
    global _applied
    if _applied:
        return
    _applied = True
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
    _provide_mmaction_drn()
    _patch_checkpoint_loading()
    _patch_cpu_distributed()
    after_import('mmdet.models.dense_heads.ssd_head', _patch_ssd_head)


# ---------------------------------------------------------------------------------------
# Deferred patching: run a fix when (or right away if) a module is imported.
# ---------------------------------------------------------------------------------------
_pending = {}


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of watched modules so their fix runs right after they execute."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, fixes = spec.loader, _pending.pop(fullname)

        class _Loader(importlib.abc.Loader):

            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                for fix in fixes:
                    fix(module)

            def __getattr__(self, name):  # get_source etc., for tracebacks
                return getattr(loader, name)

        spec.loader = _Loader()
        return spec


_finder = _AfterImportFinder()


def after_import(module_name: str, fix) -> None:
    """Calls ``fix(module)`` once ``module_name`` is imported (now, if it already is)."""
    if module_name in sys.modules:
        fix(sys.modules[module_name])
        return
    _pending.setdefault(module_name, []).append(fix)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


# ---------------------------------------------------------------------------------------
# 1. mmaction2's missing DRN localizer.
# ---------------------------------------------------------------------------------------
def _provide_mmaction_drn() -> None:
    spec = importlib.util.find_spec('mmaction')
    if spec is None or not spec.submodule_search_locations:
        return  # mmaction2 not installed
    root = list(spec.submodule_search_locations)[0]
    if osp.exists(osp.join(root, 'models', 'localizers', 'drn', 'drn.py')):
        return  # a release that ships it

    class DRN:
        """Stand-in for mmaction2's DRN localizer, missing from the 1.2.0 wheel."""

        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                'DRN is not part of the installed mmaction2 1.2.0 wheel (upstream issue '
                '2714); emo_mm only provides a stand-in so that mmaction.models imports. '
                'Install mmaction2 from source to use DRN.')

    package = types.ModuleType('mmaction.models.localizers.drn')
    package.__path__ = []
    module = types.ModuleType('mmaction.models.localizers.drn.drn')
    module.DRN = DRN
    package.drn = module
    package.DRN = DRN
    sys.modules.setdefault(package.__name__, package)
    sys.modules.setdefault(module.__name__, module)


# ---------------------------------------------------------------------------------------
# 2. Full unpickling only for checkpoints the user hands to the Runner.
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def trusted_checkpoints():
    """Within this context MMEngine's local checkpoint loader unpickles fully.

    Use only for files the user trusts (their own training checkpoints).
    """
    previous = getattr(_trusted_load, 'on', False)
    _trusted_load.on = True
    try:
        yield
    finally:
        _trusted_load.on = previous


def _patch_checkpoint_loading() -> None:
    import torch
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import CheckpointLoader

    def load_from_local(filename, map_location):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        if getattr(_trusted_load, 'on', False):
            return torch.load(filename, map_location=map_location, weights_only=False)
        return torch.load(filename, map_location=map_location, weights_only=True)

    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)

    original = Runner.load_checkpoint
    if getattr(original, '_emo_mm_trusted', False):
        return

    @functools.wraps(original)
    def load_checkpoint(self, *args, **kwargs):
        # Runner.resume and load_from both go through here.
        with trusted_checkpoints():
            return original(self, *args, **kwargs)

    load_checkpoint._emo_mm_trusted = True
    Runner.load_checkpoint = load_checkpoint


# ---------------------------------------------------------------------------------------
# 3. Distributed training without CUDA.
# ---------------------------------------------------------------------------------------
def _patch_cpu_distributed() -> None:
    import torch
    from mmengine.dist import utils as dist_utils
    from mmengine.runner import Runner

    def cpu_capable(init_fn):
        if getattr(init_fn, '_emo_mm_cpu', False):
            return init_fn

        @functools.wraps(init_fn)
        def wrapper(backend, *args, **kwargs):
            if torch.cuda.is_available():
                return init_fn(backend, *args, **kwargs)
            set_device = torch.cuda.set_device
            torch.cuda.set_device = lambda *_: None
            try:  # nccl needs GPUs; gloo is torch's CPU backend
                return init_fn('gloo', *args, **kwargs)
            finally:
                torch.cuda.set_device = set_device

        wrapper._emo_mm_cpu = True
        return wrapper

    dist_utils._init_dist_pytorch = cpu_capable(dist_utils._init_dist_pytorch)
    dist_utils._init_dist_slurm = cpu_capable(dist_utils._init_dist_slurm)

    original = Runner.wrap_model
    if getattr(original, '_emo_mm_cpu', False):
        return

    @functools.wraps(original)
    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and not torch.cuda.is_available():
            model_wrapper_cfg = dict(model_wrapper_cfg or {})
            model_wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
            model_wrapper_cfg.setdefault('device_ids', None)
            model_wrapper_cfg.setdefault('broadcast_buffers', False)
            model_wrapper_cfg.setdefault('find_unused_parameters',
                                         self.cfg.get('find_unused_parameters', False))
        return original(self, model_wrapper_cfg, model)

    wrap_model._emo_mm_cpu = True
    Runner.wrap_model = wrap_model


# ---------------------------------------------------------------------------------------
# 4. mmdet SSDHead.loss_cls.
# ---------------------------------------------------------------------------------------
def _patch_ssd_head(module) -> None:
    head = module.SSDHead
    original = head.__init__
    if getattr(original, '_emo_mm_fixed', False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not hasattr(self, 'loss_cls'):
            # SSD computes its softmax loss inline; prediction only checks this attribute.
            self.loss_cls = None

    __init__._emo_mm_fixed = True
    head.__init__ = __init__


__all__ = ['apply', 'after_import', 'trusted_checkpoints']
