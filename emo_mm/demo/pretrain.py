"""A CPU-sized stand-in for ImageNet weights: an EMOv2 backbone pretrained on generated shapes.

The real detection configs fine-tune an ImageNet-pretrained backbone; trained from scratch
in the few CPU minutes of a test, detectors barely start to learn. So the demo detection
configs load this instead: the same backbone trained for about 1.5 CPU minutes to label
every pixel of freshly generated shape images (background or one of the four shape classes,
drawn by the same :func:`~emo_mm.demo.data.draw_shapes` as
:func:`~emo_mm.demo.data.make_coco_shapes`, but never its images). It is written once, like
the demo data sets, and loaded through the configs'
``init_cfg=dict(type='Pretrained', checkpoint=...)``; its path is
``demo_shapes_backbone`` of ``configs/demo/_base_/demo_data.py``.

``make demo`` has its own (:func:`pretrain_demo_det_backbone`, ``demo_det_backbone``):
trained on images of its own set's kind, for its lighter detector.
"""
import os.path as osp
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.progress import ProgressBar
from .data import (COCO_SHAPES_CLASSES, DEMO_DET_CLASSES, DEMO_DET_IMAGE_SIZE, DEMO_DET_MAX_OBJECTS,
                   DEMO_DET_RADIUS_RANGE, DEMO_SETTINGS, SHAPES_MAX_OBJECTS, SHAPES_RADIUS_RANGE,
                   demo_det_scene, draw_shapes, generate_once, textured_background)

#: Where the demo detection configs expect the checkpoint.
SHAPES_BACKBONE = DEMO_SETTINGS.demo_shapes_backbone
#: Where ``make demo``'s detector config expects its checkpoint.
DEMO_DET_BACKBONE = DEMO_SETTINGS.demo_det_backbone
# mmdet's DetDataPreprocessor settings of the detection configs (RGB order, ImageNet stats).
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)


def shape_batch(rng: np.random.RandomState, size: int, image_size: int):
    """A batch of generated shape images and their per-pixel labels.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Images (N, 3, S, S), RGB and normalised like the
        detection configs' preprocessor does, and labels (N, S, S): 0 background, 1 + the
        class index of the visible shape elsewhere.
    """
    scenes = []
    for _ in range(size):
        img = textured_background(rng, image_size, image_size)
        scenes.append((img, draw_shapes(rng, img, COCO_SHAPES_CLASSES, SHAPES_MAX_OBJECTS,
                                        SHAPES_RADIUS_RANGE)))
    return _to_batch(scenes, image_size)


def _to_batch(scenes, image_size: int):
    images, labels = [], []
    for img, shapes in scenes:
        label_map = np.zeros((image_size, image_size), np.int64)  # 0 = background
        for label, mask in shapes:
            label_map[mask] = label + 1
        images.append(img[..., ::-1])  # BGR -> RGB, as the detectors' preprocessor does
        labels.append(label_map)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(_MEAN).view(1, 3, 1, 1)) / torch.tensor(_STD).view(1, 3, 1, 1)
    return x, torch.from_numpy(np.stack(labels))


def train_labelling(batches: Callable, num_classes: int, arch: str, window_size: int,
                    out_indices: Tuple[int, ...], iters: int, lr: float, seed: int,
                    background_weight: float = 1., progress: Optional[str] = None):
    """Trains an :class:`~emo_mm.models.EMOv2` to label every pixel of generated images.

    A 1x1 convolution on each output of ``out_indices`` predicts background or one of
    ``num_classes``; the upsampled predictions are summed and trained with cross-entropy
    (AdamW, one-cycle schedule).

    Args:
        batches: ``batches(rng) -> (images, labels)`` as :func:`shape_batch` returns them.
        background_weight (float): Weight of background pixels in the loss (shapes: 1).
        progress (str, optional): Label of a progress bar; no bar when None.

    Returns:
        EMOv2: The trained backbone.
    """
    from ..models import EMOv2  # the models import mmengine registries; keep this module light
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed + 1000)  # never the images of a demo set
    backbone = EMOv2(arch, window_size=window_size, out_indices=out_indices)
    dims = backbone.resolve_arch(arch)['embed_dims']
    heads = nn.ModuleList(nn.Conv2d(dims[i - 1], num_classes + 1, 1) for i in out_indices)
    parameters = [*backbone.parameters(), *heads.parameters()]
    weight = (None if background_weight == 1 else
              torch.tensor([background_weight] + [1.] * num_classes))
    optimizer = torch.optim.AdamW(parameters, lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=iters,
                                                   pct_start=0.1)
    backbone.train()
    bar = ProgressBar(iters, progress) if progress else None
    for _ in range(iters):
        images, labels = batches(rng)
        logits = sum(F.interpolate(head(feature), size=labels.shape[-2:], mode='bilinear',
                                   align_corners=False)
                     for head, feature in zip(heads, backbone(images)))
        loss = F.cross_entropy(logits, labels, weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if bar is not None:
            bar.update(info=f'loss {loss.item():.3f}')
    return backbone


def pretrain_shapes_backbone(path: str = SHAPES_BACKBONE,
                             arch: str = '1M',
                             window_size: int = 10,
                             iters: int = 150,
                             batch_size: int = 16,
                             image_size: int = 128,
                             lr: float = 2e-3,
                             seed: int = 0) -> str:
    """Trains an :class:`~emo_mm.models.EMOv2` backbone on shape labelling; saves its weights.

    A 1x1 convolution on each of stages 2-4 predicts the five classes; the upsampled
    predictions are summed and trained with cross-entropy (AdamW, one-cycle schedule).
    Only the backbone's state dict (EMOv2 key names) is saved. Skipped when ``path`` was
    already written with the same settings.

    Args:
        window_size (int): The attention window of the detectors that load it (the COCO
            configs use 10).

    Returns:
        str: ``path``.
    """
    params = dict(kind='shapes_backbone', arch=arch, window_size=window_size, iters=iters,
                  batch_size=batch_size, image_size=image_size, lr=lr, seed=seed)

    def write(tmp: str) -> None:
        backbone = train_labelling(
            lambda rng: shape_batch(rng, batch_size, image_size), len(COCO_SHAPES_CLASSES),
            arch, window_size, (2, 3, 4), iters, lr, seed)
        torch.save(backbone.state_dict(), osp.join(tmp, osp.basename(path)))

    generate_once(osp.dirname(path) or '.', params, write)
    return path


def demo_det_batch(rng: np.random.RandomState, size: int, image_size: int):
    """A batch of ``make demo``'s kind of images (:func:`~emo_mm.demo.data.demo_det_scene`)
    and their per-pixel labels, as :func:`shape_batch` returns them."""
    return _to_batch([demo_det_scene(rng, image_size) for _ in range(size)], image_size)


def pretrain_demo_det_backbone(path: str = DEMO_DET_BACKBONE,
                               arch: str = '1M',
                               window_size: int = 10,
                               iters: int = 40,
                               batch_size: int = 16,
                               image_size: int = DEMO_DET_IMAGE_SIZE,
                               lr: float = 4e-3,
                               background_weight: float = 0.2,
                               seed: int = 0,
                               progress: bool = False) -> str:
    """``make demo``'s stand-in for ImageNet weights: stages 1-3 of EMOv2 trained to label
    the pixels of freshly generated images of its set (never the set's own images).

    Only the stages the demo detector uses (outputs at strides 8 and 16) are trained and
    saved. Skipped when ``path`` was already written with the same settings.

    Args:
        background_weight (float): Weight of the background pixels in the loss (the
            shapes' is 1): they are most pixels, and would otherwise slow the learning of
            the shape classes.
        progress (bool): Show a progress bar while training. Defaults to False.

    Returns:
        str: ``path``.
    """
    params = dict(kind='demo_det_backbone', arch=arch, window_size=window_size, iters=iters,
                  batch_size=batch_size, image_size=image_size, lr=lr,
                  background_weight=background_weight, seed=seed,
                  classes=list(DEMO_DET_CLASSES), max_objects=DEMO_DET_MAX_OBJECTS,
                  radius_range=list(DEMO_DET_RADIUS_RANGE))

    def write(tmp: str) -> None:
        backbone = train_labelling(
            lambda rng: demo_det_batch(rng, batch_size, image_size), len(DEMO_DET_CLASSES),
            arch, window_size, (2, 3), iters, lr, seed, background_weight,
            '[demo] backbone pretraining' if progress else None)
        torch.save(backbone.state_dict(), osp.join(tmp, osp.basename(path)))

    generate_once(osp.dirname(path) or '.', params, write)
    return path
