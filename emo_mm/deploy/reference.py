"""The PyTorch model's results in the Predictor's form, through the toolbox's own pipeline.

Used to check a bundle against the model it came from (``tools/deploy.py``, the tests):
:func:`torch_predict` runs the config's test pipeline (without its annotation loading) and
the model's ``test_step`` on one image or video file, as the toolboxes' inferencers do, and
converts the data sample to the dict :class:`~emo_mm.deploy.Predictor` returns.
"""
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.config import Config

from .export import resolve_scope, test_pipeline

_ANNOTATIONS = ('LoadAnnotations', )


def inference_pipeline(cfg: Config):
    """The test pipeline without annotation loading, built in the config's scope."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    init_default_scope(resolve_scope(cfg))
    steps = [t for t in test_pipeline(cfg)
             if str(t.get('type')).split('.')[-1] not in _ANNOTATIONS]
    return Compose(steps)


def _inputs_for(cfg: Config, path: str) -> Dict:
    scope = resolve_scope(cfg)
    if scope == 'mmaction':
        return dict(filename=path, label=-1, start_index=0, modality='RGB')
    return dict(img_path=path)


@torch.no_grad()
def torch_sample(model, cfg: Config, path: str, pipeline=None):
    """The toolbox's data sample for one file (test pipeline, data preprocessor, predict)."""
    from mmengine.dataset import pseudo_collate
    pipeline = pipeline or inference_pipeline(cfg)
    data = pseudo_collate([pipeline(_inputs_for(cfg, path))])
    return model.test_step(data)[0]


def to_result(sample, task: str, classes=None, topk: Optional[int] = None) -> Dict:
    """A toolbox data sample -> the Predictor's result dict (numpy)."""
    def name(label):
        return classes[label] if classes and 0 <= label < len(classes) else f'class {label}'

    if task == 'detection':
        instances = sample.pred_instances
        labels = instances.labels.numpy().astype(np.int64)
        return dict(boxes=instances.bboxes.numpy(), scores=instances.scores.numpy(),
                    labels=labels, classes=[name(int(label)) for label in labels])
    if task == 'segmentation':
        return dict(label_map=sample.pred_sem_seg.data[0].numpy().astype(np.int64))
    scores = sample.pred_score.numpy().reshape(-1)
    order = np.argsort(-scores, kind='stable')[:topk]
    return dict(scores=scores[order], labels=order, classes=[name(int(i)) for i in order],
                all_scores=scores)


def torch_predict(model, cfg: Config, path: str, task: str, classes=None,
                  topk: Optional[int] = None, pipeline=None) -> Dict:
    return to_result(torch_sample(model, cfg, path, pipeline), task, classes, topk)
