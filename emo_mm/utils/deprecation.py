"""Aliases of renamed modules and names, kept for one release (the CHANGELOG lists them)."""
import importlib
import sys
import warnings
from types import ModuleType


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """A DeprecationWarning that ``old`` is now ``new``, pointed at the caller's caller."""
    warnings.warn(f'{old} is renamed {new}; the old name will be removed in the next '
                  f'release.', DeprecationWarning, stacklevel=stacklevel)


def alias_module(old: str, new: str) -> ModuleType:
    """Makes the module being imported as ``old`` the module ``new`` itself.

    Called from the body of the old module: ``old`` then names the very same module object
    as ``new`` (its functions, classes and private names alike), so nothing it registers is
    executed, or registered, twice. Importing ``old`` warns once.
    """
    module = importlib.import_module(new)
    # Import machinery frames are skipped by warnings: level 4 is the importing code.
    warn_renamed(old, new, stacklevel=4)
    sys.modules[old] = module
    return module
