"""Exports a config (and its trained checkpoint) to a deploy bundle: the torch side.

>>> from emo_mm.deploy.export import export_bundle
>>> manifest = export_bundle('configs/demo/retinanet_emov2_1m_demo.py', 'epoch_6.pth',
...                          'bundles/retinanet')                    # doctest: +SKIP

What each task family exports is described in :mod:`emo_mm.deploy.graphs`; the folder and
its ``deploy.json`` in :mod:`emo_mm.deploy.bundle`. The model is switched to deploy mode
(BatchNorm and LayerScale folded) first, and EMO attention runs its eager path (same
outputs; see :func:`emo_mm.utils.onnx._eager_attention`).

Input sizes: a graph takes any height and width (traced at a size whose feature maps pad
in every attention stage, so the padding stays in the graph) unless the test pipeline
fixes the size (a resize without keeping the ratio, a centre crop), the model needs one
size (video; the crop of slide-window segmentation), or ``input_size`` is given: then the
graph has that one size and the preprocessing pads each image up to it.
"""
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from .. import __version__
from ..apis import find_config, load_config
from ..engine.errors import UserError
from ..utils.onnx import DEFAULT_OPSET, _eager_attention, _quiet_tracer, switch_to_deploy
from . import bundle as bundle_io
from . import graphs
from .preprocess import UnsupportedTransform, pipeline_spec

#: Precisions the exporter writes: fp32, and int8 (the fp32 network graph quantized by
#: onnxruntime, :func:`quantize_bundle_graph`).
SUPPORTED_PRECISIONS = ('fp32', 'int8')
#: Precisions not offered, with the reason (one line each).
REFUSED_PRECISIONS = {
    'bf16': '--precision bf16 is not offered: onnxruntime\'s CPU provider has no bf16 '
            'convolution or matrix-multiply kernels, and PyTorch bf16 autocast does not run the '
            'EMO demo models faster than the fp32 bundle at batch 1 (docs/deploy.md, Precision); '
            'use --precision int8 or fp32.',
}
#: int8 defaults: calibration images, the sensitivity pass's error budget (relative RMS
#: error of the network outputs), the quantization format.
#: ``attention='float'``: the attention core (the MatMuls of two activations and their
#: Softmax) stays float. onnxruntime's int8 Softmax (QLinearSoftmax) took 4.8x the time of the
#: float one in SSDLite-EMOv2-1M's graph at 320x320, which made that int8 graph slower than
#: fp32 (kernel time 1.04x fp32's; 0.89x with the attention core in float).
INT8_DEFAULTS = dict(calib=32, calib_split='train', budget=0.05, quant_format='qdq',
                     attention='float')
INT8_ATTENTION = ('float', 'int8')
#: Detection heads whose post-processing :class:`~emo_mm.deploy.graphs.DetectorGraph`
#: reproduces.
DETECTION_HEADS = ('RetinaHead', 'SSDHead')
#: The tasks of the toolboxes' model types.
TASKS = {
    ('mmpretrain', 'ImageClassifier'): 'classification',
    ('mmdet', 'RetinaNet'): 'detection',
    ('mmdet', 'SingleStageDetector'): 'detection',
    ('mmdet', 'SSD'): 'detection',
    ('mmseg', 'EncoderDecoder'): 'segmentation',
    ('mmaction', 'Recognizer3D'): 'video',
}
#: Why the models without a deploy path have none (one line each).
NO_DEPLOY_PATH = {
    'MaskRCNN': 'Mask R-CNN (a two-stage detector) has no deploy path yet: its proposals, '
                'multi-level RoIAlign and per-class masks are not exported (docs/deploy.md '
                'says what fails); deploy RetinaNet or SSDLite configs.',
    'CascadeEncoderDecoder': 'Cascade segmentors have no deploy path yet; deploy an '
                             'EncoderDecoder config.',
}


class DeployError(UserError):
    """A config, checkpoint or output folder the exporter cannot use."""


def resolve_scope(cfg: Config) -> str:
    return cfg.get('default_scope') or 'mmengine'


def model_type(cfg: Config) -> str:
    return str(cfg.model.get('type', '')).split('.')[-1]


def task_of(cfg: Config) -> str:
    """The task family of a config, or a :class:`DeployError` naming why it has none."""
    scope, kind = resolve_scope(cfg), model_type(cfg)
    if kind in NO_DEPLOY_PATH or ('roi_head' in cfg.model and scope == 'mmdet'):
        raise DeployError(NO_DEPLOY_PATH.get(kind, NO_DEPLOY_PATH['MaskRCNN']))
    task = TASKS.get((scope, kind))
    if task is None:
        raise DeployError(f'{kind or "This model"} ({scope}) has no deploy path: bundles export '
                          'mmpretrain ImageClassifier, mmdet RetinaNet / SSD, mmseg '
                          'EncoderDecoder and mmaction Recognizer3D configs.')
    if task == 'detection':
        head = str(cfg.model.get('bbox_head', {}).get('type', '')).split('.')[-1]
        if head not in DETECTION_HEADS:
            raise DeployError(f'Detection head {head or "?"} has no deploy path (bundles '
                              f'export {", ".join(DETECTION_HEADS)}).')
    return task


def model_config(cfg: Config) -> Dict:
    """``cfg.model`` with the data preprocessor the Runner would give it (mmpretrain's
    configs keep it at the top level)."""
    model = cfg.model.copy()
    if model.get('data_preprocessor') is None and cfg.get('data_preprocessor') is not None:
        model['data_preprocessor'] = cfg.data_preprocessor
    return model


def build_model(cfg: Config, checkpoint: Optional[str] = None, trust: bool = False) -> nn.Module:
    """Builds the config's model in eval mode and loads ``checkpoint`` (exact key match,
    read without unpickling code unless ``trust``)."""
    from mmengine.registry import MODELS, init_default_scope

    from .. import compat
    from ..engine.launch import verify_checkpoint
    compat.apply()
    init_default_scope(resolve_scope(cfg))
    model_cfg = model_config(cfg)
    if checkpoint is not None:
        _drop_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise DeployError(f'Checkpoint {checkpoint} does not exist.')
        state = verify_checkpoint(model, checkpoint, trust=trust)
        model.load_state_dict(state, strict=True)
    model.eval()
    return model


def _drop_pretrained(node) -> None:
    """Removes ``init_cfg`` entries: the checkpoint replaces every weight."""
    if isinstance(node, dict):
        node.pop('init_cfg', None)
        for value in node.values():
            _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def test_pipeline(cfg: Config):
    """The test dataloader's pipeline (through dataset wrappers)."""
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset.dataset
    pipeline = dataset.get('pipeline')
    if pipeline is None:
        raise DeployError('The config\'s test_dataloader has no pipeline to derive the '
                          'bundle\'s preprocessing from.')
    # The tools wrap a pipeline in emo_mm.SampleGuard (per-sample error messages).
    while (len(pipeline) == 1 and isinstance(pipeline[0], dict)
           and pipeline[0].get('type') == 'emo_mm.SampleGuard'):
        pipeline = pipeline[0]['transforms']
    return pipeline


def normalization_spec(model: nn.Module, task: str) -> Dict:
    """Mean, std, channel order and padding of the model's data preprocessor."""
    pre = model.data_preprocessor
    spec = dict(mean=None, std=None, bgr_to_rgb=False, pad_size_divisor=1, pad_value=0.,
                pad_size=None)
    if getattr(pre, '_enable_normalize', True) and getattr(pre, 'mean', None) is not None:
        spec['mean'] = [float(v) for v in pre.mean.reshape(-1)]
        spec['std'] = [float(v) for v in pre.std.reshape(-1)]
    # The attribute's name differs per toolbox (mmengine / mmdet, mmseg, mmpretrain and
    # mmaction2); each swaps the first and third channels (BGR <-> RGB).
    spec['bgr_to_rgb'] = any(bool(getattr(pre, name, False)) for name in (
        '_channel_conversion', 'channel_conversion', 'to_rgb'))
    if task == 'segmentation':
        test_cfg = getattr(pre, 'test_cfg', None) or {}
        if test_cfg.get('size') is not None:
            spec['pad_size'] = list(test_cfg['size'])
        spec['pad_size_divisor'] = int(test_cfg.get('size_divisor') or 1)
        spec['pad_value'] = float(getattr(pre, 'pad_val', 0))
    elif task in ('detection', 'classification'):
        spec['pad_size_divisor'] = int(getattr(pre, 'pad_size_divisor', 1))
        spec['pad_value'] = float(getattr(pre, 'pad_value', 0))
    if task == 'detection' and getattr(pre, 'batch_augments', None):
        raise DeployError('The data preprocessor has batch_augments, which bundles do not '
                          'replay.')
    return spec


def fixed_pipeline_size(steps) -> Optional[Tuple[int, int]]:
    """(H, W) every image has after the steps, or None when it depends on the image."""
    size = None
    for step in steps:
        if step['type'] == 'resize':
            size = (None if step['keep_ratio'] or step['scale'] is None else
                    (int(step['scale'][1]), int(step['scale'][0])))
        elif step['type'] == 'resize_edge':
            size = None
        elif step['type'] in ('center_crop', 'video_center_crop', 'three_crop'):
            size = (int(step['crop_size'][1]), int(step['crop_size'][0]))
        elif step['type'] == 'video_resize':
            size = None
    return size


def general_trace_size(divisor: int, minimum: int = 256) -> Tuple[int, int]:
    """A (H, W), multiples of ``divisor`` (>= ``minimum``), whose feature maps at strides
    8-32 are no multiple of the attention windows of EMO configs (7, 8, 10) and span
    several windows, so that the traced graph keeps padding and both partitions."""
    def good(size):
        return all(math.ceil(size / s) % w and math.ceil(size / s) > w
                   for s in (8, 16) for w in (7, 8, 10)) and all(
                       math.ceil(size / 32) % w for w in (7, 8, 10))
    sizes = [s for s in range(divisor * math.ceil(minimum / divisor), 4096, divisor) if good(s)]
    return sizes[0], sizes[1]


def class_names(cfg: Config, model: nn.Module, task: str):
    meta = getattr(model, 'dataset_meta', None) or {}
    names = meta.get('classes')
    if names is None:
        dataset = cfg.test_dataloader.dataset
        while 'metainfo' not in dataset and 'dataset' in dataset:
            dataset = dataset.dataset
        names = (dataset.get('metainfo') or {}).get('classes')
    if names is None:
        names = _dataset_class_names(cfg)
    return [str(n) for n in names] if names is not None else None


def _dataset_class_names(cfg: Config):
    """Class names from the dataset class's METAINFO (no data is read)."""
    from mmengine.registry import DATASETS, init_default_scope
    dataset = cfg.test_dataloader.dataset
    while 'type' not in dataset and 'dataset' in dataset:
        dataset = dataset.dataset
    try:
        init_default_scope(resolve_scope(cfg))
        cls = DATASETS.get(dataset['type'])
        return (getattr(cls, 'METAINFO', None) or {}).get('classes')
    except Exception:  # noqa: B902 - names are optional metadata
        return None


# ---------------------------------------------------------------------------------------
# Export.
# ---------------------------------------------------------------------------------------
def _export(module: nn.Module, args: Tuple[torch.Tensor, ...], path: str, input_names,
            output_names, dynamic_axes, opset: int) -> None:
    module.eval()
    with torch.no_grad(), _quiet_tracer():
        torch.onnx.export(module, args, path, input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes or None,
                          opset_version=opset, dynamo=False)


def export_graphs(model: nn.Module, task: str, folder: str, spec: Dict, opset: int,
                  precision: str = 'fp32') -> Dict:
    """Writes the task's graph(s) into ``folder``; returns ``graphs``, ``input``,
    ``postprocess`` entries of the manifest.

    The graphs are fp32 for every ``precision``; an int8 bundle's network graph is
    quantized afterwards (:func:`quantize_bundle_graph`).
    """
    check_precision(precision)
    switch_to_deploy(model)
    _eager_attention(model)
    exporters = dict(detection=_export_detector, segmentation=_export_segmentor,
                     classification=_export_classifier, video=_export_recognizer)
    return exporters[task](model, folder, spec, opset)


def check_precision(precision: str) -> None:
    if precision in REFUSED_PRECISIONS:
        raise DeployError(REFUSED_PRECISIONS[precision])
    if precision not in SUPPORTED_PRECISIONS:
        raise DeployError(f'--precision {precision} is unknown (supported: '
                          f'{", ".join(SUPPORTED_PRECISIONS)}).')


def quantize_bundle_graph(path: str, cfg: Config, task: str, spec: Dict, postprocess: Dict,
                          calib: int = INT8_DEFAULTS['calib'],
                          calib_split: str = INT8_DEFAULTS['calib_split'],
                          budget: float = INT8_DEFAULTS['budget'],
                          quant_format: str = INT8_DEFAULTS['quant_format'],
                          attention: str = INT8_DEFAULTS['attention'],
                          threads: Optional[int] = 1, log=None,
                          calibration: Optional[Tuple[List[Dict], List[str]]] = None) -> Dict:
    """Quantizes the fp32 model graph at ``path`` in place (int8, see
    :mod:`emo_mm.deploy.quantize`): calibrated on ``calib`` files of the config's
    ``calib_split`` through the bundle's preprocessing (:mod:`.calibration`), the nodes kept
    in float chosen by the sensitivity pass (:mod:`.sensitivity`) for ``budget``;
    ``attention`` (:data:`INT8_ATTENTION`) says whether the attention core is quantized.
    ``calibration``: the ``(inputs, files)`` of :func:`.calibration.calibration_inputs`
    when the caller has already read them (the mobile program calibrates on the same).

    Returns:
        dict: The quantization record for ``deploy.json`` (``quantization``): the format,
        the calibration files' split and count, the float nodes and the reason for each
        float group, the measured errors.
    """
    import os

    from .calibration import calibration_inputs
    from .quantize import QuantizeConfig
    from .sensitivity import quantize_within_budget
    if calibration is None:
        calibration = calibration_inputs(cfg, task, spec, postprocess, calib_split, calib)
    inputs, files = calibration
    if attention not in INT8_ATTENTION:
        raise DeployError(f'int8 attention {attention!r} is unknown (choose from '
                          f'{", ".join(INT8_ATTENTION)}).')
    config = QuantizeConfig(quant_format=quant_format, activation_type='u8',
                            float_attention=attention == 'float')
    out = path + '.int8'
    record = quantize_within_budget(path, out, inputs, config, budget=budget, threads=threads,
                                    log=log)
    os.replace(out, path)
    record['calibration'] = dict(split=calib_split, files=len(files), inputs=len(inputs),
                                 preprocessing='the bundle\'s own (deploy.json "preprocess")')
    return record


def _image_size_mode(spec: Dict, divisor: int) -> Dict:
    fixed = spec.get('pad_size') or fixed_pipeline_size(spec['steps'])
    if fixed is not None:
        height, width = fixed
        return dict(mode='fixed', size=[int(math.ceil(height / divisor)) * divisor,
                                        int(math.ceil(width / divisor)) * divisor])
    return dict(mode='dynamic', size_divisor=divisor)


def _trace_size(mode: Dict, divisor: int) -> Tuple[int, int]:
    return tuple(mode['size']) if mode['mode'] == 'fixed' else general_trace_size(divisor)


def _image_axes(mode: Dict) -> Dict:
    return {} if mode['mode'] == 'fixed' else {'image': {2: 'height', 3: 'width'}}


def check_dynamic_size(wrapper: nn.Module, path: str, input_name: str, traced: Tuple[int, int],
                       divisor: int, tolerance: float = 1e-4) -> float:
    """Runs a dynamic-size graph at a size it was not traced at and compares it with
    PyTorch; a size frozen into the graph (a Python ``int()`` of a traced size, say) shows.

    Returns:
        float: The relative error. Raises :class:`DeployError` above ``tolerance``.
    """
    from ..utils.onnx import onnx_session, relative_error
    height, width = (max(divisor, traced[0] - 3 * divisor), traced[1] + 2 * divisor)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, height, width, generator=generator)
    with torch.no_grad():
        expected = wrapper(image)
    actual = onnx_session(path).run(None, {input_name: image.numpy()})[0]
    error = relative_error(actual, expected)
    if not error <= tolerance:
        raise DeployError(f'The exported graph does not follow the input size (relative '
                          f'error {error:.2e} at {height}x{width}, traced at '
                          f'{traced[0]}x{traced[1]}): an operation fixes a size; export with '
                          '--input-size HxW for a fixed-size graph.')
    return error


def _export_detector(model, folder, spec, opset):
    divisor = max(int(spec['pad_size_divisor']), 1)
    mode = _image_size_mode(spec, divisor)
    height, width = _trace_size(mode, divisor)
    try:
        wrapper = graphs.DetectorGraph(model)
    except ValueError as err:
        raise DeployError(str(err)) from None
    if wrapper.nms_pre <= 0:
        raise DeployError('test_cfg.nms_pre must be positive for a deploy bundle (the graph '
                          'keeps the top nms_pre candidates of each level).')
    example = (torch.randn(1, 3, height, width), torch.tensor([height, width]),
               torch.tensor([1.0, 1.0], dtype=torch.float64))
    axes = _image_axes(mode)
    axes.update(boxes={0: 'detections'}, scores={0: 'detections'}, labels={0: 'detections'})
    path = osp.join(folder, 'end2end.onnx')
    _export(wrapper, example, path, ['image', 'img_shape', 'scale_factor'],
            ['boxes', 'scores', 'labels'], axes, opset)
    post = dict(score_thr=wrapper.score_thr, nms_pre=wrapper.nms_pre,
                iou_threshold=wrapper.iou_threshold, max_per_img=wrapper.max_per_img,
                min_bbox_size=wrapper.min_bbox_size,
                nms='class-offset' if wrapper.class_offsets else 'per-class',
                sigmoid=wrapper.sigmoid)
    return dict(graphs=dict(model=dict(file='end2end.onnx', **graphs.graph_io(path))),
                input=mode, postprocess=post)


def _export_segmentor(model, folder, spec, opset):
    test_cfg = model.test_cfg
    num_classes = int(model.decode_head.out_channels)
    if num_classes == 1:
        raise DeployError('Binary segmentors (out_channels=1, a sigmoid threshold) have no '
                          'deploy path yet.')
    try:
        graphs.replace_upsampling(model)
    except ValueError as err:
        raise DeployError(str(err)) from None
    replaced = graphs.replace_adaptive_pooling(model)
    wrapper = graphs.SegmentorGraph(model)
    align = wrapper.align_corners
    post = dict(mode=test_cfg.get('mode', 'whole'), num_classes=num_classes,
                align_corners=align, adaptive_pooling_replaced=replaced)
    path = osp.join(folder, 'end2end.onnx')
    divisor = max(int(spec['pad_size_divisor']), 1)
    if post['mode'] == 'slide':
        crop = tuple(int(s) for s in test_cfg.crop_size)
        post.update(crop_size=list(crop), stride=[int(s) for s in test_cfg.stride])
        mode = dict(mode='fixed', size=list(crop))
        _export(wrapper, (torch.randn(1, 3, *crop), ), path, ['image'], ['logits'], {}, opset)
        graphs.write_label_map_graph(osp.join(folder, 'postprocess.onnx'), num_classes, align,
                                     opset)
        files = dict(model=dict(file='end2end.onnx', **graphs.graph_io(path)),
                     postprocess=dict(file='postprocess.onnx', **graphs.graph_io(
                         osp.join(folder, 'postprocess.onnx'))))
        return dict(graphs=files, input=mode, postprocess=post)
    if post['mode'] != 'whole':
        raise DeployError(f'test_cfg.mode={post["mode"]!r} has no deploy path (whole, slide).')
    mode = _image_size_mode(spec, divisor)
    height, width = _trace_size(mode, divisor)
    _export(wrapper, (torch.randn(1, 3, height, width), ), path, ['image'], ['logits'],
            _image_axes(mode), opset)
    if mode['mode'] == 'dynamic':
        check_dynamic_size(wrapper, path, 'image', (height, width), divisor)
    graphs.append_label_map(path, 'logits', align)
    return dict(graphs=dict(model=dict(file='end2end.onnx', **graphs.graph_io(path))),
                input=mode, postprocess=post)


def _export_classifier(model, folder, spec, opset):
    divisor = max(int(spec['pad_size_divisor']), 1)
    mode = _image_size_mode(spec, divisor)
    height, width = _trace_size(mode, divisor)
    path = osp.join(folder, 'end2end.onnx')
    wrapper = graphs.ClassifierGraph(model)
    _export(wrapper, (torch.randn(1, 3, height, width), ), path, ['image'], ['scores'],
            _image_axes(mode), opset)
    if mode['mode'] == 'dynamic':
        check_dynamic_size(wrapper, path, 'image', (height, width), divisor)
    return dict(graphs=dict(model=dict(file='end2end.onnx', **graphs.graph_io(path))),
                input=mode, postprocess=dict(activation='softmax'))


def _export_recognizer(model, folder, spec, opset):
    steps = spec['steps']
    clip_len = num_clips = None
    for step in steps:
        if step['type'] in ('uniform_sample', 'sample_frames'):
            clip_len, num_clips = step['clip_len'], step['num_clips']
    size = fixed_pipeline_size(steps)
    if clip_len is None or size is None:
        raise DeployError('Video bundles need a test pipeline that samples frames '
                          '(UniformSample / SampleFrames) and ends in a fixed size (CenterCrop '
                          'or ThreeCrop).')
    views = num_clips * (3 if any(s['type'] == 'three_crop' for s in steps) else 1)
    average = model.cls_head.average_clips
    if average not in ('prob', 'score'):
        raise DeployError(f'cls_head.average_clips={average!r} has no deploy path (prob, '
                          'score).')
    # PyTorch's TorchScript exporter has no channels-last-3d; the graph has no memory
    # formats anyway (same values, another memory layout of the same computation).
    for module in model.modules():
        if getattr(module, 'spatial_dims', 2) == 3 and hasattr(module, 'set_channels_last'):
            module.set_channels_last(False)
    channels = 3
    example = torch.randn(views, channels, clip_len, *size)
    path = osp.join(folder, 'end2end.onnx')
    _export(graphs.RecognizerGraph(model), (example, ), path, ['clips'], ['scores'], {}, opset)
    return dict(graphs=dict(model=dict(file='end2end.onnx', **graphs.graph_io(path))),
                input=dict(mode='fixed', size=list(size), views=views, clip_len=clip_len),
                postprocess=dict(average_clips=average))


def _check_mobile(mobile: str, task: str, input_size, steps, cfg: Config) -> None:
    """Refuses a mobile program the bundle cannot hold, before anything is exported."""
    import importlib.util
    if mobile != 'executorch':
        raise DeployError(f'--mobile {mobile}: the mobile runtime is executorch.')
    if task == 'video':
        raise DeployError('--mobile executorch: video models have no ExecuTorch program (3-D '
                          'window attention); leave out --mobile.')
    slide = task == 'segmentation' and cfg.model.get('test_cfg', {}).get('mode') == 'slide'
    if input_size is None and fixed_pipeline_size(steps) is None and not slide:
        raise DeployError('--mobile executorch: an ExecuTorch program holds one input size '
                          'and this config\'s test pipeline gives images of any size; add '
                          '--input-size HxW.')
    if importlib.util.find_spec('executorch') is None:
        raise DeployError('--mobile executorch needs ExecuTorch, the mobile extra: run make '
                          'setup-mobile (or pip install -r requirements/mobile.txt).')


def config_name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def export_bundle(config: str, checkpoint: Optional[str], out: str,
                  input_size: Optional[Sequence[int]] = None, precision: str = 'fp32',
                  opset: int = DEFAULT_OPSET, trust_checkpoint: bool = False,
                  cfg: Optional[Config] = None, int8: Optional[Dict] = None, log=None,
                  mobile: Optional[str] = None):
    """Builds, loads, exports and writes a bundle; returns ``(manifest, model)``.

    ``model`` is the PyTorch model the graphs came from, in the mode they were exported
    in (deploy mode), for checking the bundle against it.

    Args:
        config (str): Config path or name.
        checkpoint (str, optional): Trained weights; None keeps the initialisation.
        out (str): Bundle folder (the overwrite rule is
            :func:`~emo_mm.deploy.bundle.check_output_folder`).
        input_size (tuple[int, int], optional): (H, W): a graph for this one size;
            each image is padded up to it after the test pipeline.
        precision (str): ``'fp32'`` or ``'int8'``.
        int8 (dict, optional): Options of :func:`quantize_bundle_graph` (``calib``,
            ``calib_split``, ``budget``, ``quant_format``, ``threads``) for int8.
        log (callable, optional): Progress lines of the int8 sensitivity pass.
        mobile (str, optional): ``'executorch'``: the bundle also holds the network as an
            ExecuTorch program for XNNPACK (:func:`emo_mm.deploy.mobile.export_bundle_program`;
            needs a fixed input size), in the bundle's precision (int8: calibrated on the
            int8 graph's files).
    """
    check_precision(precision)
    path = find_config(config)
    cfg = cfg if cfg is not None else load_config(path)
    task = task_of(cfg)
    bundle_io.check_output_folder(out)  # refuse early, before minutes of export
    try:
        steps = pipeline_spec(test_pipeline(cfg), task)
    except UnsupportedTransform as err:
        raise DeployError(str(err)) from None
    model = build_model(cfg, checkpoint, trust=trust_checkpoint)
    spec = dict(steps=steps, **normalization_spec(model, task))
    if input_size is not None:
        if task == 'video' or (task == 'segmentation'
                               and model.test_cfg.get('mode', 'whole') == 'slide'):
            raise DeployError('--input-size applies to image models with a whole-image '
                              'graph; video and slide-window bundles take the pipeline\'s '
                              'crop size.')
        fixed = fixed_pipeline_size(steps)
        if fixed is not None and tuple(fixed) != tuple(input_size):
            raise DeployError(f'--input-size {input_size[0]}x{input_size[1]} differs from the '
                              f'{fixed[0]}x{fixed[1]} images the test pipeline makes; omit it '
                              'or change the pipeline.')
        spec['pad_size'] = [int(input_size[0]), int(input_size[1])]
    if mobile is not None:
        _check_mobile(mobile, task, input_size, steps, cfg)
    checksum = bundle_io.sha256(checkpoint) if checkpoint else None
    with bundle_io.BundleWriter(out) as writer:
        exported = export_graphs(model, task, writer.tmp, spec, opset, precision)
        quantization = calibration = None
        if precision == 'int8':
            from .calibration import calibration_inputs
            int8 = dict(INT8_DEFAULTS, **(int8 or {}))
            # Read once: the int8 graph and the int8 mobile program calibrate on the same.
            calibration = calibration_inputs(cfg, task, spec, exported['postprocess'],
                                             int8['calib_split'], int8['calib'])
            model_graph = writer.path(exported['graphs']['model']['file'])
            quantization = quantize_bundle_graph(model_graph, cfg, task, spec,
                                                 exported['postprocess'], log=log,
                                                 calibration=calibration, **int8)
            exported['graphs']['model'].update(graphs.graph_io(model_graph))
        for entry in exported['graphs'].values():
            writer.add(entry['file'])
        mobile_entry = None
        if mobile is not None:
            from .mobile import export_bundle_program
            images = None
            if calibration is not None:
                images = [torch.from_numpy(feeds['image']) for feeds in calibration[0]]
            try:
                mobile_entry = export_bundle_program(model, task, exported['input'],
                                                     writer.tmp, precision=precision,
                                                     calibration=images)
            except AssertionError as err:  # the program differs from PyTorch
                raise DeployError(f'The ExecuTorch program does not reproduce the model: '
                                  f'{err}') from None
            writer.add(mobile_entry['file'])
        cfg.dump(writer.path('config.py'))
        writer.add('config.py')
        manifest = dict(
            format=bundle_io.FORMAT, format_version=bundle_io.FORMAT_VERSION,
            emo_mm_version=__version__, task=task, toolbox=resolve_scope(cfg),
            config=dict(name=config_name(path), file='config.py'),
            model_type=model_type(cfg),
            checkpoint=dict(file=osp.basename(checkpoint), sha256=checksum)
            if checkpoint else None,
            precision=precision, opset=opset, graphs=exported['graphs'],
            input=exported['input'], preprocess=spec, postprocess=exported['postprocess'],
            classes=class_names(cfg, model, task))
        if quantization is not None:
            manifest['quantization'] = quantization
        if mobile_entry is not None:
            manifest['mobile'] = mobile_entry
        writer.finish(manifest)
    return bundle_io.read_bundle(out), model


__all__ = ['export_bundle', 'build_model', 'task_of', 'DeployError']
