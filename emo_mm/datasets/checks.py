"""Up-front checks of the data a config points at, with errors that say what to do.

Without them a missing COCO folder surfaces as a bare ``FileNotFoundError`` deep in
pycocotools, and an empty annotation file as a JSON decoding error. ``tools/train.py`` and
``tools/test.py`` run :func:`check_data` before building the Runner.
"""
import json
import os
import os.path as osp
from typing import Iterator, Optional, Sequence

from mmengine.config import Config, ConfigDict

#: What each data set family expects under its data_root, for the error messages.
LAYOUT_HINTS = {
    'CocoDataset': 'COCO 2017: train2017/, val2017/ and annotations/instances_{train,val}'
                   '2017.json (https://cocodataset.org/#download)',
    'ADE20KDataset': 'ADEChallengeData2016: images/{training,validation}/*.jpg and '
                     'annotations/{training,validation}/*.png (http://sceneparsing.csail.mit.edu)',
    'HRFDataset': 'HRF converted by mmseg\'s tools/dataset_converters/hrf.py: '
                  'images/{training,validation}/*.png and annotations/{training,validation}/*.png',
    'VideoDataset': 'videos plus a "<video> <label>" list per split, as mmaction2\'s Kinetics '
                    'preparation scripts write them',
}


class DataError(ValueError):
    """A data set that is missing or malformed."""


def iter_datasets(dataset_cfg) -> Iterator[dict]:
    """Yields the leaf data set configs under wrappers (Repeat/Concat/ClassBalanced)."""
    if dataset_cfg is None:
        return
    if isinstance(dataset_cfg, (list, tuple)):
        for item in dataset_cfg:
            yield from iter_datasets(item)
    elif 'datasets' in dataset_cfg:
        yield from iter_datasets(dataset_cfg['datasets'])
    elif 'dataset' in dataset_cfg:
        yield from iter_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def _type_name(cfg) -> str:
    kind = cfg.get('type', '')
    return kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))


def _join(root: Optional[str], path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    return path if (not root or osp.isabs(path)) else osp.join(root, path)


def set_data_root(cfg: Config, data_root: str) -> None:
    """Points every data set and evaluator annotation path of ``cfg`` at ``data_root``."""
    old_roots = set()
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in iter_datasets(loader.get('dataset')):
            if dataset.get('data_root'):
                old_roots.add(dataset['data_root'])
            dataset['data_root'] = data_root
    for split in ('val', 'test'):
        evaluators = cfg.get(f'{split}_evaluator')
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            ann_file = evaluator.get('ann_file') if evaluator else None
            if not ann_file:
                continue
            for old in old_roots:
                if ann_file.startswith(old):
                    evaluator['ann_file'] = osp.join(data_root, ann_file[len(old):].lstrip('/'))


def check_data(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test'),
               full: bool = False) -> None:
    """Checks the data sets of the given splits; raises :class:`DataError` on problems.

    Per-sample checks (segmentation label maps) look at the first ``SAMPLES_CHECKED``
    samples, or at all of them with ``full`` (``tools/check_data.py --all``).
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in iter_datasets(loader.get('dataset')):
            _check_dataset(dataset, split)
            if _type_name(dataset) == 'VideoDataset':
                check_video_dataset(dataset, split, cfg.get('model', {}))
            elif 'seg_map_path' in (dataset.get('data_prefix') or {}):
                check_segmentation_dataset(dataset, split, cfg.get('model', {}), full)
        evaluators = cfg.get(f'{split}_evaluator') if split != 'train' else None
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            if evaluator and evaluator.get('ann_file'):
                _check_file(evaluator['ann_file'], f'{split}_evaluator.ann_file', None)


def _check_dataset(dataset: ConfigDict, split: str) -> None:
    kind = _type_name(dataset)
    root = dataset.get('data_root')
    hint = next((h for name, h in LAYOUT_HINTS.items() if name in kind), None)
    if root and not osp.isdir(root):
        raise DataError(
            f'{kind} for {split}: data_root {root!r} does not exist. '
            + (f'Expected {hint}. ' if hint else '')
            + 'Put the data there, or pass --data-root DIR to tools/train.py / tools/test.py '
            f"(or --cfg-options {split}_dataloader.dataset.data_root=DIR).")
    ann_file = _join(root, dataset.get('ann_file'))
    if ann_file:
        _check_file(ann_file, f'{kind} ({split}) ann_file', hint)
        if 'Coco' in kind:
            check_coco_annotations(ann_file, dataset.get('metainfo'))
    for key, folder in (dataset.get('data_prefix') or {}).items():
        path = _join(root, folder)
        if path and not osp.exists(path):
            raise DataError(f'{kind} for {split}: data_prefix {key}={folder!r} resolves to '
                            f'{path!r}, which does not exist.'
                            + (f' Expected {hint}.' if hint else ''))


def _check_file(path: str, what: str, hint: Optional[str]) -> None:
    if not osp.isfile(path):
        raise DataError(f'{what}: {path!r} does not exist.' + (f' Expected {hint}.' if hint else '')
                        + ' Pass --data-root DIR if the data lives elsewhere.')
    if osp.getsize(path) == 0:
        raise DataError(f'{what}: {path!r} is empty. Re-download or regenerate it.')


#: Files larger than this (COCO train2017 is 450 MB) only get the cheap truncation check;
#: parsing them twice would add tens of seconds to every start.
FULL_CHECK_MAX_BYTES = 64 * 2**20


def check_coco_annotations(path: str, metainfo: Optional[dict] = None) -> None:
    """Validates a COCO-format annotation file's structure; raises :class:`DataError`."""
    if osp.getsize(path) > FULL_CHECK_MAX_BYTES:
        with open(path, 'rb') as f:
            head = f.read(1).strip()
            f.seek(-64, 2)
            tail = f.read().strip()
        if head != b'{' or not tail.endswith(b'}'):
            raise DataError(f'COCO annotation file {path!r} does not look like one JSON object '
                            f'(truncated download?). Re-download it.')
        return
    try:
        with open(path) as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f'COCO annotation file {path!r} is not valid JSON ({err}); it may be '
                        f'truncated. Re-download or regenerate it.') from err
    if not isinstance(coco, dict):
        raise DataError(f'COCO annotation file {path!r} must hold a JSON object, got '
                        f'{type(coco).__name__}.')
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(
        coco.get(k), list)]
    if missing:
        raise DataError(f'COCO annotation file {path!r} lacks the list(s) {missing} '
                        f'(a COCO file has images, annotations and categories).')
    if not coco['images']:
        raise DataError(f'COCO annotation file {path!r} lists no images.')
    for i, image in enumerate(coco['images']):
        absent = [k for k in ('id', 'file_name', 'height', 'width') if k not in image]
        if absent:
            raise DataError(f'{path!r}: images[{i}] lacks {absent}.')
    category_ids = {c.get('id') for c in coco['categories']}
    image_ids = {image['id'] for image in coco['images']}
    for i, ann in enumerate(coco['annotations']):
        absent = [k for k in ('image_id', 'category_id', 'bbox') if k not in ann]
        if absent:
            raise DataError(f'{path!r}: annotations[{i}] lacks {absent}.')
        bbox = ann['bbox']
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(f'{path!r}: annotations[{i}].bbox must be [x, y, w, h], got {bbox!r}.')
        if ann['category_id'] not in category_ids:
            raise DataError(f'{path!r}: annotations[{i}] has category_id {ann["category_id"]}, '
                            f'which is not among the categories {sorted(category_ids)}.')
        if ann['image_id'] not in image_ids:
            raise DataError(f'{path!r}: annotations[{i}] refers to image_id {ann["image_id"]}, '
                            f'which is not among the images.')
    classes = (metainfo or {}).get('classes')
    if classes:
        names = {c.get('name') for c in coco['categories']}
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise DataError(f'{path!r}: the config\'s classes {unknown} are not categories of '
                            f'the file ({sorted(names)}); fix metainfo.classes.')


#: Videos decoded per data set to check them (all are checked for existence).
VIDEOS_DECODED = 8


def _sampling(pipeline) -> Optional[dict]:
    return next((t for t in pipeline or [] if t.get('type') in ('UniformSample', 'SampleFrames')),
                None)


def check_video_dataset(dataset: ConfigDict, split: str, model: dict) -> None:
    """Checks an mmaction2 ``VideoDataset`` against its files and the model.

    Every listed video must exist and carry a label below the head's class count; the
    first few are decoded, and must hold at least the frames the sampler takes (shorter
    clips would be silently looped or repeated); the sampler's clip length must be the
    backbone's ``num_frames`` when the backbone fixes one.
    """
    ann_file = dataset.get('ann_file')
    prefix = (dataset.get('data_prefix') or {}).get('video', '')
    num_classes = (model.get('cls_head') or {}).get('num_classes')
    with open(ann_file) as f:
        lines = [line.split() for line in f if line.strip()]
    if not lines:
        raise DataError(f'{split}: annotation list {ann_file!r} lists no videos.')
    videos = []
    for number, fields in enumerate(lines, 1):
        if len(fields) < 2 or not all(v.lstrip('-').isdigit() for v in fields[1:]):
            raise DataError(f'{ann_file!r} line {number}: expected "<video> <label>", got '
                            f'{" ".join(fields)!r}.')
        path = osp.join(prefix, fields[0])
        if not osp.isfile(path):
            raise DataError(f'{split}: video {path!r} (listed in {ann_file!r} line {number}) '
                            f'does not exist.')
        for label in map(int, fields[1:]):
            if num_classes is not None and not 0 <= label < num_classes:
                raise DataError(f'{ann_file!r} line {number}: label {label} is outside the '
                                f'{num_classes} classes of the model head (0..{num_classes - 1}).')
        videos.append(path)
    sampler = _sampling(dataset.get('pipeline'))
    if sampler is None:
        return
    need = sampler.get('clip_len', 1) * (sampler.get('frame_interval', 1)
                                        if sampler['type'] == 'SampleFrames' else 1)
    num_frames = (model.get('backbone') or {}).get('num_frames')
    if num_frames and sampler.get('clip_len') != num_frames:
        raise DataError(f'{split}: the pipeline samples clip_len={sampler.get("clip_len")} '
                        f'frames, but the backbone is configured for num_frames={num_frames}; '
                        f'make them equal.')
    for path in videos[:VIDEOS_DECODED]:
        frames = count_video_frames(path)
        if frames < need:
            raise DataError(f'{split}: video {path!r} has {frames} frames, fewer than the '
                            f'{need} that {sampler["type"]} takes per clip; such clips would '
                            f'repeat frames. Drop or re-encode it.')


def count_video_frames(path: str) -> int:
    """Number of decodable frames, or :class:`DataError` for unreadable files."""
    try:
        import decord
        reader = decord.VideoReader(path, num_threads=1)
        count = len(reader)
        if count:
            reader[count - 1]  # the last frame decodes too (catches truncated files)
    except Exception as err:  # decord raises its own DECORDError, RuntimeError, ...
        raise DataError(f'video {path!r} cannot be decoded ({str(err).splitlines()[0][:200]}); '
                        f're-download or re-encode it.') from err
    return count


#: Segmentation samples whose label maps are read by the quick check.
SAMPLES_CHECKED = 16


def check_segmentation_dataset(dataset: ConfigDict, split: str, model: dict,
                               full: bool = False) -> None:
    """Checks image / label-map pairs of an mmseg data set.

    Every image needs a label map of the same height and width whose values are class
    indices of the model head (after ``reduce_zero_label``: 0 becomes ignored and v
    becomes v - 1) or the ignore value 255.
    """
    import cv2
    import numpy as np
    root = dataset.get('data_root') or ''
    prefix = dataset['data_prefix']
    img_dir, seg_dir = _join(root, prefix.get('img_path', '')), _join(root, prefix['seg_map_path'])
    kind = _type_name(dataset)
    # the toolbox's defaults: BaseSegDataset / ADE20K .jpg images, HRF .png
    img_suffix = dataset.get('img_suffix') or {'HRFDataset': '.png'}.get(kind, '.jpg')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    reduce_zero = dataset.get('reduce_zero_label', kind == 'ADE20KDataset')
    num_classes = (model.get('decode_head') or {}).get('num_classes')
    images = sorted(f for f in _list_dir(img_dir) if f.endswith(img_suffix))
    if not images:
        raise DataError(f'{kind} for {split}: no *{img_suffix} images in {img_dir!r}.')
    for name in images if full else images[:SAMPLES_CHECKED]:
        seg_path = osp.join(seg_dir, name[:-len(img_suffix)] + seg_suffix)
        if not osp.isfile(seg_path):
            raise DataError(f'{kind} for {split}: image {name!r} has no label map {seg_path!r}.')
        image = cv2.imread(osp.join(img_dir, name), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(seg_path, cv2.IMREAD_UNCHANGED)
        if image is None or label is None:
            bad = osp.join(img_dir, name) if image is None else seg_path
            raise DataError(f'{kind} for {split}: {bad!r} cannot be read as an image.')
        if image.shape[:2] != label.shape[:2]:
            raise DataError(f'{kind} for {split}: label map {seg_path!r} is {label.shape[1]}x'
                            f'{label.shape[0]} but its image is {image.shape[1]}x'
                            f'{image.shape[0]} (width x height); they must match pixel for pixel.')
        if label.ndim != 2:
            raise DataError(f'{kind} for {split}: label map {seg_path!r} has '
                            f'{label.shape[2]} channels; it must be single-channel class indices.')
        if num_classes:
            # Stored values: class indices (+ 1 with reduce_zero_label, where 0 = ignore)
            # or 255 = ignore.
            top = num_classes if reduce_zero else num_classes - 1
            bad = [int(v) for v in np.unique(label) if top < v != 255]
            if bad:
                raise DataError(
                    f'{kind} for {split}: label map {seg_path!r} holds values {bad[:10]}, '
                    f'outside the {num_classes} classes of the model head'
                    + (' (with reduce_zero_label the stored values are class + 1, 0 = '
                       'ignore)' if reduce_zero else '') + ' and not the ignore value 255.')


def _list_dir(path: str):
    if not osp.isdir(path):
        raise DataError(f'{path!r} does not exist or is not a folder.')
    return os.listdir(path)
