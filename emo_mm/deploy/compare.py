"""How close a bundle's results are to the PyTorch model's (numpy only).

The parity criteria of the deploy checks: every reference box matched by a deployed box of
the same label at IoU >= 0.99 with a score within 1e-3, except boxes whose score lies at
the score threshold or that tie with another box (their presence is decided by float
rounding); label maps equal on >= 99.9% of the pixels; class scores within 1e-4 relative.
"""
from typing import Dict

import numpy as np

BOX_IOU = 0.99
SCORE_TOLERANCE = 1e-3
PIXEL_AGREEMENT = 0.999
SCORE_RELATIVE = 1e-4


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) x1y1x2y2 -> (N, M) IoU (0 for empty unions)."""
    a = a.astype(np.float64)[:, None]
    b = b.astype(np.float64)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0,
                     None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.)


def match_detections(reference: Dict, deployed: Dict, score_thr: float = 0.,
                     nms_iou: float = None, iou: float = BOX_IOU,
                     score_tolerance: float = SCORE_TOLERANCE) -> Dict:
    """Matches each reference box to a deployed box (same label, IoU >= ``iou``, score
    within ``score_tolerance``), greedily by reference score.

    Boxes within ``score_tolerance`` of ``score_thr`` are exempt (kept or dropped by
    rounding), and so are the boxes that tie with another box of the same label (scores
    within ``score_tolerance / 100``: NMS keeps either) or whose IoU with a better box of
    their label lies within 1e-3 of the NMS threshold ``nms_iou`` (suppressed or not by
    rounding).

    Returns:
        dict: ``total`` reference boxes, ``matched``, ``exempt`` (unmatched but exempt),
        ``unmatched`` (indices of the others), ``extra`` (deployed boxes matched by none,
        not at the threshold), ``worst_score_error``, ``worst_iou``.
    """
    ref_boxes, ref_scores, ref_labels = (np.asarray(reference[k]) for k in
                                         ('boxes', 'scores', 'labels'))
    dep_boxes, dep_scores, dep_labels = (np.asarray(deployed[k]) for k in
                                         ('boxes', 'scores', 'labels'))
    used = np.zeros(len(dep_boxes), bool)
    ious = box_iou(ref_boxes.reshape(-1, 4), dep_boxes.reshape(-1, 4))
    matched, exempt, unmatched = 0, 0, []
    worst_error, worst_iou = 0., 1.
    for i in np.argsort(-ref_scores, kind='stable'):
        ok = ((dep_labels == ref_labels[i]) & ~used & (ious[i] >= iou)
              & (np.abs(dep_scores - ref_scores[i]) <= score_tolerance))
        if ok.any():
            j = int(np.argmax(np.where(ok, ious[i], -1)))
            used[j] = True
            matched += 1
            worst_error = max(worst_error, float(abs(dep_scores[j] - ref_scores[i])))
            worst_iou = min(worst_iou, float(ious[i, j]))
        elif _exempt(i, ref_boxes, ref_scores, ref_labels, score_thr, nms_iou,
                     score_tolerance):
            exempt += 1
        else:
            unmatched.append(int(i))
    extra = [int(j) for j in np.nonzero(~used)[0]
             if abs(dep_scores[j] - score_thr) > score_tolerance]
    return dict(total=len(ref_boxes), matched=matched, exempt=exempt, unmatched=unmatched,
                extra=extra, worst_score_error=worst_error, worst_iou=worst_iou)


def _exempt(index, boxes, scores, labels, score_thr, nms_iou, tolerance) -> bool:
    if abs(scores[index] - score_thr) <= tolerance:
        return True
    same = (labels == labels[index]) & (np.arange(len(scores)) != index)
    if np.any(same & (np.abs(scores - scores[index]) <= tolerance * 0.01)):
        return True
    if nms_iou is None:
        return False
    ious = box_iou(boxes[index:index + 1].reshape(-1, 4), boxes.reshape(-1, 4))[0]
    return bool(np.any(same & (scores >= scores[index]) & (np.abs(ious - nms_iou) <= 1e-3)))


def label_agreement(reference: np.ndarray, deployed: np.ndarray) -> float:
    """Fraction of pixels with the same label (shapes must agree)."""
    reference, deployed = np.asarray(reference), np.asarray(deployed)
    if reference.shape != deployed.shape:
        raise AssertionError(f'label maps differ in shape: {reference.shape} vs '
                             f'{deployed.shape}')
    return float((reference == deployed).mean())


def relative_error(reference: np.ndarray, deployed: np.ndarray) -> float:
    """max |deployed - reference| / max |reference|."""
    reference = np.asarray(reference, np.float64)
    deployed = np.asarray(deployed, np.float64)
    return float(np.abs(deployed - reference).max() / max(np.abs(reference).max(), 1e-30))
