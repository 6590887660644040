"""The test pipelines' transforms, re-implemented with numpy and OpenCV (no torch, no mmcv).

A bundle stores its preprocessing as a list of steps (:func:`pipeline_spec` converts a
config's test pipeline; a transform with no step here is an error that names it) plus the
data preprocessor's normalisation and padding. :class:`ImagePreprocessor` and
:class:`ClipPreprocessor` replay them on a decoded image or clip and produce exactly the
tensor the toolbox's pipeline and data preprocessor give the network (the same OpenCV or
Pillow calls, the same rounding, float32 normalisation in the same order), together with
the image metadata the post-processing needs.

Steps (``type`` and fields):

* ``resize``: mmcv / mmdet / mmseg ``Resize``: ``scale`` (w, h) or ``scale_factor``,
  ``keep_ratio``, ``interpolation``, ``backend`` (``cv2`` or ``pillow``);
* ``resize_edge``: mmpretrain ``ResizeEdge`` (``scale``, ``edge``);
* ``center_crop``: mmcv ``CenterCrop`` (``crop_size`` (w, h));
* video (mmaction2): ``uniform_sample`` / ``sample_frames`` (test mode), ``video_resize``
  (mmaction2's ``Resize``), ``video_center_crop``, ``three_crop``.
"""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

#: Transforms that only load annotations or pack results: nothing to do on a device.
IGNORED = {
    'LoadAnnotations', 'PackDetInputs', 'PackSegInputs', 'PackInputs', 'PackClsInputs',
    'PackActionInputs'
}
#: Image loaders (the predictor decodes with OpenCV, as mmcv's default backend does).
IMAGE_LOADERS = {'LoadImageFromFile', 'mmdet.LoadImageFromFile', 'mmseg.LoadImageFromFile'}
#: Video readers and decoders (the predictor reads frames with OpenCV).
VIDEO_LOADERS = {'DecordInit', 'DecordDecode', 'OpenCVInit', 'OpenCVDecode', 'PyAVInit',
                 'PyAVDecode'}

#: OpenCV's interpolation flags by mmcv's names (cv2 is imported lazily).
_CV2_CODES = {'nearest': 'INTER_NEAREST', 'bilinear': 'INTER_LINEAR', 'bicubic': 'INTER_CUBIC',
              'area': 'INTER_AREA', 'lanczos': 'INTER_LANCZOS4'}
_PIL_CODES = {'nearest': 'NEAREST', 'bilinear': 'BILINEAR', 'bicubic': 'BICUBIC',
              'box': 'BOX', 'lanczos': 'LANCZOS', 'hamming': 'HAMMING'}


class UnsupportedTransform(ValueError):
    """A test-pipeline transform the bundle's preprocessing cannot replay."""


def _strip_scope(name: str) -> str:
    return name.split('.', 1)[1] if '.' in name else name


def _pair(value) -> Tuple:
    return (value, value) if isinstance(value, (int, float)) else tuple(value)


def pipeline_spec(pipeline: Sequence[Dict], task: str) -> List[Dict]:
    """Converts a config's test pipeline to the bundle's steps.

    Raises:
        UnsupportedTransform: A transform with no device-side equivalent, named.
    """
    steps = []
    video = task == 'video'
    for transform in pipeline:
        kind = str(transform.get('type'))
        short = _strip_scope(kind)
        if kind in IGNORED or short in IGNORED:
            continue
        if not video and (kind in IMAGE_LOADERS or short == 'LoadImageFromFile'):
            color = transform.get('color_type', 'color')
            backend = transform.get('imdecode_backend', 'cv2')
            if color != 'color' or backend != 'cv2' or transform.get('to_float32', False):
                raise UnsupportedTransform(
                    f'{kind}(color_type={color!r}, imdecode_backend={backend!r}, to_float32='
                    f'{transform.get("to_float32", False)}) has no deploy path: bundles read '
                    "colour images with OpenCV (color_type='color', imdecode_backend='cv2').")
            continue
        if video and short in VIDEO_LOADERS:
            continue
        if video:
            steps.append(_video_step(transform, short))
        else:
            steps.append(_image_step(transform, short))
    return steps


def _image_step(transform: Dict, short: str) -> Dict:
    interpolation = transform.get('interpolation', 'bilinear')
    backend = transform.get('backend', 'cv2')
    if short == 'Resize':
        scale, factor = transform.get('scale'), transform.get('scale_factor')
        if scale is not None and isinstance(scale, list):
            raise UnsupportedTransform(f'Resize(scale={scale}) is a list: test-time multi-scale '
                                       'has no deploy path; give one (w, h) tuple.')
        return dict(type='resize', scale=None if scale is None else list(_pair(scale)),
                    scale_factor=None if factor is None else list(_pair(factor)),
                    keep_ratio=bool(transform.get('keep_ratio', False)),
                    interpolation=interpolation, backend=backend)
    if short == 'ResizeEdge':
        return dict(type='resize_edge', scale=int(transform['scale']),
                    edge=transform.get('edge', 'short'), interpolation=interpolation,
                    backend=backend)
    if short == 'CenterCrop':
        if transform.get('auto_pad', False):
            raise UnsupportedTransform('CenterCrop(auto_pad=True) has no deploy path.')
        return dict(type='center_crop', crop_size=list(_pair(transform['crop_size'])))
    raise UnsupportedTransform(f'The test pipeline\'s {transform.get("type")} has no deploy '
                               'path (bundles replay LoadImageFromFile, Resize, ResizeEdge and '
                               'CenterCrop); change the pipeline or extend '
                               'emo_mm/deploy/preprocess.py.')


def _video_step(transform: Dict, short: str) -> Dict:
    if short in ('UniformSample', 'UniformSampleFrames'):
        if not transform.get('test_mode', False):
            raise UnsupportedTransform(f'{short} without test_mode=True samples at random; '
                                       'the test pipeline must use test_mode=True.')
        return dict(type='uniform_sample', clip_len=int(transform['clip_len']),
                    num_clips=int(transform.get('num_clips', 1)))
    if short == 'SampleFrames':
        if not transform.get('test_mode', False):
            raise UnsupportedTransform('SampleFrames without test_mode=True samples at random; '
                                       'the test pipeline must use test_mode=True.')
        extra = {k for k, v in transform.items() if v} - {
            'type', 'clip_len', 'frame_interval', 'num_clips', 'test_mode', 'out_of_bound_opt'}
        if extra or transform.get('out_of_bound_opt', 'loop') != 'loop':
            raise UnsupportedTransform(f'SampleFrames options {sorted(extra)} have no deploy '
                                       'path.')
        return dict(type='sample_frames', clip_len=int(transform['clip_len']),
                    frame_interval=int(transform.get('frame_interval', 1)),
                    num_clips=int(transform.get('num_clips', 1)))
    if short == 'Resize':
        scale = transform['scale']
        if isinstance(scale, float):
            raise UnsupportedTransform('Resize(scale=<float>) has no deploy path for video; '
                                       'give a (w, h) tuple.')
        return dict(type='video_resize', scale=list(_pair(scale)),
                    keep_ratio=bool(transform.get('keep_ratio', True)),
                    interpolation=transform.get('interpolation', 'bilinear'))
    if short == 'CenterCrop':
        return dict(type='video_center_crop', crop_size=list(_pair(transform['crop_size'])))
    if short == 'ThreeCrop':
        return dict(type='three_crop', crop_size=list(_pair(transform['crop_size'])))
    if short == 'FormatShape':
        if transform.get('input_format') != 'NCTHW':
            raise UnsupportedTransform(f'FormatShape(input_format='
                                       f'{transform.get("input_format")!r}) has no deploy path '
                                       '(bundles take NCTHW clips).')
        return dict(type='format_ncthw')
    raise UnsupportedTransform(f'The test pipeline\'s {transform.get("type")} has no deploy '
                               'path (video bundles replay UniformSample / SampleFrames, '
                               'Resize, CenterCrop, ThreeCrop and FormatShape NCTHW); change '
                               'the pipeline or extend emo_mm/deploy/preprocess.py.')


# ---------------------------------------------------------------------------------------
# mmcv's image geometry, exactly.
# ---------------------------------------------------------------------------------------
def scale_size(size: Tuple[int, int], scale) -> Tuple[int, int]:
    """mmcv ``_scale_size``: (w, h) times a factor, rounded half up."""
    if isinstance(scale, (float, int)):
        scale = (scale, scale)
    w, h = size
    return int(w * float(scale[0]) + 0.5), int(h * float(scale[1]) + 0.5)


def rescale_size(old_size: Tuple[int, int], scale) -> Tuple[int, int]:
    """mmcv ``rescale_size``: the largest (w, h) within ``scale`` keeping the aspect ratio."""
    w, h = old_size
    if isinstance(scale, (float, int)):
        factor = scale
    else:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return scale_size((w, h), factor)


def imresize(img: np.ndarray, size: Tuple[int, int], interpolation: str = 'bilinear',
             backend: str = 'cv2') -> np.ndarray:
    """mmcv ``imresize`` to (w, h) with OpenCV or Pillow."""
    size = (int(size[0]), int(size[1]))
    if backend == 'pillow':
        from PIL import Image  # only bundles whose pipeline resizes with Pillow need it
        codes = getattr(Image, 'Resampling', Image)
        return np.array(Image.fromarray(img).resize(size, getattr(codes,
                                                                  _PIL_CODES[interpolation])))
    if backend != 'cv2':
        raise ValueError(f'resize backend {backend!r} is not supported (cv2, pillow).')
    import cv2
    return cv2.resize(img, size, interpolation=getattr(cv2, _CV2_CODES[interpolation]))


def center_crop_box(height: int, width: int, crop_w: int, crop_h: int) -> Tuple[int, ...]:
    """mmcv ``CenterCrop``'s (x1, y1, x2, y2) slice bounds (end exclusive)."""
    y1 = max(0, int(round((height - crop_h) / 2.)))
    x1 = max(0, int(round((width - crop_w) / 2.)))
    y2 = min(height, y1 + crop_h)
    x2 = min(width, x1 + crop_w)
    return x1, y1, x2, y2


def apply_image_step(step: Dict, img: np.ndarray, meta: Dict) -> np.ndarray:
    """Applies one image step; updates ``meta`` (``img_shape``, ``scale_factor``)."""
    kind = step['type']
    h, w = img.shape[:2]
    if kind == 'resize':
        scale = step['scale']
        target = tuple(scale) if scale is not None else scale_size((w, h), step['scale_factor'])
        if step['keep_ratio']:
            img = imresize(img, rescale_size((w, h), target), step['interpolation'],
                           step['backend'])
        else:
            img = imresize(img, target, step['interpolation'], step['backend'])
        new_h, new_w = img.shape[:2]
        # mmcv's Resize replaces an earlier scale_factor (it does not multiply it).
        meta['scale_factor'] = (new_w / w, new_h / h)
    elif kind == 'resize_edge':
        edge, size = step['edge'], step['scale']
        if (edge == 'short' and w < h) or (edge == 'long' and w > h) or edge == 'width':
            target = (size, int(size * h / w))
        else:
            target = (int(size * w / h), size)
        img = imresize(img, target, step['interpolation'], step['backend'])
        meta['scale_factor'] = (target[0] / w, target[1] / h)
    elif kind == 'center_crop':
        crop_w, crop_h = step['crop_size']
        x1, y1, x2, y2 = center_crop_box(h, w, crop_w, crop_h)
        img = img[y1:y2, x1:x2]
    else:
        raise ValueError(f'unknown image preprocessing step {kind!r} in the bundle.')
    meta['img_shape'] = img.shape[:2]
    return img


def check_image(image: np.ndarray, source: str = 'image') -> np.ndarray:
    """A decoded image as an (H, W, 3) uint8 array, or a clear error."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f'{source}: expected a file path or an (H, W, 3) uint8 numpy array, '
                        f'got {type(image).__name__}.')
    if image.ndim != 3 or image.shape[2] != 3:
        shape = 'x'.join(map(str, image.shape))
        raise ValueError(f'{source} has shape {shape}; the model takes 3-channel colour images '
                         '(H, W, 3), BGR as cv2.imread returns them. Convert grey or RGBA '
                         'images first, e.g. cv2.cvtColor(img, cv2.COLOR_GRAY2BGR).')
    if image.dtype != np.uint8:
        raise ValueError(f'{source} has dtype {image.dtype}; give uint8 pixels (0-255).')
    if min(image.shape[:2]) < 1:
        raise ValueError(f'{source} is empty ({image.shape[0]}x{image.shape[1]} pixels).')
    return image


def read_image(path: str) -> np.ndarray:
    """Decodes an image file as mmcv's ``LoadImageFromFile`` does (OpenCV, BGR, colour)."""
    import cv2
    with open(path, 'rb') as f:
        data = np.frombuffer(f.read(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f'{path} is not an image OpenCV can decode (PNG, JPEG, BMP, ...).')
    return image


class Normalizer:
    """The data preprocessor's part: channel order, (x - mean) / std in float32, padding.

    Args:
        spec (dict): ``mean``, ``std``, ``bgr_to_rgb``, ``pad_size_divisor``,
            ``pad_size`` ((H, W) or None), ``pad_value``.
    """

    def __init__(self, spec: Dict):
        self.mean = np.asarray(spec['mean'], np.float32) if spec.get('mean') else None
        self.std = np.asarray(spec['std'], np.float32) if spec.get('std') else None
        self.bgr_to_rgb = bool(spec.get('bgr_to_rgb', False))
        self.divisor = int(spec.get('pad_size_divisor') or 1)
        self.size = spec.get('pad_size')
        self.value = float(spec.get('pad_value', 0))

    def normalize(self, img: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8 -> (C, H, W) float32, normalised like the toolbox does it."""
        x = np.ascontiguousarray(img.transpose(2, 0, 1))
        if self.bgr_to_rgb:
            x = x[::-1]
        x = x.astype(np.float32)
        if self.mean is not None:
            x = (x - self.mean.reshape(-1, 1, 1)) / self.std.reshape(-1, 1, 1)
        return x

    def padded_size(self, height: int, width: int) -> Tuple[int, int]:
        if self.size is not None:
            return int(self.size[0]), int(self.size[1])
        d = self.divisor
        return int(math.ceil(height / d)) * d, int(math.ceil(width / d)) * d

    def pad(self, x: np.ndarray) -> np.ndarray:
        """Pads (C, H, W) on the bottom and right, as mmengine's ``stack_batch`` does."""
        height, width = x.shape[-2:]
        target_h, target_w = self.padded_size(height, width)
        if target_h < height or target_w < width:
            raise ValueError(f'The preprocessed image is {height}x{width}, larger than the '
                             f'bundle\'s fixed input size {target_h}x{target_w}.')
        if (target_h, target_w) == (height, width):
            return x
        out = np.full((*x.shape[:-2], target_h, target_w), self.value, np.float32)
        out[..., :height, :width] = x
        return out


class ImagePreprocessor:
    """Replays a bundle's image steps and normalisation on one decoded image."""

    def __init__(self, spec: Dict):
        self.steps = spec['steps']
        self.normalizer = Normalizer(spec)

    def __call__(self, image: np.ndarray) -> Dict:
        """Returns ``inputs`` (1, 3, H, W) float32 and ``ori_shape``, ``img_shape``,
        ``pad_shape`` ((H, W) each) and ``scale_factor`` ((w, h) floats)."""
        meta = dict(ori_shape=image.shape[:2], img_shape=image.shape[:2],
                    scale_factor=(1.0, 1.0))
        img = image
        for step in self.steps:
            img = apply_image_step(step, img, meta)
        x = self.normalizer.pad(self.normalizer.normalize(img))
        meta['pad_shape'] = x.shape[-2:]
        meta['inputs'] = x[None]
        return meta


# ---------------------------------------------------------------------------------------
# Video (mmaction2 1.2.0's test transforms).
# ---------------------------------------------------------------------------------------
def uniform_sample_indices(num_frames: int, clip_len: int, num_clips: int) -> np.ndarray:
    """mmaction2 ``UniformSample`` in test mode: clip ``k`` takes, from each of
    ``clip_len`` equal segments, the frame ``k + 1`` sub-steps into it."""
    seg_size = float(num_frames - 1) / clip_len
    duration = seg_size / (num_clips + 1)
    inds = [int(np.round(seg_size * i)) + int(duration * (k + 1)) for k in range(num_clips)
            for i in range(clip_len)]
    return np.array(inds)


def sample_frames_indices(num_frames: int, clip_len: int, frame_interval: int,
                          num_clips: int) -> np.ndarray:
    """mmaction2 ``SampleFrames`` in test mode (no ``twice_sample``, ``target_fps`` or
    jitter; out-of-bound indices loop)."""
    ori_clip_len = (clip_len - 1) * frame_interval + 1
    if clip_len == 1:
        avg_interval = num_frames / float(num_clips)
        clip_offsets = np.arange(num_clips) * avg_interval + avg_interval / 2.0
    else:
        max_offset = max(num_frames - ori_clip_len, 0)
        if num_clips > 1:
            clip_offsets = np.round(np.arange(num_clips) * (max_offset / float(num_clips - 1)))
        else:
            clip_offsets = np.array([max_offset // 2])
    frame_inds = clip_offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    frame_inds = np.mod(np.concatenate(frame_inds).reshape((-1, clip_len)), num_frames)
    return np.concatenate(frame_inds).astype(np.int32)


class ClipPreprocessor:
    """Replays a video bundle's steps on the frames of one video.

    Frames are RGB (as mmaction2's decoders return them); :meth:`__call__` returns
    ``inputs`` (num_views, C, T, H, W) float32.
    """

    def __init__(self, spec: Dict):
        self.steps = spec['steps']
        self.normalizer = Normalizer(spec)

    def sample(self, num_frames: int) -> np.ndarray:
        for step in self.steps:
            if step['type'] == 'uniform_sample':
                return uniform_sample_indices(num_frames, step['clip_len'], step['num_clips'])
            if step['type'] == 'sample_frames':
                return sample_frames_indices(num_frames, step['clip_len'],
                                             step['frame_interval'], step['num_clips'])
        raise ValueError('The bundle has no frame-sampling step.')

    def __call__(self, frames: Sequence[np.ndarray]) -> Dict:
        indices = self.sample(len(frames))
        imgs = [frames[i] for i in indices]
        clip_len = num_clips = None
        for step in self.steps:
            kind = step['type']
            if kind in ('uniform_sample', 'sample_frames'):
                clip_len, num_clips = step['clip_len'], step['num_clips']
            elif kind == 'video_resize':
                imgs = _video_resize(imgs, step)
            elif kind == 'video_center_crop':
                crop_w, crop_h = step['crop_size']
                h, w = imgs[0].shape[:2]
                left, top = (w - crop_w) // 2, (h - crop_h) // 2
                imgs = [img[top:top + crop_h, left:left + crop_w] for img in imgs]
            elif kind == 'three_crop':
                imgs = _three_crop(imgs, step['crop_size'])
            elif kind == 'format_ncthw':
                pass
            else:
                raise ValueError(f'unknown video preprocessing step {kind!r} in the bundle.')
        # FormatShape NCTHW: (M * num_clips * T, H, W, C) -> (M * num_clips, C, T, H, W)
        stack = np.stack(imgs)
        stack = stack.reshape((-1, num_clips, clip_len) + stack.shape[1:])
        stack = stack.transpose(0, 1, 5, 2, 3, 4)
        stack = stack.reshape((-1, ) + stack.shape[2:])
        views = np.stack([self._normalize(view) for view in stack])
        return dict(inputs=views, frame_inds=indices)

    def _normalize(self, view: np.ndarray) -> np.ndarray:
        # (C, T, H, W): float32, then (x - mean) / std per channel, as mmaction2 does.
        x = view[::-1] if self.normalizer.bgr_to_rgb else view
        x = x.astype(np.float32)
        if self.normalizer.mean is not None:
            x = (x - self.normalizer.mean.reshape(-1, 1, 1, 1)) / self.normalizer.std.reshape(
                -1, 1, 1, 1)
        return x


def _video_resize(imgs: List[np.ndarray], step: Dict) -> List[np.ndarray]:
    """mmaction2 ``Resize``: (w, h) scale; -1 on one side keeps the ratio."""
    scale = step['scale']
    h, w = imgs[0].shape[:2]
    keep_ratio = step['keep_ratio']
    if isinstance(scale, (list, tuple)):
        max_long_edge, max_short_edge = max(scale), min(scale)
        if max_short_edge == -1:
            scale = (np.inf, max_long_edge)
    if keep_ratio:
        new_w, new_h = rescale_size((w, h), tuple(scale))
    else:
        new_w, new_h = scale
    return [imresize(img, (new_w, new_h), step['interpolation']) for img in imgs]


def _three_crop(imgs: List[np.ndarray], crop_size) -> List[np.ndarray]:
    """mmaction2 ``ThreeCrop``: three crops along the longer side."""
    crop_w, crop_h = crop_size
    img_h, img_w = imgs[0].shape[:2]
    assert crop_h == img_h or crop_w == img_w
    if crop_h == img_h:
        w_step = (img_w - crop_w) // 2
        offsets = [(0, 0), (2 * w_step, 0), (w_step, 0)]
    else:
        h_step = (img_h - crop_h) // 2
        offsets = [(0, 0), (0, 2 * h_step), (0, h_step)]
    cropped = []
    for x_offset, y_offset in offsets:
        cropped.extend(img[y_offset:y_offset + crop_h, x_offset:x_offset + crop_w]
                       for img in imgs)
    return cropped
