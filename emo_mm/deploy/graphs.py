"""The exported graphs: a trained model's network with its task's test-time computation.

Each wrapper is an ``nn.Module`` that does, with traceable tensor operations, what the
toolbox's ``predict`` does after the data preprocessor, so that one ONNX graph takes the
preprocessed image and returns the final results:

* :class:`DetectorGraph`: backbone, neck, head, then mmdet's ``predict_by_feat`` with
  ``rescale=True`` (per-level scores and top ``nms_pre``, anchor grid, box decoding,
  clipping, rescaling, small-box filter, NMS in mmcv's ``batched_nms`` manner);
* :class:`SegmentorGraph`: the network and the resize to the input size; the crop to
  ``img_shape``, the resize to the original size and the arg-max are ONNX nodes appended
  after export (:func:`append_label_map`), as their sizes are graph inputs;
* :class:`ClassifierGraph`: class probabilities (mmpretrain's ``pred_score``);
* :class:`RecognizerGraph`: a clip's views -> class scores averaged as mmaction2 does.
"""
from typing import List, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: Score given to padded or filtered candidates: below any score threshold (>= 0).
_NO_SCORE = -1.0


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 11) with a PyTorch body for tracing.

    ``boxes`` (1, M, 4), ``scores`` (1, C, M) -> selected (K, 3) int64 rows ``(batch,
    class, box)``, per class in descending score order. A box is suppressed when its IoU
    with a kept box of its class exceeds ``iou_threshold``; boxes scoring at most
    ``score_threshold`` are dropped first (onnxruntime's rule, as mmcv's ``score > thr``).
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_output: int, iou_threshold: float,
                score_threshold: float):
        from torchvision.ops import nms
        rows = []
        for cls in range(scores.shape[1]):
            class_scores = scores[0, cls]
            candidates = (class_scores > score_threshold).nonzero().view(-1)
            order = nms(boxes[0, candidates], class_scores[candidates], iou_threshold)
            kept = candidates[order[:max_output]]
            rows.append(torch.stack([torch.zeros_like(kept), torch.full_like(kept, cls), kept],
                                    dim=1))
        return torch.cat(rows) if rows else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_output, iou_threshold, score_threshold):
        def constant(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))

        return g.op('NonMaxSuppression', boxes, scores, constant(max_output, torch.long),
                    constant(iou_threshold, torch.float), constant(score_threshold, torch.float),
                    center_point_box_i=0)


def nms(boxes: torch.Tensor, scores: torch.Tensor, max_output: int, iou_threshold: float,
        score_threshold: float) -> torch.Tensor:
    return NonMaxSuppression.apply(boxes, scores, int(max_output), float(iou_threshold),
                                   float(score_threshold))


class DetectorGraph(nn.Module):
    """Image -> boxes in original-image pixels, scores, labels (batch 1).

    Inputs: ``image`` (1, 3, H, W) as the data preprocessor outputs it, ``img_shape``
    (2,) int64 (h, w) of the resized image before padding, ``scale_factor`` (2,) float64
    (w, h) of the test pipeline's resize. Outputs: ``boxes`` (K, 4), ``scores`` (K,),
    ``labels`` (K,) int64, by descending score, at most ``max_per_img``.

    Args:
        detector: An mmdet single-stage detector with an anchor head (RetinaHead,
            SSDHead) and a DeltaXYWHBBoxCoder.
        split_thr (int): mmcv's ``batched_nms`` threshold: with fewer candidates it runs
            one NMS on class-offset boxes, otherwise one NMS per class.
    """

    def __init__(self, detector: nn.Module, split_thr: int = 10000):
        super().__init__()
        self.detector = detector
        head = detector.bbox_head
        cfg = head.test_cfg
        self.sigmoid = bool(head.use_sigmoid_cls)
        self.num_classes = int(head.num_classes)
        self.cls_out_channels = int(head.cls_out_channels)
        coder = head.bbox_coder
        clamped = getattr(coder, 'add_ctr_clamp', False)
        if type(coder).__name__ != 'DeltaXYWHBBoxCoder' or clamped:
            raise ValueError(f'{type(coder).__name__} (add_ctr_clamp='
                             f'{getattr(coder, "add_ctr_clamp", None)}) has no deploy path; '
                             'detector graphs decode with DeltaXYWHBBoxCoder.')
        if getattr(getattr(head, 'loss_cls', None), 'custom_cls_channels', False):
            raise ValueError('A classification loss with custom channels has no deploy path.')
        self.register_buffer('means', torch.tensor(coder.means, dtype=torch.float32).view(1, -1),
                             persistent=False)
        self.register_buffer('stds', torch.tensor(coder.stds, dtype=torch.float32).view(1, -1),
                             persistent=False)
        self.clip_border = bool(coder.clip_border)
        self.max_ratio = float(np.abs(np.log(16 / 1000)))
        generator = head.prior_generator
        self.strides = [tuple(float(s) for s in stride) for stride in generator.strides]
        for level, anchors in enumerate(generator.base_anchors):
            self.register_buffer(f'base_anchors{level}', anchors.float().clone(),
                                 persistent=False)
        self.num_levels = len(generator.base_anchors)
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.score_thr = float(cfg.get('score_thr', 0.))
        self.iou_threshold = float(cfg.nms.iou_threshold)
        self.max_per_img = int(cfg.get('max_per_img', -1))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        split_thr = int(cfg.nms.get('split_thr', split_thr))
        self.class_offsets = self.nms_pre * self.num_levels < split_thr

    def grid_anchors(self, level: int, height, width, dtype) -> torch.Tensor:
        """mmdet's ``AnchorGenerator.single_level_grid_priors`` with the map size traced."""
        base = getattr(self, f'base_anchors{level}').to(dtype)
        stride_w, stride_h = self.strides[level]
        shift_x = torch.arange(0, width, device=base.device).to(dtype) * stride_w
        shift_y = torch.arange(0, height, device=base.device).to(dtype) * stride_h
        # Row-major grid (y outer, x inner) as mmdet's _meshgrid; + 0 * ... broadcasts
        # exactly (no shape arithmetic in the graph).
        xx = (shift_x[None, :] + 0 * shift_y[:, None]).reshape(-1)
        yy = (shift_y[:, None] + 0 * shift_x[None, :]).reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)

    def decode(self, anchors: torch.Tensor, deltas: torch.Tensor,
               img_shape: torch.Tensor) -> torch.Tensor:
        """mmdet's ``delta2bbox`` (same operations in the same order) and clipping."""
        denorm = deltas * self.stds + self.means
        dxy, dwh = denorm[:, :2], denorm[:, 2:]
        pxy = (anchors[:, :2] + anchors[:, 2:]) * 0.5
        pwh = anchors[:, 2:] - anchors[:, :2]
        dxy_wh = pwh * dxy
        dwh = dwh.clamp(min=-self.max_ratio, max=self.max_ratio)
        gxy = pxy + dxy_wh
        gwh = pwh * dwh.exp()
        boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
        if self.clip_border:
            size = img_shape.to(boxes.dtype)
            bound = torch.stack([size[1], size[0], size[1], size[0]])
            boxes = torch.min(torch.clamp(boxes, min=0), bound)
        return boxes

    def forward(self, image: torch.Tensor, img_shape: torch.Tensor,
                scale_factor: torch.Tensor):
        feats = self.detector.extract_feat(image)
        cls_scores, bbox_preds = self.detector.bbox_head(feats)[:2]
        all_scores, all_labels, all_boxes = [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            height, width = cls_score.shape[-2:]
            logits = cls_score[0].permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            scores = logits.sigmoid() if self.sigmoid else logits.softmax(-1)[:, :-1]
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
            anchors = self.grid_anchors(level, height, width, logits.dtype)
            # Top nms_pre (anchor, class) pairs; padding makes every level hold at least
            # nms_pre pairs, so k is a constant (the pads score below any threshold).
            pad_rows = (self.nms_pre - 1) // self.num_classes + 1
            flat = torch.cat([scores.reshape(-1),
                              scores.new_full((pad_rows * self.num_classes, ), _NO_SCORE)])
            top, index = flat.topk(self.nms_pre)
            rows = torch.div(index, self.num_classes, rounding_mode='floor')
            labels = index - rows * self.num_classes
            deltas = torch.cat([deltas, deltas.new_zeros((pad_rows, 4))])[rows]
            anchors = torch.cat([anchors, anchors.new_zeros((pad_rows, 4))])[rows]
            all_scores.append(top)
            all_labels.append(labels)
            all_boxes.append(self.decode(anchors, deltas, img_shape))
        scores = torch.cat(all_scores)
        labels = torch.cat(all_labels)
        boxes = torch.cat(all_boxes)
        # rescale=True: mmdet multiplies by 1 / scale_factor (computed in double) before NMS.
        inverse = (1.0 / scale_factor).to(boxes.dtype)
        boxes = boxes * torch.cat([inverse, inverse])[None, :]
        valid = scores > self.score_thr
        if self.min_bbox_size >= 0:
            widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            sized = (widths > self.min_bbox_size) & (heights > self.min_bbox_size)
            valid = valid & sized
            scores_nms = torch.where(sized, scores, torch.full_like(scores, _NO_SCORE))
        else:
            scores_nms = scores
        if self.class_offsets:
            keep = self._offset_nms(boxes, scores_nms, labels, valid)
        else:
            keep = self._per_class_nms(boxes, scores_nms, labels)
        return boxes[keep], scores[keep], labels[keep]

    def _offset_nms(self, boxes, scores, labels, valid):
        """mmcv ``batched_nms`` below ``split_thr``: one NMS on boxes shifted per class by
        (largest coordinate of the candidates + 1)."""
        lowest = torch.full_like(boxes[:, 0], torch.finfo(boxes.dtype).min)
        max_coordinate = torch.where(valid, boxes.max(dim=1)[0], lowest).max()
        offsets = labels.to(boxes.dtype) * (max_coordinate + 1)
        shifted = boxes + offsets[:, None]
        selected = nms(shifted[None], scores[None, None], self._max_output(), self.iou_threshold,
                       self.score_thr)
        return selected[:, 2]

    def _per_class_nms(self, boxes, scores, labels):
        """mmcv ``batched_nms`` from ``split_thr`` up: one NMS per class, then all kept
        boxes by score (top ``max_per_img``)."""
        classes = torch.arange(self.num_classes, device=labels.device)
        per_class = torch.where(labels[None, :] == classes[:, None], scores[None, :],
                                torch.full_like(scores, _NO_SCORE)[None, :])
        selected = nms(boxes[None], per_class[None], self._max_output(), self.iou_threshold,
                       self.score_thr)
        kept = selected[:, 2]
        limit = self._max_output()
        padded = torch.cat([scores[kept], scores.new_full((limit, ), _NO_SCORE)])
        top, order = padded.topk(limit)
        order = order[top > self.score_thr]
        return kept[order]

    def _max_output(self) -> int:
        return self.max_per_img if self.max_per_img > 0 else self.nms_pre * self.num_levels


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two pooling matrices computed from the input's size.

    Bins are torch's (start ``floor(i * n / k)``, end ``ceil((i + 1) * n / k)``); the
    average is a matrix product, so the exported graph takes any input size (ONNX has no
    adaptive pooling, and PyTorch's exporter handles it only for sizes divisible by the
    output size).
    """

    def __init__(self, output_size):
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        self.output_size = tuple(int(s) for s in size)

    @staticmethod
    def pooling_matrix(bins: int, size, like: torch.Tensor) -> torch.Tensor:
        index = torch.arange(bins, device=like.device)
        start = torch.div(index * size, bins, rounding_mode='floor')
        end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode='floor')
        position = torch.arange(size, device=like.device)
        inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
        return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        rows = self.pooling_matrix(self.output_size[0], height, x)
        cols = self.pooling_matrix(self.output_size[1], width, x)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def replace_adaptive_pooling(model: nn.Module) -> List[str]:
    """Swaps every ``nn.AdaptiveAvgPool2d`` with an output size other than 1 for
    :class:`ExportableAdaptiveAvgPool2d` (in place); returns the replaced names."""
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d):
                size = child.output_size
                sizes = (size, size) if isinstance(size, int) else tuple(size)
                if sizes != (1, 1):
                    setattr(module, child_name, ExportableAdaptiveAvgPool2d(sizes))
                    replaced.append(f'{name}.{child_name}' if name else child_name)
    return replaced


class TraceableUpsample(nn.Module):
    """mmseg's ``Upsample`` (``resize`` to ``int(size * scale_factor)``) with the output
    size kept a function of the input's size when traced: ``int()`` would freeze the trace
    size into the graph. Integer factors only (the model zoo's are 2)."""

    def __init__(self, upsample: nn.Module):
        super().__init__()
        factor = upsample.scale_factor
        factors = factor if isinstance(factor, tuple) else (factor, factor)
        if upsample.size is None and not all(float(f).is_integer() for f in factors):
            raise ValueError(f'Upsample(scale_factor={factor}) has no traceable form here; '
                             'only integer factors export with dynamic sizes.')
        self.size = upsample.size
        self.factors = tuple(int(f) for f in factors) if upsample.size is None else None
        self.mode = upsample.mode
        self.align_corners = upsample.align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size:
            size = self.size
        else:
            height, width = x.shape[-2:]
            size = (height * self.factors[0], width * self.factors[1])
        return F.interpolate(x, size=size, mode=self.mode, align_corners=self.align_corners)


def replace_upsampling(model: nn.Module) -> List[str]:
    """Swaps mmseg's ``Upsample`` modules for :class:`TraceableUpsample` (in place)."""
    try:
        from mmseg.models.utils import Upsample
    except ImportError:  # pragma: no cover - mmseg is installed with emo_mm
        return []
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Upsample):
                setattr(module, child_name, TraceableUpsample(child))
                replaced.append(f'{name}.{child_name}' if name else child_name)
    return replaced


class SegmentorGraph(nn.Module):
    """Image -> class logits at the input's size (mmseg ``encode_decode``)."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor
        self.align_corners = bool(segmentor.decode_head.align_corners)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor.decode_head(self.segmentor.extract_feat(image))
        return F.interpolate(logits, size=image.shape[2:], mode='bilinear',
                             align_corners=self.align_corners)


class ClassifierGraph(nn.Module):
    """Image -> class probabilities (softmax of mmpretrain's head, its ``pred_score``)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.classifier.head(self.classifier.extract_feat(image)), dim=1)


class RecognizerGraph(nn.Module):
    """One sample's views (V, C, T, H, W) -> class scores (1, K), averaged over the views
    as mmaction2's head does (``average_clips``)."""

    def __init__(self, recognizer: nn.Module):
        super().__init__()
        self.recognizer = recognizer

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.recognizer.backbone(clips)
        if self.recognizer.with_neck:
            x, _ = self.recognizer.neck(x)
        scores = self.recognizer.cls_head(x)
        return self.recognizer.cls_head.average_clip(scores, num_segs=clips.shape[0])


# ---------------------------------------------------------------------------------------
# ONNX nodes appended to a segmentation graph (sizes that are graph inputs).
# ---------------------------------------------------------------------------------------
def label_map_nodes(logits: str, output: str, align_corners: bool, prefix: str = 'post_'):
    """Nodes and initializers: ``logits`` (1, C, H, W) -> crop to ``img_shape`` -> resize to
    ``ori_shape`` (bilinear, as mmseg's ``postprocess_result``) -> arg-max over classes.

    Returns:
        tuple[list, list]: ONNX nodes and initializers (tensors) to add to a graph that
        has the int64 inputs ``img_shape`` and ``ori_shape`` (h, w).
    """
    from onnx import TensorProto, helper
    name = lambda n: prefix + n  # noqa: E731
    inits = [
        helper.make_tensor(name('zeros'), TensorProto.INT64, [2], [0, 0]),
        helper.make_tensor(name('axes'), TensorProto.INT64, [2], [2, 3]),
        helper.make_tensor(name('head_start'), TensorProto.INT64, [1], [0]),
        helper.make_tensor(name('head_end'), TensorProto.INT64, [1], [2]),
    ]
    mode = 'align_corners' if align_corners else 'pytorch_half_pixel'
    nodes = [
        helper.make_node('Slice', [logits, name('zeros'), 'img_shape', name('axes')],
                         [name('cropped')]),
        helper.make_node('Shape', [name('cropped')], [name('shape')]),
        helper.make_node('Slice', [name('shape'), name('head_start'), name('head_end')],
                         [name('batch_channels')]),
        helper.make_node('Concat', [name('batch_channels'), 'ori_shape'], [name('sizes')],
                         axis=0),
        helper.make_node('Resize', [name('cropped'), '', '', name('sizes')], [name('resized')],
                         mode='linear', coordinate_transformation_mode=mode),
        helper.make_node('ArgMax', [name('resized')], [output], axis=1, keepdims=0),
    ]
    return nodes, inits


def append_label_map(path: str, logits: str = 'logits', align_corners: bool = False) -> None:
    """Rewrites the ONNX file ``path``: adds the int64 inputs ``img_shape`` and
    ``ori_shape`` and replaces its output ``logits`` by ``label_map`` (1, H, W) int64."""
    import onnx
    from onnx import TensorProto, helper
    model = onnx.load(path)
    graph = model.graph
    nodes, inits = label_map_nodes(logits, 'label_map', align_corners)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.input.extend([helper.make_tensor_value_info(n, TensorProto.INT64, [2])
                        for n in ('img_shape', 'ori_shape')])
    outputs = [o for o in graph.output if o.name != logits]
    del graph.output[:]
    graph.output.extend(outputs + [helper.make_tensor_value_info(
        'label_map', TensorProto.INT64, [1, 'height', 'width'])])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_label_map_graph(path: str, num_classes: int, align_corners: bool,
                          opset: int) -> None:
    """A graph of its own for slide inference: ``logits`` (1, C, H, W), ``img_shape``,
    ``ori_shape`` -> ``label_map`` (1, H, W) int64."""
    import onnx
    from onnx import TensorProto, helper
    nodes, inits = label_map_nodes('logits', 'label_map', align_corners)
    graph = helper.make_graph(
        nodes, 'label_map', [
            helper.make_tensor_value_info('logits', TensorProto.FLOAT,
                                          [1, num_classes, 'height', 'width']),
            helper.make_tensor_value_info('img_shape', TensorProto.INT64, [2]),
            helper.make_tensor_value_info('ori_shape', TensorProto.INT64, [2]),
        ], [helper.make_tensor_value_info('label_map', TensorProto.INT64,
                                          [1, 'out_height', 'out_width'])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def graph_io(path: str) -> dict:
    """``inputs`` / ``outputs`` of an ONNX file: name, dtype and shape (None: dynamic)."""
    import onnx
    from onnx import helper
    graph = onnx.load(path, load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def describe(value):
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField('dim_value') else None for d in tensor.shape.dim]
        return dict(name=value.name, dtype=helper.tensor_dtype_to_np_dtype(
            tensor.elem_type).name, shape=shape)

    return dict(inputs=[describe(v) for v in graph.input if v.name not in initializers],
                outputs=[describe(v) for v in graph.output])


def sizes_of(shape: Sequence) -> tuple:
    return tuple(int(s) for s in shape)
