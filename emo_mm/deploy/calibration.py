"""Calibration inputs for an int8 bundle: N files of the config's own data set, turned
into the model graph's inputs by the bundle's preprocessing.

The preprocessing is the one the bundle replays at run time (the config's test pipeline
and data preprocessor, :mod:`emo_mm.deploy.preprocess`), so the activation ranges are
measured on exactly the tensors the deployed graph receives. The files are drawn evenly
over the split (``np.linspace`` over its indices: deterministic, spread over its classes
and scenes), from the training split unless another is asked for.
"""
from typing import Dict, List, Tuple

import numpy as np
from mmengine.config import Config

from ..engine.errors import UserError
from .predictor import graph_feeds, read_video
from .preprocess import ClipPreprocessor, ImagePreprocessor, check_image, read_image

SPLITS = ('train', 'val', 'test')


class CalibrationError(UserError):
    """No calibration data: the split is missing, empty or holds no readable files."""


def split_files(cfg: Config, split: str, count: int) -> List[str]:
    """``count`` file paths of the config's ``split`` data set, evenly spaced."""
    from mmengine.registry import DATASETS, init_default_scope

    from .export import resolve_scope
    if split not in SPLITS:
        raise CalibrationError(f'--calib-split {split!r}: choose one of {", ".join(SPLITS)}.')
    if count <= 0:
        raise CalibrationError(f'--calib {count}: give a positive number of images.')
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise CalibrationError(f'The config has no {split}_dataloader to calibrate on; choose '
                               'another --calib-split.')
    init_default_scope(resolve_scope(cfg))
    try:
        dataset = DATASETS.build(loader['dataset'])
    except Exception as err:  # noqa: B902 - any failure means: no data to calibrate on
        raise CalibrationError(f'The {split} data set of the config cannot be read ({err}); '
                               'generate or download it, or choose another --calib-split.')
    while not hasattr(dataset, 'data_list') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset  # dataset wrappers (RepeatDataset, ...)
    total = len(dataset)
    if total == 0:
        raise CalibrationError(f'The {split} data set of the config is empty.')
    indices = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
    files = []
    for index in indices:
        info = dataset.get_data_info(int(index))
        path = info.get('img_path') or info.get('filename')
        if not path:
            raise CalibrationError(f'Sample {index} of the {split} data set names no file '
                                   '(img_path / filename).')
        files.append(path)
    return files


def calibration_inputs(cfg: Config, task: str, spec: Dict, postprocess: Dict, split: str,
                       count: int) -> Tuple[List[Dict[str, np.ndarray]], List[str]]:
    """The model graph's input dicts for ``count`` files of ``split`` (see the module
    docstring; fewer when the split is smaller), and the files; slide-window segmentors
    give one dict per crop."""
    inputs = []
    files = split_files(cfg, split, count)
    if task == 'video':
        preprocessor = ClipPreprocessor(spec)
        for path in files:
            # mmaction2's decoders give RGB frames; OpenCV reads BGR.
            meta = preprocessor([frame[..., ::-1] for frame in read_video(path)])
            inputs.extend(graph_feeds(task, postprocess, meta))
        return inputs, files
    preprocessor = ImagePreprocessor(spec)
    for path in files:
        meta = preprocessor(check_image(read_image(path), path))
        inputs.extend(graph_feeds(task, postprocess, meta))
    return inputs, files
