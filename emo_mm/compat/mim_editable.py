"""OpenMMLab's ``mim`` for an editable (``pip install -e``) emo_mm.

Upstream: openmim 0.3.9 finds a package's files (``model-index.yml``, ``.mim/tools``,
``.mim/configs``) under ``<location>/<package>``, where ``location`` is the folder of the
package's installed metadata (``mim.utils.get_installed_path``, through pkg_resources).
Editable installs made by pip with setuptools >= 64 (PEP 660, the only kind setuptools 80
makes, and what ``make setup`` does) keep that metadata in ``site-packages`` while the
package stays in the repository, so mim looks in ``site-packages/emo_mm``, which does not
exist: ``mim search emo_mm`` stops with "model-index.yml ... is not found", and ``mim run``
/ ``mim train`` cannot find the tools. No upstream issue was found; mim predates PEP 660.

Fix, without patching installed files: mim's ``get_installed_path`` answers, for emo_mm
only, the folder that really holds its files (:func:`emo_mm_root`); other packages are
unchanged. ``python -m emo_mm.mim ARGS`` (same arguments as ``mim``) runs mim's command
line with it. Wheels need no fix (their files are in site-packages), and the fix gives the
same answers there.
"""
import importlib
import os.path as osp
import sys
from typing import Optional

#: The upstream module this fix waits for (mim's command line, which imports the modules
#: changed here); applied once it is imported.
TARGET = 'mim.cli'

#: Names mim may be given for this package.
PACKAGE_NAMES = ('emo_mm', 'emo-mm')


def emo_mm_root() -> str:
    """The folder mim should read emo_mm's files from.

    The package folder when it holds ``.mim/model-index.yml`` (a wheel, or an editable
    install, whose setup.py links ``emo_mm/.mim`` to the repository); else, for a source
    checkout the package is imported from without install links, the checkout itself
    (mim also looks for ``model-index.yml`` and ``tools/`` at the root it is given).
    """
    import emo_mm
    package_dir = osp.dirname(osp.abspath(emo_mm.__file__))
    if osp.isfile(osp.join(package_dir, '.mim', 'model-index.yml')):
        return package_dir
    checkout = osp.dirname(package_dir)
    if osp.isfile(osp.join(checkout, 'model-index.yml')) and osp.isdir(
            osp.join(checkout, 'tools')):
        return checkout
    return package_dir


def apply() -> None:
    """Points mim's package look-ups for emo_mm at :func:`emo_mm_root` (idempotent)."""
    customcommand = importlib.import_module('mim.click.customcommand')
    utils = importlib.import_module('mim.utils')
    utils_impl = importlib.import_module('mim.utils.utils')
    original = utils_impl.get_installed_path
    if getattr(original, 'emo_mm_fix', False):
        return
    original_is_installed = utils_impl.is_installed

    def get_installed_path(package: str) -> str:
        if package.lower() in PACKAGE_NAMES:
            return emo_mm_root()
        return original(package)

    def is_installed(package: str) -> bool:
        # An importable emo_mm (a checkout on PYTHONPATH included) is installed for mim.
        return package.lower() in PACKAGE_NAMES or original_is_installed(package)

    get_installed_path.emo_mm_fix = True
    # mim's command modules are compiled from source on each call and import these names
    # from mim.utils then; customcommand imported them when mim was imported.
    for module in (utils, utils_impl, customcommand):
        module.get_installed_path = get_installed_path
        if hasattr(module, 'is_installed'):
            module.is_installed = is_installed


def main(argv: Optional[list] = None) -> None:
    """``mim`` with the fix applied: ``python -m emo_mm.mim search emo_mm --model retinanet``."""
    from . import apply as apply_fixes
    apply_fixes()
    try:
        from mim.cli import cli
    except ImportError:
        sys.exit('error: mim is not installed: pip install openmim (the pinned version is in '
                 'requirements/runtime.txt).')
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name='mim')
