"""The recipe of ``make demo`` (``tools/demo.py``), one function that tests run as well.

:func:`run_demo` generates its shapes set and the backbone pretrained on such images
(once), evaluates the initialised RetinaNet-EMOv2-1M of
``configs/demo/retinanet_emov2_1m_make-demo.py`` on the held-out split, trains it with a
fixed seed, evaluates it again and draws ground truth beside predictions for a few held-out
images. Paths are those of the demo configs, relative to the repository root, which must be
the working directory.
"""
import contextlib
import io
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional

import cv2
import numpy as np

from .data import make_demo_det_shapes
from .pretrain import pretrain_demo_det_backbone

#: The demo's detector config, relative to the repository root.
DEMO_CONFIG = 'configs/demo/retinanet_emov2_1m_make-demo.py'
DEMO_SEED = 0
DEMO_WORK_DIR = 'work_dirs/demo_retinanet'
#: The COCO bbox metrics the demo reports, with their names in its table.
DEMO_METRICS = {'bbox_mAP': 'mAP', 'bbox_mAP_50': 'mAP@0.5', 'bbox_mAP_75': 'mAP@0.75',
                'bbox_mAP_s': 'mAP small', 'bbox_mAP_m': 'mAP medium',
                'bbox_mAP_l': 'mAP large'}


@dataclass
class DemoResult:
    """What :func:`run_demo` measured and wrote.

    Attributes:
        before (dict): COCO bbox metrics (``DEMO_METRICS`` keys) of the initialised model on
            the held-out split.
        after (dict): The same for the trained model.
        epochs (int): Training epochs.
        seed (int): The training seed.
        checkpoint (str): The trained model's checkpoint.
        grid (str): The picture of ground truth beside predictions.
    """
    before: Dict[str, float]
    after: Dict[str, float]
    epochs: int
    seed: int
    checkpoint: str
    grid: str

    def summary(self) -> str:
        """The demo's last line: ``bbox mAP a -> b, mAP@0.5 c -> d (untrained -> ...)``."""
        return (f'bbox mAP {self.before["bbox_mAP"]:.3f} -> {self.after["bbox_mAP"]:.3f}, '
                f'mAP@0.5 {self.before["bbox_mAP_50"]:.3f} -> '
                f'{self.after["bbox_mAP_50"]:.3f} (untrained -> trained, {self.epochs} '
                f'epochs, seed {self.seed})')

    def table(self) -> str:
        """The metrics before and after training, one row each (none for a box size the
        held-out split has no boxes of)."""
        rows = [f'  {"":<12}{"untrained":>10}{"trained":>10}']
        rows += [f'  {name:<12}{self.before[key]:>10.3f}{self.after[key]:>10.3f}'
                 for key, name in DEMO_METRICS.items()
                 if (self.before[key], self.after[key]) != (-1., -1.)]  # -1: no such boxes
        return '\n'.join(rows)


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(f'[demo] {text}', flush=True)


def _evaluate(runner) -> Dict[str, float]:
    """``runner.test()`` without pycocotools' prints; CocoMetric returns no keys (AP 0) for
    a model that detects nothing."""
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = runner.test()
    return {key: float(metrics.get(f'coco/{key}', 0.)) for key in DEMO_METRICS}


def run_demo(work_dir: str = DEMO_WORK_DIR,
             epochs: Optional[int] = None,
             seed: int = DEMO_SEED,
             verbose: bool = True) -> DemoResult:
    """Runs the demo: data, pretraining, evaluation, training, evaluation, picture.

    Every step is seeded, so the metrics repeat exactly on the same kind of machine (CPU
    type, thread count, torch build). The work dir is the demo's own: each run trains
    afresh there.

    Args:
        work_dir (str): Where the checkpoint, logs and the picture go.
        epochs (int, optional): Training epochs; the config's by default (its cosine decay
            is fitted to any other number).
        seed (int): Training seed (the data and the pretraining have their own, fixed).
        verbose (bool): Print progress, where things go and the metrics table.

    Returns:
        DemoResult: The metrics before and after training, the checkpoint and the picture.
    """
    from mmengine.runner import Runner

    from ..engine import prepare_train_config

    if epochs is not None and epochs < 1:
        raise ValueError(f'epochs must be at least 1, got {epochs}.')
    data = make_demo_det_shapes(progress=verbose)
    _say(verbose, f'data: {data} (train/, val/ = the held-out split, annotations/)')
    backbone = pretrain_demo_det_backbone(progress=verbose)
    _say(verbose, f'backbone pretrained on generated shapes: {backbone}')
    options = dict(
        log_level='WARNING',
        custom_hooks=[dict(type='emo_mm.ProgressBarHook')] if verbose else [],
        randomness=dict(seed=seed))
    cfg = prepare_train_config(DEMO_CONFIG, work_dir=work_dir, cfg_options=options,
                               overwrite=True)
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        cosine = cfg.param_scheduler[-1]  # decays to 0 at the last epoch, whatever their number
        cosine.update(end=epochs, T_max=epochs - cosine.get('begin', 0))
    epochs = cfg.train_cfg.max_epochs
    # No validation loop (mmengine would run it after the last epoch): the trained model is
    # evaluated once, below, by the test loop. A checkpoint at the end only.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.pop('val_interval', None)
    cfg.default_hooks.checkpoint.interval = epochs
    runner = Runner.from_cfg(cfg)
    _say(verbose, 'evaluating the initialised detector on the held-out split')
    before = _evaluate(runner)
    _say(verbose, f'training {DEMO_CONFIG} for {epochs} epochs, seed {seed} '
         f'(work dir {work_dir})')
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' notices while loading
        runner.train_loop  # builds the training data loader now
    runner.train()
    _say(verbose, 'evaluating the trained detector on the held-out split')
    after = _evaluate(runner)
    grid = draw_grid(runner, osp.join(work_dir, 'demo_grid.png'))
    result = DemoResult(before, after, epochs, seed, osp.join(work_dir, f'epoch_{epochs}.pth'),
                        grid)
    if verbose:
        num_val = len(runner.test_loop.dataloader.dataset)
        print(f'\n[demo] COCO bbox metrics on the held-out split ({num_val} images):\n'
              f'{result.table()}')
    return result


#: BGR colours of the boxes of each class in the picture: dark, and none the colour of a
#: shape of the demo set, so that boxes stand out from the shapes and the backgrounds.
_COLOURS = ((0, 90, 255), (160, 30, 160), (100, 60, 0), (0, 0, 0))


def draw_grid(runner, path: str, num_images: int = 8, scale: int = 3, columns: int = 2,
              score_thr: float = 0.5) -> str:
    """Draws ground truth (left) beside the predictions (right) for the first held-out images.

    Each image is enlarged ``scale`` times before the boxes and their labels (class names,
    scores) are drawn, so that the text stays legible.

    Args:
        runner: A Runner that has run its test loop (its dataset and model are used).
        path (str): Where the PNG goes.
        num_images (int): Images drawn, in ``columns`` pairs per row.
        score_thr (float): Predictions below this score are not drawn.

    Returns:
        str: ``path``.
    """
    import torch
    from mmengine.dataset import pseudo_collate

    dataset = runner.test_loop.dataloader.dataset
    classes = dataset.metainfo['classes']
    model = runner.model
    model.eval()
    cells = []
    for index in range(min(num_images, len(dataset))):
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([dataset[index]]))[0]
        img = cv2.imread(sample.img_path)
        big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        gt = sample.gt_instances
        truth = _draw_boxes(big.copy(), gt.bboxes.numpy() * scale, gt.labels.numpy(), None,
                            classes)
        pred = sample.pred_instances
        keep = (pred.scores >= score_thr).numpy()
        found = _draw_boxes(big.copy(), pred.bboxes.numpy()[keep] * scale,
                            pred.labels.numpy()[keep], pred.scores.numpy()[keep], classes)
        cells.append(_join([truth, found], 4, axis=1))
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % columns)
    rows = [_join(cells[start:start + columns], 24, axis=1)
            for start in range(0, len(cells), columns)]
    header = np.full((40, rows[0].shape[1], 3), 255, np.uint8)
    image_width = cells[0].shape[1] // 2 - 2
    for column in range(columns):
        left = column * (cells[0].shape[1] + 24)
        for offset, text in ((0, 'ground truth'),
                             (image_width + 4, f'predicted (score >= {score_thr})')):
            cv2.putText(header, text, (left + offset + 6, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                        (0, 0, 0), 2, cv2.LINE_AA)
    cv2.imwrite(path, _join([header, *rows], 12, axis=0))
    return path


def _join(images: List[np.ndarray], gap: int, axis: int) -> np.ndarray:
    """Concatenates images along ``axis`` with ``gap`` white pixels between them."""
    shape = list(images[0].shape)
    shape[axis] = gap
    white = np.full(shape, 255, np.uint8)
    parts = [part for image in images for part in (white, image)][1:]
    return np.concatenate(parts, axis=axis)


def _draw_boxes(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                scores: Optional[np.ndarray], classes: List[str]) -> np.ndarray:
    font, size, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1
    for i, (box, label) in enumerate(zip(boxes, labels)):
        colour = _COLOURS[int(label) % len(_COLOURS)]
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 2)
        text = classes[int(label)] + ('' if scores is None else f' {scores[i]:.2f}')
        (tw, th), base = cv2.getTextSize(text, font, size, thickness)
        ty = y0 - 4 if y0 - th - base - 4 >= 0 else y1 + th + base + 2  # above, else below
        ty = min(ty, img.shape[0] - base - 1)
        tx = max(0, min(x0, img.shape[1] - tw - 4))
        cv2.rectangle(img, (tx, ty - th - base), (tx + tw + 4, ty + base - 2), colour, -1)
        cv2.putText(img, text, (tx + 2, ty - 2), font, size, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return img


__all__ = ['DEMO_CONFIG', 'DEMO_METRICS', 'DEMO_SEED', 'DemoResult', 'draw_grid', 'run_demo']
