"""Silences setuptools' ``pkg_resources`` deprecation warning.

Upstream: setuptools >= 81 removed ``pkg_resources``, which mmcv 2.1.0's setup.py and
mmengine 0.10.7 (``mmengine.utils.get_installed_path``, used by ``mmdet::`` base configs)
still import, so emo_mm pins ``setuptools<81``; those versions print a deprecation warning
on every import of mmcv / mmengine. Applies to setuptools 67..80 with mmengine <= 0.10.7.
"""
import warnings

#: Applied at once: the warning comes from imports that have not happened yet.
TARGET = None


def apply() -> None:
    """Installs the warning filter (idempotent: ``warnings`` drops duplicates)."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
