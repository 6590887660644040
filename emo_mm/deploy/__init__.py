"""Deployment bundles: a trained model as ONNX graphs plus what a device needs around them.

``tools/deploy.py CONFIG CKPT --out DIR`` writes a bundle folder (:mod:`.bundle` describes
the layout); :class:`Predictor` runs it on images or clips with numpy, onnxruntime and
OpenCV only; ``tools/test.py CONFIG DIR`` evaluates it with the toolbox's own test loop
(:mod:`.runner`).

This package imports no torch: :class:`Predictor` and the bundle reader are torch-free,
the exporter (:mod:`emo_mm.deploy.export`) and the test-loop model
(:mod:`emo_mm.deploy.runner`) are imported by name where they are used.
"""
from .bundle import BundleError, is_bundle, read_bundle

__all__ = ['Predictor', 'BundleError', 'is_bundle', 'read_bundle']


def __getattr__(name):
    # The predictor imports onnxruntime: only when asked for.
    if name == 'Predictor':
        from .predictor import Predictor
        return Predictor
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
