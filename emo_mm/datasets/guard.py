"""Deprecated: renamed :mod:`emo_mm.checks.guard`; kept for one release."""
from ..utils.deprecation import alias_module

alias_module(__name__, 'emo_mm.checks.guard')
