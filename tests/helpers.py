"""Helpers shared by the tests."""
import os.path as osp

import torch

from emo_mm.apis import build_model, load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (the scale-relative error of the README)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def build_classifier(arch: str, **backbone):
    """The mmpretrain ImageClassifier of configs/emov2_<arch>_in1k.py (backbone overrides)."""
    cfg = load_config(f'emov2_{arch.lower()}_in1k')
    cfg.model.backbone.update(backbone)
    return build_model(cfg)
