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
"""
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.progress import ProgressBar
from .data import (COCO_SHAPES_CLASSES, DEMO_SETTINGS, SHAPES_IMAGE_SIZE, SHAPES_SCENE_VERSION,
                   generate_once, shapes_scene)

#: Where the demo detection configs expect the checkpoint.
SHAPES_BACKBONE = DEMO_SETTINGS.demo_shapes_backbone
# mmdet's DetDataPreprocessor settings of the detection configs (RGB order, ImageNet stats).
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)


def shape_batch(rng: np.random.RandomState, size: int, image_size: int = SHAPES_IMAGE_SIZE):
    """A batch of generated shape images and their per-pixel labels.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Images (N, 3, S, S), RGB and normalised like the
        detection configs' preprocessor does, and labels (N, S, S): 0 background, 1 + the
        class index of the visible shape elsewhere.
    """
    images, labels = [], []
    for _ in range(size):
        img, shapes = shapes_scene(rng, image_size)
        label_map = np.zeros((image_size, image_size), np.int64)  # 0 = background
        for label, mask in shapes:
            label_map[mask] = label + 1
        images.append(img[..., ::-1])  # BGR -> RGB, as the detectors' preprocessor does
        labels.append(label_map)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(_MEAN).view(1, 3, 1, 1)) / torch.tensor(_STD).view(1, 3, 1, 1)
    return x, torch.from_numpy(np.stack(labels))


def pretrain_shapes_backbone(path: str = SHAPES_BACKBONE,
                             arch: str = '1M',
                             window_size: int = 10,
                             iters: int = 150,
                             batch_size: int = 16,
                             image_size: int = SHAPES_IMAGE_SIZE,
                             lr: float = 2e-3,
                             background_weight: float = 0.2,
                             seed: int = 0,
                             progress: bool = False) -> str:
    """Trains an :class:`~emo_mm.models.EMOv2` backbone on shape labelling; saves its weights.

    A 1x1 convolution on each of stages 2-4 predicts the five classes; the upsampled
    predictions are summed and trained with cross-entropy (AdamW, one-cycle schedule).
    Only the backbone's state dict (EMOv2 key names) is saved. Skipped when ``path`` was
    already written with the same settings.

    Args:
        window_size (int): The attention window of the detectors that load it (the COCO
            configs use 10).
        background_weight (float): Weight of the background pixels in the loss (the
            shapes' is 1): they are most pixels, and would otherwise slow the learning of
            the shape classes.
        progress (bool): Show a progress bar while training. Defaults to False.

    Returns:
        str: ``path``.
    """
    from ..models import EMOv2  # the models import mmengine registries; keep this module light
    params = dict(kind='shapes_backbone', arch=arch, window_size=window_size, iters=iters,
                  batch_size=batch_size, image_size=image_size, lr=lr,
                  background_weight=background_weight, seed=seed)

    def write(tmp: str) -> None:
        torch.manual_seed(seed)
        rng = np.random.RandomState(seed + 1000)  # never the demo set's own images
        backbone = EMOv2(arch, window_size=window_size, out_indices=(2, 3, 4))
        heads = nn.ModuleList(nn.Conv2d(c, len(COCO_SHAPES_CLASSES) + 1, 1)
                              for c in backbone.resolve_arch(arch)['embed_dims'][1:])
        parameters = [*backbone.parameters(), *heads.parameters()]
        class_weights = torch.tensor([background_weight] + [1.] * len(COCO_SHAPES_CLASSES))
        optimizer = torch.optim.AdamW(parameters, lr, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=iters,
                                                       pct_start=0.1)
        backbone.train()
        bar = ProgressBar(iters, '[demo] backbone pretraining') if progress else None
        for _ in range(iters):
            images, labels = shape_batch(rng, batch_size, image_size)
            logits = sum(F.interpolate(head(feature), size=labels.shape[-2:], mode='bilinear',
                                       align_corners=False)
                         for head, feature in zip(heads, backbone(images)))
            loss = F.cross_entropy(logits, labels, weight=class_weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if bar:
                bar.update(info=f'loss {loss.item():.3f}')
        torch.save(backbone.state_dict(), osp.join(tmp, osp.basename(path)))

    generate_once(osp.dirname(path) or '.', params, write, version=SHAPES_SCENE_VERSION)
    return path
