"""Small, deterministic data sets in the toolboxes' own formats, generated on first use.

They let the demo and the learning tests train real configs end to end on a CPU in
minutes. Every set is a pure function of its arguments (fixed seeds, no downloads); a
``.complete`` marker holding those arguments makes generation idempotent.

* :func:`make_coco_shapes`: COCO-format detection + instance segmentation. Shapes of
  several categories on textured backgrounds, varying in colour, size, rotation and
  placement, overlapping (masks hold the visible part only).
"""
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

COCO_SHAPES_CLASSES = ('circle', 'square', 'triangle', 'star')
_VERSION = 1


def _generate_once(root: str, params: dict, write: Callable[[str], None]) -> str:
    """Runs ``write(tmp_root)`` unless ``root`` already holds a set made with ``params``."""
    marker = osp.join(root, '.complete')
    stamp = json.dumps(dict(params, version=_VERSION), sort_keys=True)
    if osp.isfile(marker):
        with open(marker) as f:
            if f.read() == stamp:
                return root
    tmp = root.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write(tmp)
    with open(osp.join(tmp, '.complete'), 'w') as f:
        f.write(stamp)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def textured_background(rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
    """A BGR uint8 background: colour gradient, stripes or checks, and noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 215, size=3)
    direction = rng.uniform(-1, 1, size=2)
    gradient = (xx * direction[0] + yy * direction[1]) / max(height, width)
    img = base[None, None, :] + 50 * gradient[..., None] * rng.uniform(-1, 1, size=3)
    kind = rng.randint(3)
    period = rng.uniform(6, 24)
    if kind == 0:  # stripes at a random angle
        angle = rng.uniform(0, np.pi)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        img += 25 * wave[..., None]
    elif kind == 1:  # checks
        checks = ((xx // period + yy // period) % 2) * 2 - 1
        img += 20 * checks[..., None]
    img += rng.normal(0, 10, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_polygon(rng: np.random.RandomState, kind: str, cx: float, cy: float,
                   radius: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    if kind == 'square':
        t = angle + np.arange(4) * np.pi / 2
        r = np.full(4, radius)
    elif kind == 'triangle':
        t = angle + np.arange(3) * 2 * np.pi / 3
        r = np.full(3, radius)
    elif kind == 'star':
        t = angle + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    else:
        raise ValueError(kind)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _draw_shapes(rng, img: np.ndarray, classes: Sequence[str], max_objects: int,
                 radius_range: Tuple[float, float]) -> List[Tuple[int, np.ndarray]]:
    """Draws 1..max_objects shapes; returns (class index, visible mask) per shape."""
    height, width = img.shape[:2]
    drawn = []
    for _ in range(rng.randint(1, max_objects + 1)):
        label = rng.randint(len(classes))
        for _attempt in range(10):  # place it so that no earlier shape is mostly hidden
            mask = _rasterise(rng, classes[label], radius_range, height, width)
            if all((m & mask).sum() <= 0.5 * m.sum() for _, m in drawn):
                break
        else:
            continue
        # A colour far enough from the background under it to be visible.
        local = img[mask].mean(axis=0)
        colour = rng.uniform(0, 255, size=3)
        while np.abs(colour - local).sum() < 150:
            colour = rng.uniform(0, 255, size=3)
        shade = rng.uniform(0.75, 1.0, size=(height, width, 1))
        img[:] = np.where(mask[..., None], np.clip(colour * shade, 0, 255).astype(np.uint8),
                          img)
        drawn = [(lab, m & ~mask) for lab, m in drawn]  # the new shape occludes older ones
        drawn.append((label, mask))
    return drawn


def _rasterise(rng, kind: str, radius_range, height: int, width: int) -> np.ndarray:
    radius = rng.uniform(*radius_range) * min(height, width)
    cx = rng.uniform(radius * 0.6, width - radius * 0.6)
    cy = rng.uniform(radius * 0.6, height - radius * 0.6)
    mask = np.zeros((height, width), np.uint8)
    if kind == 'circle':
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1)
    else:
        polygon = _shape_polygon(rng, kind, cx, cy, radius)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def _polygons(mask: np.ndarray) -> List[List[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def make_coco_shapes(root: str = 'data/demo_coco',
                     num_train: int = 96,
                     num_val: int = 24,
                     image_size: Tuple[int, int] = (160, 160),
                     max_objects: int = 4,
                     radius_range: Tuple[float, float] = (0.1, 0.3),
                     classes: Sequence[str] = COCO_SHAPES_CLASSES,
                     seed: int = 0) -> str:
    """Writes a COCO-format detection / instance set under ``root``.

    Layout: ``train/``, ``val/`` (PNG images) and ``annotations/instances_{train,val}.json``
    with boxes (of the visible part), polygon masks, areas and ``iscrowd=0``.

    Returns:
        str: ``root``.
    """
    params = dict(kind='coco_shapes', num_train=num_train, num_val=num_val,
                  image_size=list(image_size), max_objects=max_objects,
                  radius_range=list(radius_range), classes=list(classes), seed=seed)

    def write(tmp: str) -> None:
        os.makedirs(osp.join(tmp, 'annotations'))
        for split, count, split_seed in (('train', num_train, seed),
                                         ('val', num_val, seed + 10_000)):
            rng = np.random.RandomState(split_seed)
            os.makedirs(osp.join(tmp, split))
            images, annotations = [], []
            for index in range(count):
                height, width = image_size
                img = textured_background(rng, height, width)
                shapes = _draw_shapes(rng, img, classes, max_objects, radius_range)
                name = f'{index:05d}.png'
                cv2.imwrite(osp.join(tmp, split, name), img)
                images.append(dict(id=index + 1, file_name=name, height=height, width=width))
                for label, mask in shapes:
                    ys, xs = np.nonzero(mask)
                    x0, y0 = int(xs.min()), int(ys.min())
                    annotations.append(dict(
                        id=len(annotations) + 1, image_id=index + 1, category_id=label + 1,
                        bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                        area=int(mask.sum()), segmentation=_polygons(mask), iscrowd=0))
            coco: Dict = dict(
                info=dict(description=f'emo_mm demo shapes ({split})', version=str(_VERSION)),
                licenses=[], images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=c) for i, c in enumerate(classes)])
            with open(osp.join(tmp, 'annotations', f'instances_{split}.json'), 'w') as f:
                json.dump(coco, f)

    return _generate_once(root, params, write)
