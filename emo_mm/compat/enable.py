"""Importing this module applies emo_mm's upstream fixes (:func:`emo_mm.compat.apply`).

It is the first import of emo_mm's tools, and emo_mm's configs list it in
``custom_imports`` so that the toolboxes' own tools and inferencers get the fixes too.
"""
from . import apply

apply()
