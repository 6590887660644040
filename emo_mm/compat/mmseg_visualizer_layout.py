"""mmseg's browse_dataset tool on a current OpenCV.

Upstream: mmseg 1.2.2 ``tools/analysis_tools/browse_dataset.py`` passes the visualiser
``item['inputs'].permute(1, 2, 0).numpy()[..., [2, 1, 0]]``, an array that is not
C-contiguous; ``SegLocalVisualizer._draw_sem_seg`` makes its label mask with
``np.zeros_like(image)``, which keeps that layout, and draws the class names on it with
``cv2.rectangle``, which OpenCV 4.13 (pinned) refuses: "Layout of the output array img is
incompatible with cv::Mat". No upstream issue was found; checked against mmseg 1.2.2.

Fix: ``_draw_sem_seg`` is given a C-contiguous copy of such an image (the same pixels).
"""
import importlib

import numpy as np

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmseg.visualization.local_visualizer'


def apply() -> None:
    """Wraps ``SegLocalVisualizer._draw_sem_seg`` (idempotent)."""
    SegLocalVisualizer = importlib.import_module(TARGET).SegLocalVisualizer
    original = SegLocalVisualizer._draw_sem_seg
    if getattr(original, 'emo_mm_fix', False):
        return

    def draw_sem_seg(self, image, *args, **kwargs):
        return original(self, np.ascontiguousarray(image), *args, **kwargs)

    draw_sem_seg.emo_mm_fix = True
    SegLocalVisualizer._draw_sem_seg = draw_sem_seg
