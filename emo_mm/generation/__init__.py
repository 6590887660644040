"""Class-conditional image generation with diffusion (DiT's recipe; D-EMO and DiT networks).

Registered in the ``emo_mm`` scope on import: ``DiffusionModel`` and
``DiffusionDataPreprocessor`` (MODELS), ``LatentDataset`` and ``ClassImageDataset``
(DATASETS), ``ClassifierFeatureMetric`` (METRICS).
"""
from .datasets import ClassImageDataset, LatentDataset
from .diffusion import GaussianDiffusion, classifier_free_guidance, space_timesteps
from .metrics import ClassifierFeatureMetric, frechet_distance, load_judge
from .model import DiffusionDataPreprocessor, DiffusionModel

__all__ = [
    'GaussianDiffusion', 'classifier_free_guidance', 'space_timesteps', 'DiffusionModel',
    'DiffusionDataPreprocessor', 'LatentDataset', 'ClassImageDataset',
    'ClassifierFeatureMetric', 'frechet_distance', 'load_judge'
]
