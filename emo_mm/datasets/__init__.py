"""Checks of the data a config points at, run before training and testing (:mod:`.checks`).

The generated demo sets live in :mod:`emo_mm.demo`.
"""
