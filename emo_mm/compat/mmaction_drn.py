"""A stand-in for the DRN localizer missing from the mmaction2 1.2.0 wheel.

Upstream: open-mmlab/mmaction2#2714. The 1.2.0 wheel on PyPI ships
``mmaction/models/localizers/__init__.py``, which imports ``.drn.drn``, without the ``drn/``
folder, so ``import mmaction.models`` fails with ``ModuleNotFoundError``. Applies to
mmaction2 1.2.0 wheels; a no-op where ``drn/drn.py`` exists (source installs, later
releases) or mmaction2 is not installed.

``mmaction.models`` is imported by mmengine's registry as soon as any mmaction2 config is
built (the toolbox's own tools, inferencers, ``init_recognizer``), so the stand-in is
entered as soon as the fixes are applied (emo_mm's configs apply them through their
``custom_imports``). It costs a ``find_spec`` and two ``sys.modules`` entries; it imports
nothing.
"""
import importlib.util
import os.path as osp
import sys
import types

MODULE = 'mmaction.models.localizers.drn'
#: Applied at once: the stand-in must be in place before mmaction2 imports its models.
TARGET = None


class DRN:
    """Stand-in for mmaction2's DRN localizer, missing from the 1.2.0 wheel."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            'DRN is not part of the installed mmaction2 1.2.0 wheel (upstream issue 2714); '
            'emo_mm only provides a stand-in so that mmaction.models imports. Install '
            'mmaction2 from source to use DRN.')


def needed() -> bool:
    """True when mmaction2 is installed without ``models/localizers/drn/drn.py``."""
    if MODULE in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec('mmaction')
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    root = list(spec.submodule_search_locations)[0]
    return not osp.exists(osp.join(root, 'models', 'localizers', 'drn', 'drn.py'))


def apply() -> None:
    """Enters the stand-in package and module in ``sys.modules`` where they are missing."""
    if not needed():
        return
    package = types.ModuleType(MODULE)
    package.__path__ = []
    module = types.ModuleType(MODULE + '.drn')
    module.DRN = DRN
    package.drn = module
    package.DRN = DRN
    sys.modules.setdefault(module.__name__, module)
    sys.modules.setdefault(package.__name__, package)
