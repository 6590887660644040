"""Fixes for the pinned upstream stack, one module per upstream defect, applied from one list.

The OpenMMLab 2.x releases emo_mm pins (mmengine 0.10.7, mmcv 2.1.0, mmdet 3.3.0, mmseg
1.2.2, mmaction2 1.2.0, mmpretrain 1.2.0, openmim 0.3.9) predate the torch they run on and
are no longer maintained. Nothing here edits installed files, and nothing else in emo_mm
changes an upstream package's behaviour.

**When.** All fixes are applied by :func:`apply`, and only by it; importing ``emo_mm`` or
``emo_mm.models`` changes nothing upstream (``tests/test_structure.py`` checks it).
:func:`apply` runs when an emo_mm entry point starts:

- every tool in ``tools/`` and ``python -m emo_mm.mim``: their first import is
  :mod:`emo_mm.compat.enable`, which calls it;
- the toolboxes' own tools and inferencers on emo_mm's configs: the configs list
  :mod:`emo_mm.compat.enable` in ``custom_imports``;
- emo_mm's Python API: :func:`emo_mm.apis.load_config`, :func:`emo_mm.apis.build_model`,
  :func:`emo_mm.inference.build_inferencer`, and the Runner preparation of
  :mod:`emo_mm.engine.launch`;
- your own script: call ``emo_mm.compat.apply()`` first.

**How.** :data:`FIXES` lists the fix modules in the order they are applied. Each names the
upstream module it changes (``TARGET``): a fix whose target is already imported is applied
at once, the others right after their target's first import (one import watcher, removed
once every target was imported), so :func:`apply` imports no toolbox. A fix with no target
is applied at once.

The fixes (upstream, versions, and what breaks without them in each module's docstring):

- :mod:`.pkg_resources_warning`: setuptools < 81 (pinned for mmcv / mmengine) warns on
  every import of ``pkg_resources``.
- :mod:`.mmaction_drn`: the mmaction2 1.2.0 wheel lacks ``models/localizers/drn``
  (open-mmlab/mmaction2#2714), so ``import mmaction.models`` fails.
- :mod:`.mmengine_config_prefix`: mmengine 0.10.7 resolves ``pkg::`` bases only for
  OpenMMLab's packages, so ``_base_ = ['emo_mm::NAME']`` fails.
- :mod:`.mmengine_file_client`: mmengine 0.10.7's ``CheckpointHook`` creates the deprecated
  ``FileClient``, which prints two deprecation notices on every training run.
- :mod:`.mmengine_local_loader`: mmengine 0.10.7 loads local checkpoints with a bare
  ``torch.load``, which torch >= 2.6 refuses for MMEngine's own files (mmengine#1655).
- :mod:`.mmpretrain_model_hub`: mmpretrain 1.2.0's model hub reads only its own model
  index, so emo_mm's classifiers cannot be built by name.
- :mod:`.mmdet_ssd_head`: mmdet 3.3.0 ``SSDHead`` never sets the ``loss_cls`` its prediction
  reads (open-mmlab/mmdetection#11305, #11780).
- :mod:`.mmaction_visualization_hook`: mmaction2 1.2.0's ``VisualizationHook`` passes its
  visualiser an argument it does not take and fails on multi-view test samples.
- :mod:`.mmaction_video_writer`: mmaction2 1.2.0 writes videos only through moviepy 1.x.
- :mod:`.mmseg_visualizer_layout`: mmseg 1.2.2's browse_dataset tool hands its visualiser
  an image layout OpenCV 4.13 cannot draw on.
- :mod:`.mim_editable`: openmim 0.3.9 looks for a package's files next to its installed
  metadata, which an editable (PEP 660) install keeps apart from the package.

Not patches, and so not listed: :mod:`.mmengine_checkpoint` (the plain-type conversion
:class:`emo_mm.engine.CheckpointSafetyHook` applies to each save and load) and
:mod:`.cpu_distributed` (a Runner config rewrite and the gloo process group for CPU-only
``torchrun``, :func:`prepare_runner_config`). Nor are these, which change no upstream
code: the lock around decord's first video open (:mod:`emo_mm.checks.data`; it guards
emo_mm's own calls), the reading of MMEngine's error messages (:mod:`emo_mm.engine.errors`),
and emo_mm's own overrides (``UEMO.train`` returning the module; backbone outputs made
contiguous for consumers such as mmcv's CPU RoIAlign). Install-time fixes
(``tools/dev/setup_env.sh``): mmcv 2.1.0 built from its sdist with ``-std=c++20`` against the
exact torch, and ``setuptools<81``.
"""
import importlib
import importlib.abc
import importlib.util
import sys
import threading
from typing import Dict, List

#: The fix modules of this package, in the order :func:`apply` applies them.
FIXES = (
    'pkg_resources_warning',
    'mmaction_drn',
    'mmengine_config_prefix',
    'mmengine_file_client',
    'mmengine_local_loader',
    'mmpretrain_model_hub',
    'mmdet_ssd_head',
    'mmaction_visualization_hook',
    'mmaction_video_writer',
    'mmseg_visualizer_layout',
    'mim_editable',
)

_lock = threading.RLock()
_applied = False


def fix_modules() -> List:
    """The modules of :data:`FIXES` (cheap: a fix module imports its target only when
    applied)."""
    return [importlib.import_module(f'{__name__}.{name}') for name in FIXES]


def apply() -> None:
    """Applies every fix of :data:`FIXES` (idempotent; imports no toolbox).

    Fixes without a target, or whose target module is imported, are applied now; the
    others right after their target's first import.
    """
    global _applied
    with _lock:
        if _applied:
            return
        waiting = {}
        for fix in fix_modules():
            if fix.TARGET is None or fix.TARGET in sys.modules:
                fix.apply()
            else:
                waiting[fix.TARGET] = fix
        if waiting:
            sys.meta_path.insert(0, _TargetImportWatcher(waiting))
        _applied = True


def pending() -> List[str]:
    """The fixes that wait for their target's import (for tests and diagnostics)."""
    return [fix.__name__.rsplit('.', 1)[1] for finder in sys.meta_path
            if isinstance(finder, _TargetImportWatcher) for fix in finder.waiting.values()]


class _TargetImportWatcher(importlib.abc.MetaPathFinder):
    """Applies a fix right after its target module executes; leaves ``sys.meta_path`` once
    every target was imported.

    It only wraps the module's own loader (the module is found and executed as it would be
    without the watcher); the fix then changes the executed module, before the import
    statement that asked for it returns.
    """

    def __init__(self, waiting: Dict[str, object]):
        self.waiting = dict(waiting)
        self._finding = threading.local()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.waiting or getattr(self._finding, 'name', None) == fullname:
            return None
        self._finding.name = fullname  # find the real spec without finding ourselves
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding.name = None
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        watcher = self

        def exec_and_fix(module):
            exec_module(module)
            watcher._fix(fullname)

        spec.loader.exec_module = exec_and_fix
        return spec

    def _fix(self, fullname: str) -> None:
        with _lock:
            fix = self.waiting.pop(fullname, None)
            if not self.waiting and self in sys.meta_path:
                sys.meta_path.remove(self)
        if fix is not None:
            fix.apply()


def prepare_runner_config(cfg) -> None:
    """What a Runner built from ``cfg`` needs besides the fixes (applied here too): the gloo
    process group and device-free DDP for CPU-only distributed runs
    (:mod:`.cpu_distributed`)."""
    apply()
    from . import cpu_distributed
    cpu_distributed.prepare(cfg)


__all__ = ['FIXES', 'apply', 'pending', 'fix_modules', 'prepare_runner_config']
