"""Deprecated: renamed :mod:`emo_mm.checks` (data checks, not data sets); kept for one release.

``emo_mm.datasets.checks`` and ``emo_mm.datasets.guard`` are the modules
:mod:`emo_mm.checks.data` and :mod:`emo_mm.checks.guard` themselves.
"""
from ..checks import DataError, check_data, insert_sample_guards, set_data_root
from ..utils.deprecation import warn_renamed

warn_renamed('emo_mm.datasets', 'emo_mm.checks')

__all__ = ['DataError', 'check_data', 'insert_sample_guards', 'set_data_root']
