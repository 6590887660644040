"""A bundle inside the toolbox's test loop: ``tools/test.py CONFIG BUNDLE_DIR``.

:class:`DeployedModel` is an MMEngine ``BaseModel`` whose ``predict`` runs the bundle's
graph(s) with onnxruntime on the batch the config's own data preprocessor made, one
sample at a time, and fills the toolbox's data samples (``pred_instances``,
``pred_sem_seg``, ``pred_score``), so that the toolbox's evaluator measures the deployed
graph with the same code as the PyTorch model.

:func:`prepare_bundle_test_config` turns a test config into one that evaluates a bundle;
the bundle must come from that config (its name, test pipeline and classes are compared).
"""
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import BaseModel

from ..registry import MODELS
from .bundle import BundleError, read_bundle
from .predictor import Predictor
from .preprocess import pipeline_spec

#: Hooks that read or change PyTorch weights; a bundle model has none.
WEIGHT_HOOKS = ('EMAHook', 'SwitchToDeployHook', 'emo_mm.SwitchToDeployHook', 'mmpretrain.EMAHook',
                'mmdet.EMAHook', 'ParameterSyncCheckHook', 'emo_mm.ParameterSyncCheckHook')


@MODELS.register_module()
class DeployedModel(BaseModel):
    """Runs a deploy bundle on preprocessed batches (test mode only).

    Args:
        bundle (str): The bundle folder.
        data_preprocessor (dict): The config's data preprocessor.
        threads (int, optional): onnxruntime intra-op threads.
    """

    def __init__(self, bundle: str, data_preprocessor: Optional[dict] = None,
                 threads: Optional[int] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.predictor = Predictor(bundle, threads=threads)
        self.task = self.predictor.task
        manifest = self.predictor.manifest
        # Slide-window segmentors take any image size (their fixed size is the crop's).
        slide = manifest['postprocess'].get('mode') == 'slide'
        self.fixed_size = (manifest['input']['size']
                           if manifest['input'].get('mode') == 'fixed' and not slide else None)
        self.pad_value = float(manifest['preprocess'].get('pad_value', 0))

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List] = None,
                mode: str = 'predict'):
        if mode != 'predict':
            raise RuntimeError(f'A deploy bundle only predicts (mode={mode!r} asked); train '
                               'and compute losses with the PyTorch model.')
        batch = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
        for index, sample in enumerate(data_samples):
            getattr(self, f'_predict_{self.task}')(batch[index:index + 1], sample)
        return data_samples

    def _image(self, image: np.ndarray) -> np.ndarray:
        """Pads a preprocessed image up to a fixed-size graph's size."""
        if self.fixed_size is None or self.task == 'video':
            return np.ascontiguousarray(image, np.float32)
        height, width = self.fixed_size
        if image.shape[-2] > height or image.shape[-1] > width:
            raise BundleError(f'A preprocessed image is {image.shape[-2]}x{image.shape[-1]}, '
                              f'larger than the bundle\'s fixed input {height}x{width}.')
        out = np.full((*image.shape[:-2], height, width), self.pad_value, np.float32)
        out[..., :image.shape[-2], :image.shape[-1]] = image
        return out

    def _predict_detection(self, image, sample):
        from mmengine.structures import InstanceData
        outputs = self.predictor.infer(dict(
            inputs=self._image(image), img_shape=sample.img_shape,
            scale_factor=sample.scale_factor))
        instances = InstanceData()
        instances.bboxes = torch.from_numpy(outputs['boxes'])
        instances.scores = torch.from_numpy(outputs['scores'])
        instances.labels = torch.from_numpy(outputs['labels'].astype(np.int64))
        sample.pred_instances = instances

    def _predict_segmentation(self, image, sample):
        from mmengine.structures import PixelData
        outputs = self.predictor.infer(dict(
            inputs=self._image(image), img_shape=sample.img_shape,
            ori_shape=sample.ori_shape))
        label_map = torch.from_numpy(outputs['label_map'])
        sample.set_data(dict(pred_sem_seg=PixelData(data=label_map)))

    def _predict_classification(self, image, sample):
        scores = self.predictor.infer(dict(inputs=self._image(image)))['scores'][0]
        scores = torch.from_numpy(scores)
        sample.set_pred_score(scores).set_pred_label(scores.argmax(dim=0, keepdim=True))

    def _predict_video(self, clips, sample):
        scores = self.predictor.infer(dict(inputs=np.ascontiguousarray(clips[0], np.float32)))
        scores = torch.from_numpy(scores['scores'].reshape(-1))
        sample.set_pred_score(scores)
        sample.set_pred_label(scores.argmax(dim=-1, keepdim=True))


def check_bundle_matches(cfg: Config, config: str, manifest: Dict) -> None:
    """Refuses a bundle exported from another config (name) or whose preprocessing the
    config's test pipeline no longer matches."""
    from .export import config_name, task_of, test_pipeline
    name = config_name(config)
    own_copy = osp.abspath(config) == osp.join(manifest['root'], manifest['config']['file'])
    expected = manifest['config']['name']
    if name != expected and not own_copy:
        raise BundleError(f'The bundle {manifest["root"]} was exported from config {expected}, '
                          f'not {name}; evaluate it with that config (or the copy in the '
                          f'bundle: {osp.join(manifest["root"], manifest["config"]["file"])}).')
    steps = pipeline_spec(test_pipeline(cfg), task_of(cfg))
    if steps != manifest['preprocess']['steps']:
        raise BundleError(f'The test pipeline of {config} differs from the one the bundle was '
                          'exported with (its deploy.json "preprocess"); export the bundle again.')


def prepare_bundle_test_config(cfg: Config, config: str, bundle: str,
                               threads: Optional[int] = None) -> Config:
    """Replaces the config's model by :class:`DeployedModel` on ``bundle`` (in place)."""
    manifest = read_bundle(bundle)
    check_bundle_matches(cfg, config, manifest)
    from .export import model_config, resolve_scope
    scope = resolve_scope(cfg)
    preprocessor = model_config(cfg).get('data_preprocessor')
    if preprocessor is None:
        raise BundleError(f'The config {config} has no data_preprocessor for the bundle\'s '
                          'inputs.')
    preprocessor = dict(preprocessor)
    kind = preprocessor.get('type')
    default_types = dict(mmpretrain='ClsDataPreprocessor')
    kind = kind or default_types.get(scope)
    if kind and '.' not in kind:
        kind = f'{scope}.{kind}'
    preprocessor['type'] = kind
    cfg.model = dict(type='emo_mm.DeployedModel', bundle=osp.abspath(bundle),
                     data_preprocessor=preprocessor, threads=threads)
    cfg.pop('data_preprocessor', None)
    cfg.load_from = None
    hooks = [h for h in cfg.get('custom_hooks') or [] if h.get('type') not in WEIGHT_HOOKS]
    cfg.custom_hooks = hooks
    return cfg
