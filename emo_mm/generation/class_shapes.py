"""A class-conditional image set for the generation demo, generated in seconds.

32x32 RGB images of one filled shape on a dark background. The class is the pair
(shape, colour), so a generated image is right only when both are: 3 shapes x 3 colours =
9 classes (chance 1/9). Within a class, position, size, rotation, the exact hue and
the background's grey level vary. Folders: ``<root>/{train,val}/<colour>_<shape>/*.png``
(the layout :class:`~emo_mm.generation.datasets.ClassImageDataset` reads).

    python -m emo_mm.generation.class_shapes [ROOT]      # default data/demo_gen_shapes
"""
import os
import os.path as osp
import sys

import cv2
import numpy as np

from ..demo.data import generate_once

SHAPES = ('circle', 'square', 'triangle')
#: RGB centres of the colours; each image jitters them by up to COLOUR_JITTER per channel.
COLOURS = {'red': (220, 40, 40), 'green': (40, 200, 60), 'blue': (50, 80, 230)}
COLOUR_JITTER = 30
#: class names in label order (sorted, as ClassImageDataset orders folders)
CLASSES = tuple(sorted(f'{colour}_{shape}' for colour in COLOURS for shape in SHAPES))
GEN_SHAPES_ROOT = 'data/demo_gen_shapes'

_SUPERSAMPLE = 4  # drawn at 4x and downscaled: smooth edges


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    corners = 4 if kind == 'square' else 3
    t = angle + np.arange(corners) * 2 * np.pi / corners
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)


def draw_shape_image(rng: np.random.RandomState, label: int, size: int = 32) -> np.ndarray:
    """One RGB uint8 image (size, size, 3) of class ``CLASSES[label]``."""
    colour_name, shape = CLASSES[label].split('_')
    big = size * _SUPERSAMPLE
    background = rng.randint(10, 70)
    image = np.full((big, big, 3), background, np.uint8)
    radius = rng.uniform(0.22, 0.34) * big
    margin = radius * 1.05
    cx, cy = rng.uniform(margin, big - margin, size=2)
    jitter = rng.randint(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
    colour = np.clip(np.array(COLOURS[colour_name]) + jitter, 0, 255)
    colour = tuple(int(c) for c in colour)
    if shape == 'circle':
        cv2.circle(image, (int(cx), int(cy)), int(radius * 0.8), colour, -1, cv2.LINE_AA)
    else:
        points = _polygon(shape, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        cv2.fillPoly(image, [np.round(points).astype(np.int32)], colour, cv2.LINE_AA)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def make_class_shapes(root: str = GEN_SHAPES_ROOT, per_class_train: int = 300,
                      per_class_val: int = 20, size: int = 32, seed: int = 0) -> str:
    """Writes the set under ``root`` unless it is already there; returns ``root``.

    The val split draws from its own seed, so it never repeats training images.
    """
    params = dict(kind='gen_shapes', per_class_train=per_class_train,
                  per_class_val=per_class_val, size=size, seed=seed)

    def write(tmp: str) -> None:
        for split, count, split_seed in (('train', per_class_train, seed),
                                         ('val', per_class_val, seed + 10_000)):
            rng = np.random.RandomState(split_seed)
            for label, name in enumerate(CLASSES):
                folder = osp.join(tmp, split, name)
                os.makedirs(folder)
                for i in range(count):
                    image = draw_shape_image(rng, label, size)
                    cv2.imwrite(osp.join(folder, f'{i:05d}.png'), image[..., ::-1])

    return generate_once(root, params, write)


if __name__ == '__main__':
    print(make_class_shapes(*sys.argv[1:2]))
