"""Checks of the data a config points at, run before training and testing (:mod:`.data`),
and the per-sample guard in the data pipelines (:mod:`.guard`).

The data sets themselves are the toolboxes' (and :mod:`emo_mm.generation.datasets`); the
generated demo sets live in :mod:`emo_mm.demo`.
"""
from .data import DataError, check_data, insert_sample_guards, set_data_root

__all__ = ['DataError', 'check_data', 'insert_sample_guards', 'set_data_root']
