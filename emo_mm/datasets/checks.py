"""Up-front checks of the data a config points at, with errors that say what to do.

Without them a missing COCO folder surfaces as a bare ``FileNotFoundError`` deep in
pycocotools, and an empty annotation file as a JSON decoding error. ``tools/train.py`` and
``tools/test.py`` run :func:`check_data` before building the Runner.
"""
import json
import os.path as osp
from typing import Iterator, Optional, Sequence

from mmengine.config import Config, ConfigDict

#: What each data set family expects under its data_root, for the error messages.
LAYOUT_HINTS = {
    'CocoDataset': 'COCO 2017: train2017/, val2017/ and annotations/instances_{train,val}'
                   '2017.json (https://cocodataset.org/#download)',
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


def check_data(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Checks the data sets of the given splits; raises :class:`DataError` on problems."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in iter_datasets(loader.get('dataset')):
            _check_dataset(dataset, split)
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
