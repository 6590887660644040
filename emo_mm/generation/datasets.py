"""Data sets of the class-conditional diffusion models.

Each item is ``dict(inputs=tensor (C, H, W), data_samples=BaseDataElement(gt_label,
sample_idx))``; :class:`~emo_mm.generation.model.DiffusionDataPreprocessor` maps the
inputs to the diffusion's data space.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.structures import BaseDataElement

from ..registry import DATASETS

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


def _item(inputs: torch.Tensor, label: int, index: int) -> dict:
    return dict(inputs=inputs, data_samples=BaseDataElement(gt_label=label, sample_idx=index))


@DATASETS.register_module()
class LatentDataset(torch.utils.data.Dataset):
    """Pre-extracted latents (DiT's fast path: the VAE runs once, not every epoch).

    Layout: ``data_root`` holds ``latents.npy``, a float16 or float32 array (N, C, H, W)
    of VAE latents as the encoder outputs them (unscaled: the data preprocessor's ``std``
    applies the latent scale), and ``labels.npy``, an integer array (N,) of class
    indices. ``classes.txt`` (one name per line), when present, names the classes. The
    latents are memory-mapped, so a set larger than memory works.

    Args:
        data_root: the folder.
        num_classes: when given, every label must be below it.
    """

    def __init__(self, data_root: str, num_classes: Optional[int] = None):
        self.data_root = data_root
        paths = {name: osp.join(data_root, f'{name}.npy') for name in ('latents', 'labels')}
        for name, path in paths.items():
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'LatentDataset: {path!r} does not exist. Expected {data_root}/latents.npy '
                    '(N, C, H, W) and labels.npy (N,), as '
                    'tools/dataset_converters/extract_latents.py writes them.')
        self.latents = np.load(paths['latents'], mmap_mode='r')
        self.labels = np.load(paths['labels'])
        if self.latents.ndim != 4 or self.latents.dtype not in (np.float16, np.float32):
            raise ValueError(f'{paths["latents"]}: expected a float16/float32 array (N, C, H, '
                             f'W), got {self.latents.dtype} {self.latents.shape}.')
        if self.labels.shape != (len(self.latents), ) or self.labels.dtype.kind not in 'iu':
            raise ValueError(f'{paths["labels"]}: expected {len(self.latents)} integer labels '
                             f'(one per latent), got {self.labels.dtype} {self.labels.shape}.')
        if len(self.labels) and self.labels.min() < 0:
            raise ValueError(f'{paths["labels"]}: labels must be >= 0, found '
                             f'{int(self.labels.min())}.')
        if num_classes is not None and len(self.labels) and self.labels.max() >= num_classes:
            raise ValueError(f'{paths["labels"]}: label {int(self.labels.max())} is outside the '
                             f'{num_classes} classes of the config.')
        classes_file = osp.join(data_root, 'classes.txt')
        classes = None
        if osp.isfile(classes_file):
            with open(classes_file) as f:
                classes = tuple(line.strip() for line in f if line.strip())
        self.metainfo = dict(classes=classes)

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict:
        latent = torch.from_numpy(np.asarray(self.latents[index], dtype=np.float32))
        return _item(latent, int(self.labels[index]), index)


@DATASETS.register_module()
class ClassImageDataset(torch.utils.data.Dataset):
    """Images in one sub-folder per class (the ImageFolder layout), as uint8 (3, H, W) RGB.

    Layout: ``data_root/img_path/<class name>/*.png`` (also .jpg, .jpeg, .bmp, .webp). The
    classes are the sub-folders in sorted order unless ``classes`` lists them (then
    exactly those folders are used, in that order). All images must have one size.

    Args:
        data_root: the data set folder.
        data_prefix: ``dict(img_path=...)``, the split's folder under ``data_root``.
        classes: class names (sub-folder names) in label order.
    """

    def __init__(self, data_root: str, data_prefix: Optional[dict] = None,
                 classes: Optional[Sequence[str]] = None):
        self.data_root = data_root
        folder = osp.join(data_root, (data_prefix or {}).get('img_path', ''))
        if not osp.isdir(folder):
            raise FileNotFoundError(f'ClassImageDataset: {folder!r} does not exist; expected '
                                    'one sub-folder of images per class.')
        found = sorted(d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))
        if classes is None:
            classes = found
        missing = [c for c in classes if c not in found]
        if missing:
            raise FileNotFoundError(f'ClassImageDataset: no folder for the classes {missing} in '
                                    f'{folder!r} (found {found}).')
        self.samples: List[tuple] = []
        for label, name in enumerate(classes):
            files = sorted(f for f in os.listdir(osp.join(folder, name))
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not files:
                raise FileNotFoundError(f'ClassImageDataset: class folder '
                                        f'{osp.join(folder, name)!r} holds no images.')
            self.samples += [(osp.join(folder, name, f), label) for f in files]
        self.metainfo = dict(classes=tuple(classes))
        self._size = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        import cv2
        path, label = self.samples[index]
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f'ClassImageDataset: cannot read {path!r} as an image.')
        if self._size is None:
            self._size = image.shape[:2]
        elif image.shape[:2] != self._size:
            raise ValueError(f'ClassImageDataset: {path!r} is {image.shape[1]}x{image.shape[0]}, '
                             f'the others are {self._size[1]}x{self._size[0]}; resize the set to '
                             'one size.')
        image = torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)))
        return _item(image, label, index)
