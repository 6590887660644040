"""Judging generated images with a small classifier trained on the real images.

* ``class_acc``: the fraction of generated images that the classifier assigns to the
  class they were generated for (chance: 1 / number of classes).
* ``classifier_feature_fd``: the Frechet distance between Gaussians fitted to the
  classifier's penultimate features of the generated images and of the real training
  images. It is FID's formula on this small classifier's features, not FID (which uses
  Inception-v3 features and is not comparable).
* ``real_val_fd``: the same distance for the real validation images of the evaluated
  batches (as many as generated): the value a perfect generator would reach with this
  sample size.

The classifier ("judge") trains once per data set in seconds and is cached next to the
data (``<data_root>/judge_classifier.pth``), keyed by the data set's generation stamp.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from torch import nn

from ..registry import METRICS

JUDGE_VERSION = 1


class JudgeClassifier(nn.Module):
    """Three conv stages (16, 32, 64 channels) and a linear classifier on pooled features."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()

        def stage(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(*stage(in_channels, 16), *stage(16, 32), *stage(32, 64),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, num_classes)

    def forward(self, images: torch.Tensor):
        """images: uint8 (B, 3, H, W). Returns (logits, penultimate features)."""
        features = self.features(images.float() / 127.5 - 1)
        return self.head(features), features


def _load_split(data_root: str, split: str):
    from .datasets import ClassImageDataset
    dataset = ClassImageDataset(data_root, dict(img_path=split))
    images = torch.stack([dataset[i]['inputs'] for i in range(len(dataset))])
    labels = torch.tensor([label for _, label in dataset.samples])
    return images, labels, dataset.metainfo['classes']


def _stamp(data_root: str) -> str:
    marker = osp.join(data_root, '.complete')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'{data_root!r} has no .complete marker: the judge classifier '
                                'is cached per generated data set '
                                '(emo_mm.generation.class_shapes).')
    with open(marker) as f:
        return f.read()


def gaussian_stats(features: torch.Tensor):
    """Mean and covariance (float64 numpy) of (N, D) features."""
    x = features.double().cpu().numpy()
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """|m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)) between two Gaussians.

    tr((C1 C2)^(1/2)) is the sum of the square roots of the eigenvalues of
    C1^(1/2) C2 C1^(1/2), which is symmetric positive semi-definite.
    """
    values, vectors = np.linalg.eigh(cov1)
    root1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = root1 @ cov2 @ root1
    trace_root = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    return float(((mean1 - mean2)**2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)


def load_judge(data_root: str, epochs: int = 10, seed: int = 0):
    """The judge of ``data_root`` (trained and cached on first use).

    Returns:
        dict: ``model`` (eval mode), ``train_mean`` / ``train_cov`` of the training
        images' features, ``val_acc`` on the real validation images, ``classes``.
    """
    path = osp.join(data_root, 'judge_classifier.pth')
    key = dict(stamp=_stamp(data_root), version=JUDGE_VERSION, epochs=epochs, seed=seed)
    cached = torch.load(path, weights_only=False) if osp.isfile(path) else None
    if cached is None or cached['key'] != key:
        cached = _train_judge(data_root, epochs, seed)
        cached['key'] = key
        tmp = f'{path}.{os.getpid()}.tmp'  # written whole, then moved: no partial file
        torch.save(cached, tmp)
        os.replace(tmp, path)
    model = JudgeClassifier(len(cached['classes']))
    model.load_state_dict(cached['state_dict'])
    return dict(cached, model=model.eval())


def _train_judge(data_root: str, epochs: int, seed: int) -> dict:
    images, labels, classes = _load_split(data_root, 'train')
    val_images, val_labels, _ = _load_split(data_root, 'val')
    print_log(f'Training the judge classifier on {len(images)} images of {data_root} '
              '(once; cached)', 'current')
    # own random state: the caller's global RNG stream is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = JudgeClassifier(len(classes))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps_per_epoch = -(-len(images) // 32)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                               epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(images), generator=generator).split(32):
                logits, _ = model(images[batch])
                loss = nn.functional.cross_entropy(logits, labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
    model.eval()
    with torch.no_grad():
        train_features = torch.cat([model(x)[1] for x in images.split(256)])
        val_logits = torch.cat([model(x)[0] for x in val_images.split(256)])
    val_acc = (val_logits.argmax(1) == val_labels).float().mean().item()
    mean, cov = gaussian_stats(train_features)
    print_log(f'Judge classifier: real validation accuracy {val_acc:.3f}', 'current')
    return dict(state_dict=model.state_dict(), train_mean=mean, train_cov=cov, val_acc=val_acc,
                classes=tuple(classes))


@METRICS.register_module()
class ClassifierFeatureMetric(BaseMetric):
    """Class accuracy and classifier-feature FD of generated images (see module doc).

    Expects predictions with ``pred_image`` (uint8 (3, H, W)) and ``gt_label``, as
    ``emo_mm.DiffusionModel`` returns them; real images of the evaluated batches, when the
    data loader gives them, yield ``real_val_fd``.

    Args:
        data_root: the generated class image set (with train/ and val/ splits).
    """
    default_prefix = 'gen'

    def __init__(self, data_root: str, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.data_root = data_root

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        real = data_batch.get('inputs') if isinstance(data_batch, dict) else None
        for i, sample in enumerate(data_samples):
            image = sample['pred_image']
            if image.dtype != torch.uint8 or image.ndim != 3:
                raise ValueError('ClassifierFeatureMetric judges uint8 (3, H, W) images; got '
                                 f'{image.dtype} {tuple(image.shape)} (set quantize=True in the '
                                 'data preprocessor of a pixel-space model).')
            result = dict(image=image.cpu(), label=int(sample['gt_label']))
            if real is not None and i < len(real) and real[i].dtype == torch.uint8:
                result['real'] = real[i].cpu()
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> dict:
        judge = load_judge(self.data_root)
        model = judge['model']
        with torch.no_grad():
            logits, features = model(torch.stack([r['image'] for r in results]))
        labels = torch.tensor([r['label'] for r in results])
        metrics = dict(class_acc=(logits.argmax(1) == labels).float().mean().item(),
                       chance=1 / len(judge['classes']),
                       classifier_feature_fd=frechet_distance(
                           *gaussian_stats(features), judge['train_mean'], judge['train_cov']),
                       judge_val_acc=judge['val_acc'])
        real = [r['real'] for r in results if 'real' in r]
        if len(real) > 1:
            with torch.no_grad():
                real_features = model(torch.stack(real))[1]
            metrics['real_val_fd'] = frechet_distance(*gaussian_stats(real_features),
                                                      judge['train_mean'], judge['train_cov'])
        return metrics
