"""``_base_ = ['emo_mm::NAME']``: other projects' configs inheriting emo_mm's by name.

Upstream: mmengine 0.10.7 ``Config._get_cfg_path`` resolves ``package::path`` only for
OpenMMLab's own packages, only for paths with a folder (``pkg::folder/file.py``), through
the installed package's ``.mim/model-index.yml`` (so never in an editable install), and
stamps the package name as registry scope on the inherited config, while emo_mm's configs
build mmpretrain / mmdet / mmseg / mmaction2 models under their own ``default_scope``.

Fix: ``emo_mm::NAME`` is looked up as :func:`emo_mm.apis.find_config` does and inherited
with no added scope, exactly as if the file were named by its path; other names go to
MMEngine unchanged.
"""
import importlib

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmengine.config.config'
#: The ``package::path`` prefix MMEngine uses for configs of installed packages.
PACKAGE_PREFIX = 'emo_mm::'


def apply() -> None:
    """Wraps ``Config._get_cfg_path`` (idempotent)."""
    config = importlib.import_module(TARGET).Config
    original = config._get_cfg_path
    if getattr(original, 'emo_mm_fix', False):
        return

    def get_cfg_path(cfg_path: str, filename: str):
        if cfg_path.startswith(PACKAGE_PREFIX):
            from ..apis import find_config
            return find_config(cfg_path), None
        return original(cfg_path, filename)

    get_cfg_path.emo_mm_fix = True
    config._get_cfg_path = staticmethod(get_cfg_path)
