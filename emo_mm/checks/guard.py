"""A per-sample guard in the data pipelines: a bad sample is named, never trained on.

The up-front pass (:func:`emo_mm.checks.data.check_data`) reads every sample once;
files that change afterwards, or problems only loading reveals, are caught here:
``tools/train.py`` / ``tools/test.py`` wrap each data set's pipeline in
:class:`SampleGuard`, which runs the transforms, names the sample's file when one fails,
and checks what the loading transforms produced (label map size and values, labels
within the head's classes) before any resize or crop could hide it.
"""
import re
from typing import List, Optional, Sequence

import numpy as np
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS

from ..registry import TRANSFORMS
from .data import DataError

#: Transforms that read files: checks run after the last of them.
LOADING = re.compile(r'^(Load|Decord|PyAV|OpenCV|RawFrame|Pims|Audio)|(Decode|Init)$')
#: Keys of a sample that name its files, most telling first.
FILE_KEYS = ('img_path', 'filename', 'frame_dir', 'audio_path', 'seg_map_path')


def _name(transform) -> str:
    return type(transform).__name__


@TRANSFORMS.register_module()
class SampleGuard:
    """Runs ``transforms`` and checks each sample right after it is loaded.

    Args:
        transforms (list[dict]): The data set's pipeline.
        num_classes (int, optional): The model head's class count: labels (segmentation
            map values, detection / classification / action labels) must lie below it.
        ignore_index (int): Label-map value that marks ignored pixels. Defaults to 255.
    """

    def __init__(self, transforms: Sequence, num_classes: Optional[int] = None,
                 ignore_index: int = 255):
        self.transforms: List = [ROOT_TRANSFORMS.build(t) if isinstance(t, dict) else t
                                 for t in transforms]
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        names = [_name(t) for t in self.transforms]
        loading = [i for i, name in enumerate(names) if LOADING.search(name)]
        self.check_after = loading[-1] if loading else -1

    def __call__(self, results: dict) -> Optional[dict]:
        source = self._source(results)
        if self.check_after < 0:
            self._check(results, source)
        for i, transform in enumerate(self.transforms):
            try:
                results = transform(results)
            except DataError:
                raise
            except Exception as err:
                detail = ' '.join(str(err).split())[:300] or type(err).__name__
                if 'Annotations' in _name(transform) and results.get('seg_map_path'):
                    source = results['seg_map_path']
                raise DataError(f'{source}: {_name(transform)} failed ({detail}). Fix or '
                                'remove this sample (python tools/analysis_tools/check_data.py '
                                'CONFIG --recheck decodes every sample and lists the bad '
                                'ones).') from err
            if results is None:
                return None
            if i == self.check_after:
                self._check(results, source)
        return results

    @staticmethod
    def _source(results: dict) -> str:
        for key in FILE_KEYS:
            if results.get(key):
                return str(results[key])
        return f'sample {results.get("sample_idx", "?")}'

    def _check(self, results: dict, source: str) -> None:
        seg = results.get('gt_seg_map')
        img = results.get('img')
        if seg is not None:
            # ori_shape: test pipelines resize the image before loading the label map.
            shape = results.get('ori_shape') or (img.shape[:2] if img is not None else None)
            if shape is not None and tuple(seg.shape[:2]) != tuple(shape[:2]):
                raise DataError(
                    f'{results.get("seg_map_path", source)}: label map is {seg.shape[1]}x'
                    f'{seg.shape[0]} but its image {results.get("img_path")} is '
                    f'{shape[1]}x{shape[0]} (width x height); they must match.')
            if self.num_classes is not None:
                top = int(seg.max()) if seg.size else 0
                if top >= self.num_classes and top != self.ignore_index:
                    values = [int(v) for v in np.unique(seg)
                              if v >= self.num_classes and v != self.ignore_index]
                    if values:
                        raise DataError(
                            f'{results.get("seg_map_path", source)}: label values '
                            f'{values[:10]} are outside the {self.num_classes} classes of '
                            f'the model head (and not the ignore value {self.ignore_index}).')
        if self.num_classes is None:
            return
        for key in ('gt_bboxes_labels', 'gt_label', 'label'):
            labels = results.get(key)
            if labels is None:
                continue
            values = np.asarray(labels).reshape(-1)
            bad = values[(values < 0) | (values >= self.num_classes)] if values.size else values
            if bad.size:
                raise DataError(f'{source}: label {int(bad[0])} is outside the '
                                f'{self.num_classes} classes of the model head '
                                f'(0..{self.num_classes - 1}).')

    def __repr__(self) -> str:
        inner = ', '.join(_name(t) for t in self.transforms)
        return f'{type(self).__name__}(num_classes={self.num_classes}, transforms=[{inner}])'


__all__ = ['SampleGuard']
