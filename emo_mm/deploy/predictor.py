"""Runs a deploy bundle with numpy, onnxruntime and OpenCV only: no torch, no OpenMMLab.

>>> from emo_mm.deploy import Predictor
>>> predictor = Predictor('bundles/retinanet')            # doctest: +SKIP
>>> result = predictor('demo.png')                        # doctest: +SKIP
>>> result['boxes'], result['scores'], result['labels'], result['classes']  # doctest: +SKIP

Inputs: an image file path or an (H, W, 3) uint8 array in BGR order (as ``cv2.imread``
returns it, and as the toolboxes' ``LoadImageFromFile`` decodes files); for video bundles a
video file path (read with OpenCV) or a (T, H, W, 3) uint8 array of all the video's frames
in BGR order (the bundle samples its clip from them as the test pipeline does).

Results (plain numpy):

* detection: ``boxes`` (N, 4) x1 y1 x2 y2 in pixels of the given image, ``scores`` (N,),
  ``labels`` (N,), ``classes`` (N names), sorted by score;
* segmentation: ``label_map`` (H, W) int64 class indices at the given image's size;
* classification, video: ``scores`` (k,) probabilities, ``labels`` (k,), ``classes`` (k
  names), the top ``topk`` classes by score.

``preprocess``, ``infer`` and ``postprocess`` are the three stages ``__call__`` chains, for
callers that time or batch them separately.
"""
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .bundle import graph_path, read_bundle
from .preprocess import ClipPreprocessor, ImagePreprocessor, check_image, read_image


def create_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session (``threads`` intra-op threads)."""
    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('onnxruntime is not installed: `pip install onnxruntime` to run '
                          'deploy bundles.') from error
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def slide_windows(height: int, width: int, crop_size: Sequence[int],
                  stride: Sequence[int]) -> List[tuple]:
    """mmseg's sliding-window grid: ``(y1, y2, x1, x2)`` per crop, row-major."""
    h_crop, w_crop = crop_size
    h_stride, w_stride = stride
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    windows = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, height), min(x1 + w_crop, width)
            windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))
    return windows


def slide_logits(score_crop: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray,
                 num_classes: int, crop_size: Sequence[int], stride: Sequence[int]) -> np.ndarray:
    """mmseg ``EncoderDecoder.slide_inference`` in numpy: crop logits summed in float32,
    in mmseg's order, then divided by how many crops cover each pixel.

    Args:
        score_crop: (1, C, h, w) crop -> (1, num_classes, h, w) logits at the crop's size.
        inputs: (1, C, H, W) preprocessed image.
    """
    _, _, height, width = inputs.shape
    preds = np.zeros((1, num_classes, height, width), np.float32)
    count = np.zeros((1, 1, height, width), np.float32)
    for y1, y2, x1, x2 in slide_windows(height, width, crop_size, stride):
        crop = np.ascontiguousarray(inputs[:, :, y1:y2, x1:x2])
        preds[:, :, y1:y2, x1:x2] += score_crop(crop)
        count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def graph_feeds(task: str, post: Dict, meta: Dict) -> List[Dict[str, np.ndarray]]:
    """The model graph's input dicts for one preprocessed image or clip (``meta``, from
    :class:`~.preprocess.ImagePreprocessor` or :class:`~.preprocess.ClipPreprocessor`):
    one dict, or one per crop for slide-window segmentors."""
    if task == 'detection':
        return [dict(image=meta['inputs'], img_shape=np.asarray(meta['img_shape'], np.int64),
                     scale_factor=np.asarray(meta['scale_factor'], np.float64))]
    if task == 'segmentation':
        if post.get('mode') == 'slide':
            _, _, height, width = meta['inputs'].shape
            return [dict(image=np.ascontiguousarray(meta['inputs'][:, :, y1:y2, x1:x2]))
                    for y1, y2, x1, x2 in slide_windows(height, width, post['crop_size'],
                                                        post['stride'])]
        return [dict(image=meta['inputs'], img_shape=np.asarray(meta['img_shape'], np.int64),
                     ori_shape=np.asarray(meta['ori_shape'], np.int64))]
    if task == 'video':
        return [dict(clips=meta['inputs'])]
    return [dict(image=meta['inputs'])]


class Predictor:
    """A bundle folder as a function from an image (or a video) to plain results.

    Args:
        bundle (str): The folder ``tools/deploy.py`` wrote.
        threads (int, optional): onnxruntime intra-op threads (default: its own choice).
        verify (bool): Check the files' checksums on loading. Defaults to True.
    """

    def __init__(self, bundle: str, threads: Optional[int] = None, verify: bool = True):
        self.manifest = read_bundle(bundle, verify=verify)
        self.task = self.manifest['task']
        self.classes = list(self.manifest.get('classes') or [])
        self.post = self.manifest['postprocess']
        self.session = create_session(graph_path(self.manifest, 'model'), threads)
        self.post_session = (create_session(graph_path(self.manifest, 'postprocess'), threads)
                             if 'postprocess' in self.manifest['graphs'] else None)
        spec = self.manifest['preprocess']
        self.preprocessor = (ClipPreprocessor(spec) if self.task == 'video' else
                             ImagePreprocessor(spec))

    def __repr__(self):
        return (f'Predictor({self.manifest["root"]!r}: {self.manifest.get("model_type")} '
                f'{self.task}, {len(self.classes)} classes)')

    # -- stages --------------------------------------------------------------------------
    def load(self, item) -> Union[np.ndarray, List[np.ndarray]]:
        """Decodes a path, or checks an array: an image, or a video's frames (BGR)."""
        if self.task == 'video':
            return self._load_video(item)
        if isinstance(item, (str, bytes)) or hasattr(item, '__fspath__'):
            path = str(item)
            if not osp.isfile(path):
                raise FileNotFoundError(f'{path} does not exist.')
            return check_image(read_image(path), path)
        return check_image(item)

    def preprocess(self, item) -> Dict:
        """Loads and preprocesses one input; returns ``inputs`` and the image metadata."""
        data = self.load(item)
        if self.task == 'video':
            # mmaction2's decoders give RGB frames; OpenCV and the documented array are BGR.
            return self.preprocessor([frame[..., ::-1] for frame in data])
        return self.preprocessor(data)

    def infer(self, meta: Dict) -> Dict[str, np.ndarray]:
        """Runs the graph(s) on a :meth:`preprocess` result; returns the raw outputs."""
        if self.task == 'segmentation' and self.post.get('mode') == 'slide':
            logits = slide_logits(
                lambda crop: self.session.run(None, {'image': crop})[0], meta['inputs'],
                self.post['num_classes'], self.post['crop_size'], self.post['stride'])
            return self._run(self.post_session, logits=logits,
                             img_shape=np.asarray(meta['img_shape'], np.int64),
                             ori_shape=np.asarray(meta['ori_shape'], np.int64))
        return self._run(self.session, **graph_feeds(self.task, self.post, meta)[0])

    def postprocess(self, outputs: Dict[str, np.ndarray], topk: Optional[int] = 5) -> Dict:
        """Raw graph outputs -> the documented result dict."""
        if self.task == 'detection':
            labels = outputs['labels'].astype(np.int64)
            return dict(boxes=outputs['boxes'], scores=outputs['scores'], labels=labels,
                        classes=[self._name(label) for label in labels])
        if self.task == 'segmentation':
            return dict(label_map=outputs['label_map'][0])
        scores = outputs['scores'].reshape(-1)
        order = np.argsort(-scores, kind='stable')[:topk]
        return dict(scores=scores[order], labels=order,
                    classes=[self._name(label) for label in order])

    def __call__(self, item, topk: Optional[int] = 5) -> Dict:
        """Image (or video) in, results out: :meth:`preprocess`, :meth:`infer`,
        :meth:`postprocess`. ``topk``: how many classes a classifier or video model
        returns (None: all, by score)."""
        return self.postprocess(self.infer(self.preprocess(item)), topk)

    # -- helpers -------------------------------------------------------------------------
    def _name(self, label) -> str:
        label = int(label)
        return self.classes[label] if 0 <= label < len(self.classes) else f'class {label}'

    @staticmethod
    def _run(session, **feeds) -> Dict[str, np.ndarray]:
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    def _load_video(self, item) -> List[np.ndarray]:
        if isinstance(item, (str, bytes)) or hasattr(item, '__fspath__'):
            return read_video(str(item))
        frames = item
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f'A clip array has shape (T, H, W, 3); got '
                                 f'{"x".join(map(str, frames.shape))}.')
            frames = list(frames)
        if not frames:
            raise ValueError('The clip has no frames.')
        return [check_image(frame, f'frame {i}') for i, frame in enumerate(frames)]


def read_video(path: str) -> List[np.ndarray]:
    """All frames of a video file, BGR, decoded with OpenCV."""
    import cv2
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} does not exist.')
    capture = cv2.VideoCapture(path)
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError(f'{path} is not a video OpenCV can decode (no frames read).')
    return frames
