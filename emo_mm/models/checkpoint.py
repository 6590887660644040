"""Deprecated: renamed :mod:`emo_mm.models.weights`; kept for one release."""
from ..utils.deprecation import alias_module

alias_module(__name__, 'emo_mm.models.weights')
