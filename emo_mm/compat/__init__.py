"""Fixes for the pinned upstream stack, one module per upstream defect.

The OpenMMLab 2.x releases emo_mm pins (mmengine 0.10.7, mmcv 2.1.0, mmdet 3.3.0,
mmaction2 1.2.0) predate the torch they run on and are no longer maintained. Nothing here
edits installed files. Each fix is applied only where it is needed and never through an
import hook:

- :mod:`.pkg_resources_warning`: setuptools < 81 (pinned because mmcv 2.1.0 and mmengine
  0.10.7 import ``pkg_resources``) warns on every import. Applied on ``import emo_mm``.
- :mod:`.mmaction_drn`: the mmaction2 1.2.0 wheel lacks ``models/localizers/drn``
  (open-mmlab/mmaction2#2714), so ``import mmaction.models`` fails. Applied on
  ``import emo_mm``.
- :mod:`.mmengine_checkpoint`: mmengine <= 0.10.7 checkpoints hold Python objects that
  torch >= 2.6 refuses to unpickle by default (open-mmlab/mmengine#1655). Applied to each
  save and load by :class:`emo_mm.engine.CheckpointSafetyHook` and emo_mm's loader.
- :mod:`.cpu_distributed`: mmengine <= 0.10.7 ``init_dist`` calls ``torch.cuda.set_device``
  and wraps DDP with ``device_ids=[local_rank]`` even without CUDA. Applied when
  ``tools/train.py`` / ``tools/test.py`` build the Runner.
- :mod:`.mmengine_file_client`: mmengine 0.10.7's ``CheckpointHook`` uses the deprecated
  ``FileClient`` and prints its two deprecation notices on every training run. Applied when
  ``tools/train.py`` / ``tools/test.py`` (or the demo) build the Runner.
- :mod:`.mmdet_ssd_head`: mmdet 3.3.0 ``SSDHead`` never sets ``loss_cls`` but prediction
  reads it (open-mmlab/mmdetection#11305, #11780). Applied at the first registry look-up of
  an emo_mm model after mmdet's heads are imported, and at Runner build.

Install-time fixes (``tools/setup_env.sh``): mmcv 2.1.0 built from its sdist with
``-std=c++20`` against the exact torch, and ``setuptools<81``.
"""
import sys

from . import mmaction_drn, pkg_resources_warning

_ssd_head_fixed = False


def apply_on_import() -> None:
    """The fixes that must be in place before any toolbox module is imported.

    Both are free: a warning filter, and a stand-in module entered in ``sys.modules``
    (nothing is imported; see :mod:`.mmaction_drn` for why no later hook exists).
    """
    pkg_resources_warning.apply()
    mmaction_drn.apply()


def apply_to_loaded() -> None:
    """Fixes classes of toolbox modules that are already imported; imports nothing.

    Called when an emo_mm model is looked up in the registry: a toolbox that builds one
    has imported its own models by then (its registry imports them to find the parent
    model), so the fix is in place before its head is built.
    """
    global _ssd_head_fixed
    if not _ssd_head_fixed and 'mmdet.models.dense_heads.ssd_head' in sys.modules:
        from . import mmdet_ssd_head
        mmdet_ssd_head.apply()
        _ssd_head_fixed = True


def prepare_runner_config(cfg) -> None:
    """The fixes a Runner built from ``cfg`` needs, applied just before it is built."""
    from . import cpu_distributed, mmengine_file_client
    cpu_distributed.prepare(cfg)
    mmengine_file_client.apply()
    if 'SSDHead' in str(cfg.get('model', '')):
        from . import mmdet_ssd_head
        mmdet_ssd_head.apply()


__all__ = ['apply_on_import', 'apply_to_loaded', 'prepare_runner_config']
