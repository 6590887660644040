"""Small, deterministic data sets in the toolboxes' own formats, generated on first use.

They let the demo and the learning tests train real configs end to end on a CPU in
minutes. Every set is a pure function of its arguments (fixed seeds, no downloads); a
``.complete`` marker holding those arguments makes generation idempotent
(:func:`generate_once`).

* :func:`make_coco_shapes`: COCO-format detection + instance segmentation. Shapes of
  several categories on textured backgrounds, varying in colour, size, rotation and
  placement, overlapping (masks hold the visible part only).
* :func:`make_demo_det_shapes`: ``make demo``'s COCO-format detection set: four classes
  that differ in shape and colour, whole and apart, on smooth backgrounds.
* :func:`make_ade20k_regions`: ADE20K-layout semantic segmentation (textured regions).
* :func:`make_hrf_vessels`: HRF-layout vessel segmentation (fundus-like images).
* :func:`make_motion_videos`: Kinetics-layout videos whose class is the motion only.
* :func:`make_shapes_classification`: an mmpretrain ``CustomDataset`` of images with one
  shape each, labelled by the shape's kind.

The default locations and the class names come from ``configs/demo/_base_/demo_data.py``,
the file the demo configs inherit, so that the data and the configs agree by construction.
"""
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from filelock import FileLock

from ..apis import load_config
from ..utils.progress import ProgressBar

#: ``configs/demo/_base_/demo_data.py``: the demo sets' default roots and class names.
DEMO_SETTINGS = load_config(osp.join('demo', '_base_', 'demo_data.py'))
#: The shape kinds :func:`draw_shapes` can draw, in category order.
COCO_SHAPES_CLASSES = tuple(DEMO_SETTINGS.demo_coco_classes)
#: Shapes per image (1..this) and radius range (fraction of the image side) of the shapes set.
SHAPES_MAX_OBJECTS = 4
SHAPES_RADIUS_RANGE = (0.12, 0.35)
_VERSION = 2


def generate_once(root: str, params: dict, write: Callable[[str], None]) -> str:
    """Runs ``write(tmp_root)`` unless ``root`` already holds a set made with ``params``.

    ``write`` fills a fresh ``<root>.tmp`` folder, which then replaces ``root`` together
    with a ``.complete`` marker holding ``params``: an interrupted run never leaves a
    half-written set that a later call would take as complete. A lock file beside ``root``
    makes concurrent callers (parallel test workers, two trainings started together) wait
    for the first one's set instead of writing over it.

    Returns:
        str: ``root``.
    """
    marker = osp.join(root, '.complete')
    stamp = json.dumps(dict(params, version=_VERSION), sort_keys=True)
    root = root.rstrip('/')
    os.makedirs(osp.dirname(osp.abspath(root)), exist_ok=True)
    with FileLock(root + '.lock'):
        if osp.isfile(marker):
            with open(marker) as f:
                if f.read() == stamp:
                    return root
        tmp = root + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        write(tmp)
        with open(osp.join(tmp, '.complete'), 'w') as f:
            f.write(stamp)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    return root


def _splits(train: str, val: str, num_train: int, num_val: int, seed: int):
    """Yields ``(split name, sample count, rng)`` for the train and the val split.

    The val split draws from its own seed (``seed + 10000``), so its samples never repeat
    training ones and do not change when the training split is resized.
    """
    for split, count, split_seed in ((train, num_train, seed), (val, num_val, seed + 10_000)):
        yield split, count, np.random.RandomState(split_seed)


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


def draw_shapes(rng: np.random.RandomState, img: np.ndarray, classes: Sequence[str],
                max_objects: int,
                radius_range: Tuple[float, float]) -> List[Tuple[int, np.ndarray]]:
    """Draws 1..max_objects random shapes into ``img`` (in place).

    Each shape gets a colour far from the background under it; a later shape occludes
    earlier ones, and a placement that would hide more than half of an earlier shape is
    retried (up to 10 times, then the shape is skipped).

    Args:
        rng: The random state every draw comes from (the result is a function of it).
        img: A BGR uint8 image (H, W, 3), modified in place.
        classes: Shape kinds to pick from (``'circle'``, ``'square'``, ``'triangle'``,
            ``'star'``); the returned labels index this sequence.
        max_objects: At most this many shapes (at least one is attempted).
        radius_range: Radius range as fractions of the shorter image side.

    Returns:
        list[tuple[int, np.ndarray]]: ``(class index, visible boolean mask)`` per shape.
    """
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


def _rasterise(rng, kind: str, radius_range, height: int, width: int,
               margin: float = 0.6) -> np.ndarray:
    """A boolean mask of one shape; its centre is at least ``margin`` radii from the border
    (1: the whole shape is inside)."""
    radius = rng.uniform(*radius_range) * min(height, width)
    cx = rng.uniform(radius * margin, width - radius * margin)
    cy = rng.uniform(radius * margin, height - radius * margin)
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


def _write_coco(tmp: str, splits, scene: Callable, classes: Sequence[str], description: str,
                version: str, progress: Optional[ProgressBar] = None) -> None:
    """Writes ``train/``, ``val/`` and ``annotations/`` of a COCO-format set into ``tmp``.

    Args:
        splits: ``(split name, image count, rng)`` triples (:func:`_splits`).
        scene: ``scene(rng) -> (BGR image, [(class index, boolean mask), ...])``.
        progress: Updated once per image written.
    """
    os.makedirs(osp.join(tmp, 'annotations'))
    for split, count, rng in splits:
        os.makedirs(osp.join(tmp, split))
        images, annotations = [], []
        for index in range(count):
            img, shapes = scene(rng)
            height, width = img.shape[:2]
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
            if progress is not None:
                progress.update()
        coco: Dict = dict(
            info=dict(description=f'{description} ({split})', version=version),
            licenses=[], images=images, annotations=annotations,
            categories=[dict(id=i + 1, name=c) for i, c in enumerate(classes)])
        with open(osp.join(tmp, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)


def make_coco_shapes(root: str = DEMO_SETTINGS.demo_coco_root,
                     num_train: int = 96,
                     num_val: int = 24,
                     image_size: Tuple[int, int] = (128, 128),
                     max_objects: int = SHAPES_MAX_OBJECTS,
                     radius_range: Tuple[float, float] = SHAPES_RADIUS_RANGE,
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
        def scene(rng):
            height, width = image_size
            img = textured_background(rng, height, width)
            return img, draw_shapes(rng, img, classes, max_objects, radius_range)

        _write_coco(tmp, _splits('train', 'val', num_train, num_val, seed), scene, classes,
                    'emo_mm demo shapes', str(_VERSION))

    return generate_once(root, params, write)


# ---------------------------------------------------------------------------------------
# The set of `make demo`: few classes, each a shape of its own colour.
# ---------------------------------------------------------------------------------------
#: ``make demo``'s classes (``demo_det_classes``): each kind of shape has its own colour.
DEMO_DET_CLASSES = tuple(DEMO_SETTINGS.demo_det_classes)
#: The BGR colour of each ``DEMO_DET_CLASSES`` entry, and the shape it is drawn as.
DEMO_DET_LOOKS = {'red circle': ((40, 40, 215), 'circle'),
                  'green square': ((50, 175, 50), 'square'),
                  'blue triangle': ((210, 110, 30), 'triangle'),
                  'yellow star': ((30, 205, 235), 'star')}
#: Side of ``make demo``'s images, shapes per image (1..this) and shape radius range
#: (fraction of the side): boxes of about a quarter to a half of the image.
DEMO_DET_IMAGE_SIZE = 128
DEMO_DET_MAX_OBJECTS = 3
DEMO_DET_RADIUS_RANGE = (0.12, 0.25)


def smooth_background(rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
    """A BGR uint8 background: a linear gradient between two greyish colours."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.)
    start, end = (rng.uniform(70, 200) + rng.uniform(-15, 15, size=3) for _ in range(2))
    return np.clip(start + (end - start) * ramp[..., None], 0, 255).astype(np.uint8)


def demo_det_scene(rng: np.random.RandomState, image_size: int = DEMO_DET_IMAGE_SIZE,
                   max_objects: int = DEMO_DET_MAX_OBJECTS,
                   radius_range: Tuple[float, float] = DEMO_DET_RADIUS_RANGE
                   ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One image of ``make demo``'s set: 1..max_objects whole shapes of
    ``DEMO_DET_CLASSES``, apart from each other, on a :func:`smooth_background`, with mild
    pixel noise.

    A placement that would touch an earlier shape is retried (up to 10 times, then the
    shape is skipped), so boxes do not overlap.

    Returns:
        tuple: The BGR uint8 image (S, S, 3) and ``(class index, boolean mask)`` per shape.
    """
    img = smooth_background(rng, image_size, image_size)
    taken = np.zeros((image_size, image_size), bool)  # drawn shapes, grown by 3 pixels
    shapes = []
    for _ in range(rng.randint(1, max_objects + 1)):
        label = rng.randint(len(DEMO_DET_CLASSES))
        colour, kind = DEMO_DET_LOOKS[DEMO_DET_CLASSES[label]]
        for _attempt in range(10):
            mask = _rasterise(rng, kind, radius_range, image_size, image_size, margin=1.)
            if not (mask & taken).any():
                break
        else:
            continue
        img[mask] = np.clip(np.array(colour) + rng.uniform(-20, 20, size=3), 0, 255)
        taken |= cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        shapes.append((label, mask))
    noisy = img + rng.normal(0, 4, size=img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), shapes


def make_demo_det_shapes(root: str = DEMO_SETTINGS.demo_det_root,
                         num_train: int = 400,
                         num_val: int = 100,
                         image_size: int = DEMO_DET_IMAGE_SIZE,
                         max_objects: int = DEMO_DET_MAX_OBJECTS,
                         radius_range: Tuple[float, float] = DEMO_DET_RADIUS_RANGE,
                         seed: int = 0,
                         progress: bool = False) -> str:
    """Writes ``make demo``'s COCO-format detection set (:func:`demo_det_scene`).

    Same layout as :func:`make_coco_shapes`; the val split is held out (its own seed).

    Args:
        progress (bool): Show a progress bar while writing. Defaults to False.

    Returns:
        str: ``root``.
    """
    params = dict(kind='demo_det_shapes', num_train=num_train, num_val=num_val,
                  image_size=image_size, max_objects=max_objects,
                  radius_range=list(radius_range), classes=list(DEMO_DET_CLASSES), seed=seed)

    def write(tmp: str) -> None:
        bar = ProgressBar(num_train + num_val, '[demo] data', 'images') if progress else None
        _write_coco(tmp, _splits('train', 'val', num_train, num_val, seed),
                    lambda rng: demo_det_scene(rng, image_size, max_objects, radius_range),
                    DEMO_DET_CLASSES, 'emo_mm make-demo shapes', str(_VERSION), bar)

    return generate_once(root, params, write)


# ---------------------------------------------------------------------------------------
# Semantic segmentation: ADE20K layout.
# ---------------------------------------------------------------------------------------
#: The first five ADE20K class names, so that mmseg's ADE20KDataset takes the demo set with
#: ``metainfo=dict(classes=ADE_DEMO_CLASSES)`` (their ADE indices are 0..4: no remapping).
ADE_DEMO_CLASSES = tuple(DEMO_SETTINGS.demo_ade20k_classes)


def _class_texture(rng, label: int, height: int, width: int) -> np.ndarray:
    """A texture whose statistics identify the class: hue band, pattern, orientation."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    hue = (label * 36 + rng.uniform(-8, 8)) % 180  # OpenCV hue range is 0..179
    hsv = np.empty((height, width, 3), np.float32)
    hsv[..., 0] = hue
    hsv[..., 1] = rng.uniform(120, 230)
    value = rng.uniform(110, 220)
    angle = label * np.pi / 5 + rng.uniform(-0.15, 0.15)
    period = 5 + 3 * label + rng.uniform(-1, 1)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    pattern = np.sin(phase) if label % 2 == 0 else np.sign(np.sin(phase))
    hsv[..., 2] = value + 30 * pattern + rng.normal(0, 8, size=(height, width))
    hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _region_map(rng, height: int, width: int, num_regions: int) -> np.ndarray:
    """Random Voronoi-like regions with wobbly borders: an int map of region ids."""
    seeds = rng.uniform(0, 1, size=(num_regions, 2)) * [height, width]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wobble = (np.sin(xx / rng.uniform(6, 14)) + np.cos(yy / rng.uniform(6, 14))) * 6
    dist = (yy[None] - seeds[:, 0, None, None])**2 + (xx[None] - seeds[:, 1, None, None])**2
    return np.argmin(np.sqrt(dist) + wobble[None] * rng.uniform(0.5, 1.5, (num_regions, 1, 1)),
                     axis=0)


def make_ade20k_regions(root: str = DEMO_SETTINGS.demo_ade20k_root,
                        num_train: int = 96,
                        num_val: int = 24,
                        image_size: Tuple[int, int] = (160, 200),
                        classes: Sequence[str] = ADE_DEMO_CLASSES,
                        seed: int = 0) -> str:
    """Writes an ADE20K-layout segmentation set under ``root``.

    ``images/{training,validation}/*.jpg`` and ``annotations/.../*.png``, where 0 marks
    "other" pixels (ignored with ``reduce_zero_label=True``) and ``1..K`` the classes, as in
    ADE20K. Each image is a mosaic of textured regions; the texture identifies the class.
    """
    params = dict(kind='ade20k_regions', num_train=num_train, num_val=num_val,
                  image_size=list(image_size), classes=list(classes), seed=seed)

    def write(tmp: str) -> None:
        for split, count, rng in _splits('training', 'validation', num_train, num_val, seed):
            for sub in ('images', 'annotations'):
                os.makedirs(osp.join(tmp, sub, split))
            for index in range(count):
                height, width = image_size
                regions = _region_map(rng, height, width, rng.randint(3, 7))
                img = np.zeros((height, width, 3), np.uint8)
                label = np.zeros((height, width), np.uint8)
                for region in range(regions.max() + 1):
                    mask = regions == region
                    # one region in eight is "other": label 0, plain noise
                    if rng.uniform() < 0.125:
                        img[mask] = rng.randint(0, 256, size=(int(mask.sum()), 3))
                        continue
                    cls = rng.randint(len(classes))
                    img[mask] = _class_texture(rng, cls, height, width)[mask]
                    label[mask] = cls + 1
                name = f'ADE_demo_{split}_{index:05d}'
                cv2.imwrite(osp.join(tmp, 'images', split, name + '.jpg'), img,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                cv2.imwrite(osp.join(tmp, 'annotations', split, name + '.png'), label)

    return generate_once(root, params, write)


# ---------------------------------------------------------------------------------------
# Vessel segmentation: HRF layout.
# ---------------------------------------------------------------------------------------
def _vessel_tree(rng, mask: np.ndarray, start, angle: float, width: float, depth: int,
                 step_scale: float = 1.) -> None:
    """Draws a random branching vessel (a polyline that thins and forks) into mask."""
    x, y = start
    for _ in range(rng.randint(6, 14)):
        angle += rng.normal(0, 0.25)
        step = rng.uniform(6, 14) * step_scale
        nx, ny = x + step * np.cos(angle), y + step * np.sin(angle)
        cv2.line(mask, (int(x), int(y)), (int(nx), int(ny)), 1, max(1, int(round(width))))
        x, y = nx, ny
        if depth > 0 and rng.uniform() < 0.25:
            _vessel_tree(rng, mask, (x, y), angle + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9),
                         width * 0.7, depth - 1, step_scale)
        width = max(1.0, width * 0.93)


def make_hrf_vessels(root: str = DEMO_SETTINGS.demo_hrf_root,
                     num_train: int = 16,
                     num_val: int = 4,
                     image_size: Tuple[int, int] = (100, 140),
                     seed: int = 0) -> str:
    """Writes an HRF-layout vessel segmentation set under ``root``.

    ``images/{training,validation}/*.png`` (fundus-like: a bright disc on black with a
    darker branching vessel tree) and ``annotations/.../*.png`` with 0 = background,
    1 = vessel. The default size is larger than the demo's 64-pixel slide window and not a
    multiple of it or of its stride.
    """
    params = dict(kind='hrf_vessels', num_train=num_train, num_val=num_val,
                  image_size=list(image_size), seed=seed)

    def write(tmp: str) -> None:
        for split, count, rng in _splits('training', 'validation', num_train, num_val, seed):
            for sub in ('images', 'annotations'):
                os.makedirs(osp.join(tmp, sub, split))
            for index in range(count):
                height, width = image_size
                yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
                cy, cx = height / 2 + rng.uniform(-10, 10), width / 2 + rng.uniform(-10, 10)
                radius = min(height, width) * rng.uniform(0.45, 0.5)
                r = np.sqrt((yy - cy)**2 + (xx - cx)**2) / radius
                fundus = (r < 1).astype(np.float32)
                shade = (1 - 0.5 * r**2) * fundus
                vessels = np.zeros((height, width), np.uint8)
                disc = (cx + rng.uniform(-0.3, 0.3) * radius, cy + rng.uniform(-0.2, 0.2) * radius)
                scale = min(height, width) / 300  # vessel size relative to the image
                for k in range(rng.randint(4, 7)):
                    _vessel_tree(rng, vessels, disc, k * 2 * np.pi / 5 + rng.normal(0, 0.3),
                                 max(1.5, rng.uniform(3, 5) * scale), depth=3,
                                 step_scale=max(0.4, scale))
                vessels &= fundus.astype(np.uint8)
                base = np.array([40, 90, 200], np.float32) * rng.uniform(0.8, 1.1, 3)
                img = base * shade[..., None]
                img *= 1 - 0.45 * cv2.GaussianBlur(vessels.astype(np.float32), (3, 3), 0)[..., None]
                img += rng.normal(0, 6, size=img.shape) * fundus[..., None]
                name = f'{index:02d}_demo'
                cv2.imwrite(osp.join(tmp, 'images', split, name + '.png'),
                            np.clip(img, 0, 255).astype(np.uint8))
                cv2.imwrite(osp.join(tmp, 'annotations', split, name + '.png'), vessels)

    return generate_once(root, params, write)


# ---------------------------------------------------------------------------------------
# Video classification: Kinetics layout, classes defined by motion only.
# ---------------------------------------------------------------------------------------
#: The class of a clip is its motion; any single frame is consistent with every class.
MOTION_CLASSES = ('move_left', 'move_right', 'move_up', 'move_down', 'rotate_cw',
                  'rotate_ccw')


def _arrow(size: float) -> np.ndarray:
    """An asymmetric arrow polygon (no rotational symmetry, so turning direction shows)."""
    return np.array([[1.0, 0.0], [0.1, 0.55], [0.1, 0.2], [-0.9, 0.2], [-0.9, -0.2],
                     [0.1, -0.2], [0.1, -0.55]]) * size


def _motion_clip(rng, label: int, num_frames: int, height: int, width: int) -> List[np.ndarray]:
    background = textured_background(rng, height, width)
    size = rng.uniform(0.22, 0.3) * min(height, width)
    colour = rng.uniform(0, 255, size=3)
    while np.abs(colour - background.mean(axis=(0, 1))).sum() < 150:
        colour = rng.uniform(0, 255, size=3)
    angle0 = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.6, 1.4)  # pixels per frame / degrees per frame, scaled below
    name = MOTION_CLASSES[label]
    margin = size * 1.1
    # total travel of a translation, short enough for the whole path to stay in the frame
    span = min(speed * min(height, width) * 0.55, min(height, width) - 2 * margin)
    if name.startswith('move'):
        direction = {'move_left': (-1, 0), 'move_right': (1, 0), 'move_up': (0, -1),
                     'move_down': (0, 1)}[name]
        # start so that the whole path stays inside the frame
        lo = [margin + max(0, -d * span) for d in direction]
        hi = [s - margin - max(0, d * span) for s, d in zip((width, height), direction)]
        start = [rng.uniform(a, max(a, b)) for a, b in zip(lo, hi)]
    else:
        start = [rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)]
        turn = (1 if name == 'rotate_cw' else -1) * speed * np.pi * 0.9  # total turn
    frames = []
    for t in range(num_frames):
        f = t / max(1, num_frames - 1)
        cx, cy, angle = start[0], start[1], angle0
        if name.startswith('move'):
            cx, cy = cx + direction[0] * span * f, cy + direction[1] * span * f
        else:
            angle = angle0 + turn * f
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        polygon = _arrow(size) @ rot.T + [cx, cy]
        frame = background.copy()
        cv2.fillPoly(frame, [np.round(polygon).astype(np.int32)], colour.tolist(), cv2.LINE_AA)
        frames.append(frame)
    return frames


def make_motion_videos(root: str = DEMO_SETTINGS.demo_kinetics_root,
                       num_train: int = 480,
                       num_val: int = 60,
                       num_frames: int = 16,
                       image_size: Tuple[int, int] = (64, 64),
                       fps: int = 8,
                       seed: int = 0) -> str:
    """Writes a Kinetics-layout video set under ``root``.

    ``videos_{train,val}/*.mp4`` (MPEG-4, written with OpenCV) and
    ``kinetics_{train,val}_list_videos.txt`` (``name.mp4 label`` lines). An arrow of random
    colour, size, position and orientation moves left / right / up / down or turns either
    way on a textured background; only the motion tells the class. Keep frame sizes
    multiples of 32: decord 0.6 mis-decodes other widths.
    """
    params = dict(kind='motion_videos', num_train=num_train, num_val=num_val,
                  num_frames=num_frames, image_size=list(image_size), fps=fps, seed=seed)

    def write(tmp: str) -> None:
        for split, count, rng in _splits('train', 'val', num_train, num_val, seed):
            folder = osp.join(tmp, f'videos_{split}')
            os.makedirs(folder)
            lines = []
            for index in range(count):
                label = index % len(MOTION_CLASSES)  # balanced classes
                height, width = image_size
                name = f'{MOTION_CLASSES[label]}_{index:04d}.mp4'
                writer = cv2.VideoWriter(osp.join(folder, name), cv2.VideoWriter_fourcc(*'mp4v'),
                                         fps, (width, height))
                if not writer.isOpened():
                    raise RuntimeError('OpenCV cannot write MPEG-4 video on this machine.')
                for frame in _motion_clip(rng, label, num_frames, height, width):
                    writer.write(frame)
                writer.release()
                lines.append(f'{name} {label}')
            with open(osp.join(tmp, f'kinetics_{split}_list_videos.txt'), 'w') as f:
                f.write('\n'.join(lines) + '\n')

    return generate_once(root, params, write)


# ---------------------------------------------------------------------------------------
# Image classification: mmpretrain CustomDataset layout, one shape per image.
# ---------------------------------------------------------------------------------------
def make_shapes_classification(root: str = DEMO_SETTINGS.demo_cls_root,
                               num_train: int = 480,
                               num_val: int = 120,
                               image_size: Tuple[int, int] = (80, 80),
                               radius_range: Tuple[float, float] = (0.2, 0.4),
                               classes: Sequence[str] = COCO_SHAPES_CLASSES,
                               seed: int = 0) -> str:
    """Writes an mmpretrain ``CustomDataset`` set under ``root``.

    ``{train,val}/<index>.png`` (one shape of random colour, size, rotation and place on a
    textured background; classes balanced) and ``meta/{train,val}.txt`` (``name label``
    lines, labels indexing ``classes``).
    """
    params = dict(kind='shapes_classification', num_train=num_train, num_val=num_val,
                  image_size=list(image_size), radius_range=list(radius_range),
                  classes=list(classes), seed=seed)

    def write(tmp: str) -> None:
        os.makedirs(osp.join(tmp, 'meta'))
        for split, count, rng in _splits('train', 'val', num_train, num_val, seed):
            os.makedirs(osp.join(tmp, split))
            lines = []
            for index in range(count):
                label = index % len(classes)
                height, width = image_size
                img = textured_background(rng, height, width)
                mask = _rasterise(rng, classes[label], radius_range, height, width)
                local = img[mask].mean(axis=0)
                colour = rng.uniform(0, 255, size=3)
                while np.abs(colour - local).sum() < 150:
                    colour = rng.uniform(0, 255, size=3)
                img[mask] = np.clip(colour, 0, 255).astype(np.uint8)
                name = f'{index:05d}.png'
                cv2.imwrite(osp.join(tmp, split, name), img)
                lines.append(f'{name} {label}')
            with open(osp.join(tmp, 'meta', f'{split}.txt'), 'w') as f:
                f.write('\n'.join(lines) + '\n')

    return generate_once(root, params, write)
