"""Up-front checks of every sample a config points at, with errors that say what to do.

Without them a missing COCO folder surfaces as a bare ``FileNotFoundError`` deep in
pycocotools, an empty annotation file as a JSON decoding error, and a label map of the wrong
size in sample 17 trains to the end on misaligned labels. ``tools/train.py``,
``tools/test.py`` and ``tools/analysis_tools/check_data.py`` run :func:`check_data` before
building the Runner: structure first (folders, annotation files, the classes against the
model head), then one pass over every sample of each split (images decoded in full, label
maps read as mmseg reads them, annotation references, list lines parsed as the toolbox
parses them, video containers) with a progress bar. What the toolboxes would silently drop
or change (COCO boxes mmdet discards or keeps unclipped) is reported as warnings with counts
and examples; what they would get wrong (duplicate COCO image ids, a split smaller than one
batch with ``drop_last``) is an error. A passed split leaves a stamp (keyed by the data
set's config and the size and time of every file; it records the depth of the check and its
warnings) so the next run skips it; :mod:`emo_mm.checks.guard` catches what changes later.
"""
import copy
import hashlib
import json
import os
import os.path as osp
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

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
    'ClassImageDataset': 'one folder of images per class under <split>/ (the generation demo '
                         'set: python tools/misc/make_demo_data.py gen_shapes)',
    'LatentDataset': 'latents.npy and labels.npy written by '
                     'tools/dataset_converters/extract_latents.py',
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


def _normalized(dataset):
    """A copy whose ``data_prefix`` is a dict (mmpretrain also accepts a plain string)."""
    dataset = copy.deepcopy(dataset)
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, str):
        dataset['data_prefix'] = dict(img_path=prefix)
    return dataset


def set_data_root(cfg: Config, data_root: str) -> None:
    """Points every data set and evaluator annotation path of ``cfg`` at ``data_root``.

    Data sets with a ``data_root`` get the new one. Those without (mmaction2's configs
    give full paths in ``ann_file`` and ``data_prefix``) have the folder their paths share
    replaced by ``data_root``.
    """
    old_roots = set()
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in iter_datasets(loader.get('dataset')):
            if dataset.get('data_root'):
                old_roots.add(dataset['data_root'])
                dataset['data_root'] = data_root
                continue
            prefix = dataset.get('data_prefix')
            paths = [dataset.get('ann_file')] + (
                list(prefix.values()) if isinstance(prefix, dict) else [prefix])
            paths = [p for p in paths if isinstance(p, str) and p and not osp.isabs(p)]
            common = osp.commonpath(paths) if paths else ''
            if not common:
                dataset['data_root'] = data_root
                continue
            old_roots.add(common)

            def move(path, common=common):
                if isinstance(path, str) and (path == common or path.startswith(common + '/')):
                    return osp.join(data_root, path[len(common):].lstrip('/'))
                return path

            if dataset.get('ann_file'):
                dataset['ann_file'] = move(dataset['ann_file'])
            if isinstance(prefix, dict):
                for key in list(prefix):
                    prefix[key] = move(prefix[key])
            elif isinstance(prefix, str):
                dataset['data_prefix'] = move(prefix)
    for split in ('val', 'test'):
        evaluators = cfg.get(f'{split}_evaluator')
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            ann_file = evaluator.get('ann_file') if evaluator else None
            if not ann_file:
                continue
            for old in old_roots:
                if ann_file.startswith(old):
                    evaluator['ann_file'] = osp.join(data_root, ann_file[len(old):].lstrip('/'))


#: How deep the sample pass reads: structure only (folders, files, classes), file
#: headers (sizes), or every sample decoded in full.
DEPTHS = ('structure', 'headers', 'decode')


def check_data(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test'),
               full: bool = True, use_cache: bool = True,
               report: Optional[Callable[[str], None]] = None,
               decode: bool = True,
               warn: Optional[Callable[[str], None]] = None) -> None:
    """Checks the data sets of the given splits; raises :class:`DataError` on problems.

    Args:
        full (bool): Check every sample (default); False checks only the structure.
        use_cache (bool): Skip a data set whose files are unchanged since it last passed
            at this depth or deeper.
        report (callable, optional): Receives one line per data set checked or skipped.
        decode (bool): Decode every image in full (default; finds truncated files);
            False reads only the headers (sizes).
        warn (callable, optional): Receives what the loaders would silently change (boxes
            mmdet drops or keeps unclipped); by default it is logged as a warning. Warnings
            are kept with the stamp and repeated when a data set is skipped.
    """
    model = cfg.get('model') or {}
    depth = 'structure' if not full else ('decode' if decode else 'headers')
    warn = warn or _log_warning
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        counts = {}
        for dataset in iter_datasets(loader.get('dataset')):
            normalized = _normalized(dataset)
            _check_dataset(normalized, split)
            check_classes(normalized, split, model, cfg.get('default_scope'))
            if full:
                found = _check_samples(normalized, split, model, use_cache, report, depth)
            else:
                found = {}
                if _type_name(normalized) == 'VideoDataset':
                    check_video_dataset(normalized, split, model, decode=False, findings=found)
            for line in found.get('warnings', []):
                warn(line)
            counts[id(dataset)] = found.get('loader_count')
        check_batches(loader, split, counts)
        evaluators = cfg.get(f'{split}_evaluator') if split != 'train' else None
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            if evaluator and evaluator.get('ann_file'):
                _check_file(evaluator['ann_file'], f'{split}_evaluator.ann_file', None)


def _log_warning(line: str) -> None:
    from mmengine.logging import print_log
    print_log(line, logger='current', level=30)  # logging.WARNING


def _check_samples(dataset: ConfigDict, split: str, model: dict, use_cache: bool,
                   report: Optional[Callable[[str], None]], depth: str = 'decode') -> dict:
    """One pass over every sample; returns the findings (``loader_count``: how many
    samples the toolbox's data set will hold; ``warnings``)."""
    kind = _type_name(dataset)
    stamp = _stamp_path(dataset, model)
    label = f'{kind} ({split})'
    if use_cache and stamp and osp.isfile(stamp):
        passed = _read_stamp(stamp)
        if DEPTHS.index(passed.get('depth', 'headers')) >= DEPTHS.index(depth):
            if report:
                report(f'{label}: unchanged since it last passed, skipped ({stamp}).')
            return passed
    start = time.time()
    decode = depth == 'decode'
    findings = {'warnings': [], 'report': report}
    if kind == 'VideoDataset':
        count = check_video_dataset(dataset, split, model, findings=findings)
    elif 'seg_map_path' in (dataset.get('data_prefix') or {}):
        count = check_segmentation_dataset(dataset, split, model, decode, findings)
    elif 'Coco' in kind and dataset.get('ann_file'):
        count = check_coco_images(dataset, split, decode, findings)
    else:
        count = check_image_files(dataset, split, model, decode, findings)
    if findings.get('loader_count') is not None:
        findings['loader_count'] = _indexed(dataset, findings['loader_count'])
    what = 'decoded' if decode else 'checked (headers)'
    if report:
        report(f'{label}: {count} samples {what} in {time.time() - start:.1f}s.')
    if stamp:
        os.makedirs(osp.dirname(stamp), exist_ok=True)
        with open(stamp, 'w') as f:
            findings.pop('report', None)
            json.dump(dict(samples=count, depth=depth, loader_count=findings.get('loader_count'),
                           warnings=findings['warnings'],
                           checked=time.strftime('%Y-%m-%d %H:%M:%S')), f)
    return findings


def _read_stamp(path: str) -> dict:
    try:
        with open(path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _indexed(dataset: ConfigDict, count: int) -> int:
    """The sample count after MMEngine's ``indices`` (first N, or the listed ones)."""
    indices = dataset.get('indices')
    if isinstance(indices, int):
        return min(indices, count)
    if isinstance(indices, (list, tuple)):
        return len(indices)
    return count


def _world_size() -> int:
    value = os.environ.get('WORLD_SIZE', '')
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _wrapped_count(dataset_cfg, counts: dict) -> Optional[int]:
    """Samples of a (possibly wrapped) data set config from its leaves' counts; None if
    a count is unknown or a wrapper resamples (ClassBalancedDataset)."""
    if dataset_cfg is None:
        return None
    if isinstance(dataset_cfg, (list, tuple)):
        parts = [_wrapped_count(d, counts) for d in dataset_cfg]
        return None if any(p is None for p in parts) else sum(parts)
    kind = _type_name(dataset_cfg)
    if 'datasets' in dataset_cfg:
        return _wrapped_count(dataset_cfg['datasets'], counts) if 'Concat' in kind else None
    if 'dataset' in dataset_cfg:
        inner = _wrapped_count(dataset_cfg['dataset'], counts)
        if inner is None or 'Repeat' not in kind:
            return None
        return _indexed(dataset_cfg, inner * int(dataset_cfg.get('times', 1)))
    return counts.get(id(dataset_cfg))


def check_batches(loader: ConfigDict, split: str, counts: dict) -> None:
    """A split smaller than one batch with ``drop_last`` gives no iteration at all
    (MMEngine then fails with ``epoch_length ... got 0``)."""
    if not loader.get('drop_last'):
        return
    total = _wrapped_count(loader.get('dataset'), counts)
    batch = loader.get('batch_size') or 1
    world = _world_size()
    per_rank = -(-total // world) if total is not None else None  # DefaultSampler pads
    if per_rank is not None and per_rank < batch:
        ranks = f' per process ({world} processes)' if world > 1 else ''
        raise DataError(
            f'{split}_dataloader: the {split} set has {total} samples, fewer than one batch of '
            f'{batch}{ranks}, and drop_last=True drops that incomplete batch, so there would be '
            f'no iteration at all. Lower {split}_dataloader.batch_size to {max(per_rank, 1)} or '
            f'less, set {split}_dataloader.drop_last=False, or add data.')


# ---------------------------------------------------------------------------------------
# Cache stamps and progress.
# ---------------------------------------------------------------------------------------
def cache_dir() -> str:
    """Where passed data sets are stamped (``EMO_MM_CACHE_DIR`` overrides)."""
    return os.environ.get('EMO_MM_CACHE_DIR') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'emo_mm', 'data_checks')


def _stamp_path(dataset: ConfigDict, model: dict) -> Optional[str]:
    """A file name that changes with the data set's config, the head's classes, the sampler
    and the size and modification time of every file under the data set's folders."""
    digest = hashlib.sha256()
    relevant = {k: v for k, v in dataset.items() if k != 'pipeline'}
    digest.update(repr(sorted((k, repr(v)) for k, v in relevant.items())).encode())
    digest.update(repr((_head_classes(model), _sampling(dataset.get('pipeline')),
                        (model.get('backbone') or {}).get('num_frames'))).encode())
    root = dataset.get('data_root')
    paths = [_join(root, dataset.get('ann_file'))]
    paths += [_join(root, p) for p in (dataset.get('data_prefix') or {}).values()]
    for path in paths:
        if not path:
            continue
        if osp.isfile(path):
            info = os.stat(path)
            digest.update(f'{osp.abspath(path)}|{info.st_size}|{info.st_mtime_ns}'.encode())
        elif osp.isdir(path):
            for entry in _walk(path):
                digest.update(entry.encode())
    return osp.join(cache_dir(), digest.hexdigest()[:32] + '.json')


def _walk(root: str) -> Iterator[str]:
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=True):
                    stack.append(entry.path)
                else:
                    info = entry.stat()
                    yield f'{entry.path}|{info.st_size}|{info.st_mtime_ns}'


def _progress(items: Sequence, check: Callable, label: str,
              findings: Optional[dict] = None) -> int:
    """Runs ``check`` on every item (threads: the work is mostly file reading), with a
    progress bar on a terminal. Every item is checked; problems raise one
    :class:`DataError`: the first in item order, with the number of others (each is
    passed to ``findings['report']`` when there is one)."""
    total = len(items)
    tty = sys.stderr.isatty()
    shown = -1
    problems = []

    def guarded(item):
        try:
            check(item)
        except DataError as err:
            return err
        return None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for done, problem in enumerate(pool.map(guarded, items), 1):
            if problem is not None:
                problems.append(problem)
            percent = done * 100 // max(total, 1)
            if tty and percent != shown:
                shown = percent
                bar = '#' * (percent * 30 // 100)
                print(f'\rchecking {label}: [{bar:<30}] {done}/{total}', end='',
                      file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    if problems:
        report = (findings or {}).get('report')
        if report and len(problems) > 1:
            for problem in problems:
                report(f'problem: {problem}')
        more = ''
        if len(problems) > 1:
            more = (f' ({len(problems)} of the {total} {label} have problems, '
                    + ('listed above)' if report else
                       'python tools/analysis_tools/check_data.py CONFIG lists them all)'))
        raise DataError(f'{problems[0]}{more}') from problems[0]
    return total


# ---------------------------------------------------------------------------------------
# Classes of the data set against the model head.
# ---------------------------------------------------------------------------------------
def _head_classes(model: dict) -> List[Tuple[str, int]]:
    """``(config path, num_classes)`` of every classification head of ``model``."""
    found = []
    for path in ('bbox_head', 'roi_head.bbox_head', 'roi_head.mask_head', 'decode_head',
                 'cls_head', 'head'):
        node = model
        for part in path.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        for i, head in enumerate(node if isinstance(node, list) else [node]):
            if isinstance(head, dict) and isinstance(head.get('num_classes'), int):
                where = f'model.{path}' + (f'[{i}]' if isinstance(node, list) else '')
                found.append((f'{where}.num_classes', head['num_classes']))
    return found


def _dataset_classes(dataset: ConfigDict, scope: Optional[str]) -> Optional[Sequence[str]]:
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes:
        return classes
    kind = dataset.get('type')
    if not isinstance(kind, str) or not scope:
        return None
    try:  # the toolbox's own default (ADE20KDataset's 150 classes, ...)
        from mmengine.registry import DATASETS, init_default_scope
        init_default_scope(scope)
        cls = DATASETS.get(kind)
    except Exception:  # toolbox not installed: nothing to compare
        return None
    return (getattr(cls, 'METAINFO', None) or {}).get('classes') if cls else None


def check_classes(dataset: ConfigDict, split: str, model: dict, scope: Optional[str]) -> None:
    """The data set's class count must equal every head's ``num_classes``.

    A detector with fewer classes than the data silently learns the rest as background.
    """
    heads = _head_classes(model)
    if not heads:
        return
    classes = _dataset_classes(dataset, scope)
    if not classes:
        return
    for where, num_classes in heads:
        if num_classes == len(classes) or (num_classes == 1 and len(classes) == 2
                                           and 'decode_head' in where):
            continue  # (mmseg's binary segmentation with one sigmoid output)
        names = ', '.join(map(str, classes[:6])) + (', ...' if len(classes) > 6 else '')
        raise DataError(f'{_type_name(dataset)} for {split} has {len(classes)} classes '
                        f'({names}) but {where}={num_classes}. Set {where}={len(classes)} '
                        '(or --cfg-options), or fix metainfo.classes.')


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
        if not isinstance(folder, str) or not folder:
            continue
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
    check_coco_image_ids(coco, path)
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
        if not isinstance(ann.get('area'), (int, float)):
            raise DataError(f'{path!r}: annotations[{i}] has no numeric area (mmdet reads it '
                            'for every box); add the box or mask area.')
    classes = (metainfo or {}).get('classes')
    if classes:
        names = {c.get('name') for c in coco['categories']}
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise DataError(f'{path!r}: the config\'s classes {unknown} are not categories of '
                            f'the file ({sorted(names)}); fix metainfo.classes.')


def check_coco_image_ids(coco: dict, path: str) -> None:
    """Image ids must be unique: pycocotools keeps the last image of an id, so mmdet drops
    the others and gives their boxes to the one it keeps."""
    seen, duplicated = {}, {}
    for i, image in enumerate(coco['images']):
        if image['id'] in seen:
            duplicated.setdefault(image['id'], [seen[image['id']]]).append(i)
        else:
            seen[image['id']] = i
    if duplicated:
        examples = '; '.join(
            f'id {image_id}: ' + ', '.join(repr(coco['images'][i]['file_name']) for i in rows[:3])
            for image_id, rows in list(duplicated.items())[:3])
        extra = sum(len(rows) - 1 for rows in duplicated.values())
        raise DataError(
            f'{path!r}: {len(duplicated)} image ids are used by more than one image ({examples}'
            f'{"; ..." if len(duplicated) > 3 else ""}). mmdet would keep one image per id, drop '
            f'the other {extra} and give their boxes to the one it keeps. Give every image its '
            'own id (and point each annotation\'s image_id at its image).')


#: Examples shown per kind of box problem.
BOX_EXAMPLES = 3


def coco_box_findings(coco: dict, path: str) -> List[str]:
    """What mmdet's ``CocoDataset`` does to the boxes of a COCO file, as warnings.

    mmdet drops, without a word, boxes with a width or height below 1 pixel (those <= 0
    are degenerate), a non-positive ``area``, or no overlap with their image; it keeps
    boxes that reach outside their image without clipping them. Returns the warnings.
    """
    images = {image['id']: image for image in coco['images']}
    kinds = {'degenerate': [], 'under1': [], 'noarea': [], 'outside': [], 'partly': []}
    for i, ann in enumerate(coco['annotations']):
        if ann.get('ignore', False):
            continue
        image = images[ann['image_id']]
        x, y, w, h = ann['bbox']
        name = (f'annotations[{i}] (id {ann.get("id")}, {image["file_name"]!r}, '
                f'bbox {[round(v, 2) for v in ann["bbox"]]})')
        width, height = image['width'], image['height']
        overlap_w = max(0, min(x + w, width) - max(x, 0))
        overlap_h = max(0, min(y + h, height) - max(y, 0))
        if w <= 0 or h <= 0:
            kinds['degenerate'].append(name)
        elif overlap_w * overlap_h == 0:
            kinds['outside'].append(name)
        elif w < 1 or h < 1:
            kinds['under1'].append(name)
        elif 'area' in ann and ann['area'] <= 0:
            kinds['noarea'].append(name)
        elif x < 0 or y < 0 or x + w > width or y + h > height:
            kinds['partly'].append(name)
    total = len(coco['annotations'])
    warnings = []
    dropped = [(len(kinds[k]), text, kinds[k]) for k, text in (
        ('degenerate', 'degenerate (width or height <= 0)'),
        ('under1', 'narrower or lower than 1 pixel'),
        ('noarea', 'with area <= 0'),
        ('outside', 'entirely outside their image')) if kinds[k]]
    if dropped:
        count = sum(n for n, _, _ in dropped)
        parts = '; '.join(f'{n} {text}, e.g. ' + ', '.join(examples[:BOX_EXAMPLES])
                          for n, text, examples in dropped)
        warnings.append(f'{path!r}: mmdet drops {count} of its {total} boxes without a word: '
                        f'{parts}. Fix or remove them to train on what you annotated.')
    if kinds['partly']:
        n = len(kinds['partly'])
        warnings.append(f'{path!r}: {n} of its {total} boxes reach outside their image and are '
                        'used unclipped (box targets beyond the image border), e.g. '
                        + ', '.join(kinds['partly'][:BOX_EXAMPLES]) + '. Clip them to the image.')
    return warnings


def coco_loader_count(coco: dict, dataset: ConfigDict, split: str) -> int:
    """How many images mmdet's ``CocoDataset`` keeps after its ``filter_cfg`` (training
    sets: with ``filter_empty_gt``, images without any annotation of the config's classes,
    whether mmdet keeps its box or not; those smaller than ``min_size``)."""
    filter_cfg = dataset.get('filter_cfg') or {}
    if dataset.get('test_mode', split != 'train') or not filter_cfg:
        return len(coco['images'])
    classes = (dataset.get('metainfo') or {}).get('classes')
    names = {c['id']: c.get('name') for c in coco['categories']}
    wanted = {cid for cid, name in names.items() if not classes or name in classes}
    with_boxes = {ann['image_id'] for ann in coco['annotations'] if ann['category_id'] in wanted}
    count = 0
    for image in coco['images']:
        if filter_cfg.get('filter_empty_gt', False) and image['id'] not in with_boxes:
            continue
        if min(image['width'], image['height']) >= filter_cfg.get('min_size', 0):
            count += 1
    return count


def _sampling(pipeline) -> Optional[dict]:
    return next((t for t in pipeline or [] if t.get('type') in ('UniformSample', 'SampleFrames')),
                None)


def parse_video_line(line: str, delimiter: str = ' ', multi_class: bool = False):
    """One line of an mmaction2 ``VideoDataset`` list, parsed as the data set parses it:
    ``(file, labels)``; raises ValueError with the reason for a line it would choke on
    or misread."""
    fields = line.strip().split(delimiter)
    if not fields[0]:
        raise ValueError('it is blank (mmaction2 would read it as a video named "")'
                         if not line.strip() else 'it starts with the delimiter')
    if multi_class:
        if len(fields) < 2:
            raise ValueError('it has no label')
        labels = fields[1:]
    elif len(fields) == 1:
        raise ValueError('it has no label (mmaction2 would give it label -1, which cannot '
                         'be trained or evaluated)')
    elif len(fields) > 2:
        raise ValueError(f'it has {len(fields)} fields, not 2 (mmaction2 would fail with "too '
                         'many values to unpack"; a doubled delimiter counts as an empty field). '
                         'For several labels per video set multi_class=True and num_classes')
    else:
        labels = fields[1:]
    bad = [v for v in labels if not v.lstrip('-').isdigit()]
    if bad:
        raise ValueError(f'label {bad[0]!r} is not a whole number')
    return fields[0], [int(v) for v in labels]


def check_video_dataset(dataset: ConfigDict, split: str, model: dict,
                        decode: bool = True, findings: Optional[dict] = None) -> int:
    """Checks an mmaction2 ``VideoDataset`` against its files and the model.

    Every line of the list is parsed as the data set parses it (:func:`parse_video_line`:
    the data set's ``delimiter`` and ``multi_class``); every listed video must exist and
    carry labels below the head's class count; with ``decode`` each is opened and its last
    frame decoded, and must hold at least the frames the sampler takes (shorter clips
    would be silently looped or repeated); the sampler's clip length must be the
    backbone's ``num_frames`` when the backbone fixes one. Returns the number of videos.
    """
    ann_file = _join(dataset.get('data_root'), dataset.get('ann_file'))
    prefix = _join(dataset.get('data_root'), (dataset.get('data_prefix') or {}).get('video', ''))
    num_classes = (model.get('cls_head') or {}).get('num_classes')
    delimiter = dataset.get('delimiter', ' ')
    multi_class = dataset.get('multi_class', False)
    with open(ann_file) as f:
        lines = f.read().splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f'{split}: annotation list {ann_file!r} lists no videos.')
    videos = []
    for number, line in enumerate(lines, 1):
        try:
            name, labels = parse_video_line(line, delimiter, multi_class)
        except ValueError as err:
            raise DataError(f'{ann_file!r} line {number} ({line.strip()!r}): {err}. Expected '
                            f'"<video>{delimiter}<label>".') from None
        path = osp.join(prefix, name)
        if not osp.isfile(path):
            raise DataError(f'{split}: video {path!r} (listed in {ann_file!r} line {number}) '
                            f'does not exist.')
        for label in labels:
            if num_classes is not None and not 0 <= label < num_classes:
                raise DataError(f'{ann_file!r} line {number}: label {label} is outside the '
                                f'{num_classes} classes of the model head (0..{num_classes - 1}).')
        videos.append((number, path))
    if findings is not None:
        findings['loader_count'] = len(videos)
    sampler = _sampling(dataset.get('pipeline'))
    need = 1
    if sampler is not None:
        interval = sampler.get('frame_interval', 1) if sampler['type'] == 'SampleFrames' else 1
        need = sampler.get('clip_len', 1) * interval
        num_frames = (model.get('backbone') or {}).get('num_frames')
        if num_frames and sampler.get('clip_len') != num_frames:
            raise DataError(f'{split}: the pipeline samples clip_len={sampler.get("clip_len")} '
                            f'frames, but the backbone is configured for num_frames='
                            f'{num_frames}; make them equal.')
    if not decode:
        return len(videos)

    def check(item):
        number, path = item
        frames = count_video_frames(path, f'{ann_file} line {number}')
        if frames < need:
            raise DataError(f'{split}: video {path!r} has {frames} frames, fewer than the '
                            f'{need} that {sampler["type"]} takes per clip; such clips would '
                            f'repeat frames. Drop or re-encode it.')

    return _progress(videos, check, f'{split} videos', findings)


#: Serialises opening videos. decord's bundled FFmpeg builds a decoder's static tables
#: on its first open without a lock; two threads opening at once can both build them and
#: abort the process ("incorrect codes", libavcodec/bitstream.c). Decoding runs in parallel.
_VIDEO_OPEN_LOCK = threading.Lock()


def count_video_frames(path: str, listed: str = '') -> int:
    """Number of decodable frames, or :class:`DataError` for unreadable files."""
    try:
        import decord
        with _VIDEO_OPEN_LOCK:
            reader = decord.VideoReader(path, num_threads=1)
        count = len(reader)
        if count:
            reader[count - 1]  # the last frame decodes too (catches truncated files)
    except Exception as err:  # decord raises its own DECORDError, RuntimeError, ...
        where = f' (listed in {listed})' if listed else ''
        raise DataError(f'video {path!r}{where} cannot be decoded '
                        f'({str(err).splitlines()[0][:200]}); re-download or re-encode it, '
                        'or remove it from the list.') from err
    return count


def _label_backend(pipeline) -> str:
    """The decoder mmseg's ``LoadAnnotations`` of this pipeline reads label maps with."""
    for transform in pipeline or []:
        if isinstance(transform, dict) and str(transform.get('type', '')).endswith(
                'LoadAnnotations'):
            return transform.get('imdecode_backend', 'pillow')
    return 'pillow'


def read_label_map(path: str, backend: str = 'pillow'):
    """A label map as mmseg's ``LoadAnnotations`` reads it: ``mmcv.imfrombytes(...,
    flag='unchanged')`` with the pipeline's backend (Pillow by default, which gives a
    palette ('P') PNG's indices, not its colours). None if it cannot be decoded."""
    import mmcv
    with open(path, 'rb') as f:
        content = f.read()
    try:
        return mmcv.imfrombytes(content, flag='unchanged', backend=backend)
    except Exception:  # a corrupt file fails in the decoder's own way
        return None


def _list_images(folder: str, suffix: str) -> List[str]:
    """Files under ``folder`` ending in ``suffix``, recursively, relative to it (as mmseg's
    ``BaseSegDataset`` lists them)."""
    if not osp.isdir(folder):
        raise DataError(f'{folder!r} does not exist or is not a folder.')
    found = []
    for entry in _walk(folder):
        path = entry.split('|')[0]
        if path.endswith(suffix):
            found.append(osp.relpath(path, folder))
    return sorted(found)


def check_segmentation_dataset(dataset: ConfigDict, split: str, model: dict,
                               decode: bool = True, findings: Optional[dict] = None) -> int:
    """Checks every image / label-map pair of an mmseg data set; returns their number.

    Every image needs a label map of the same height and width whose values are class
    indices of the model head (after ``reduce_zero_label``: 0 becomes ignored and v
    becomes v - 1) or the ignore value 255. Label maps are decoded as mmseg decodes them
    (:func:`read_label_map`); images are decoded in full (``decode``) or their headers
    read.
    """
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
    backend = _label_backend(dataset.get('pipeline'))
    images = _list_images(img_dir, img_suffix)
    if not images:
        raise DataError(f'{kind} for {split}: no *{img_suffix} images in {img_dir!r}.')
    if findings is not None:
        findings['loader_count'] = len(images)

    def check(name):
        img_path = osp.join(img_dir, name)
        seg_path = osp.join(seg_dir, name[:-len(img_suffix)] + seg_suffix)
        if not osp.isfile(seg_path):
            raise DataError(f'{kind} for {split}: image {name!r} has no label map {seg_path!r}.')
        image_size = _image_size(img_path, decode)
        label = read_label_map(seg_path, backend)
        if label is not None and label.ndim == 3 and label.shape[2] == 1:
            label = label[:, :, 0]  # (mmseg squeezes it)
        if label is None:
            raise DataError(f'{kind} for {split}: {seg_path!r} cannot be decoded as an image '
                            f'(as mmseg reads it, with {backend}).')
        if image_size != (label.shape[1], label.shape[0]):
            raise DataError(f'{kind} for {split}: label map {seg_path!r} is {label.shape[1]}x'
                            f'{label.shape[0]} but its image is {image_size[0]}x'
                            f'{image_size[1]} (width x height); they must match pixel for pixel.')
        if label.ndim != 2:
            raise DataError(f'{kind} for {split}: label map {seg_path!r} has '
                            f'{label.shape[2]} channels as mmseg reads it ({backend}); it must '
                            'be single-channel class indices (a grayscale or palette PNG).')
        if label.dtype != np.uint8 and label.size and int(label.max()) > 255:
            raise DataError(f'{kind} for {split}: label map {seg_path!r} holds values up to '
                            f'{int(label.max())} ({label.dtype}); mmseg casts label maps to '
                            '8 bits, so they would wrap around. Store class indices 0..255.')
        if num_classes:
            # Stored values: class indices (+ 1 with reduce_zero_label, where 0 = ignore)
            # or 255 = ignore.
            top = num_classes if reduce_zero else num_classes - 1
            if int(label.max()) > top:
                bad = [int(v) for v in np.unique(label) if top < v != 255]
                if bad:
                    raise DataError(
                        f'{kind} for {split}: label map {seg_path!r} holds values {bad[:10]}, '
                        f'outside the {num_classes} classes of the model head'
                        + (' (with reduce_zero_label the stored values are class + 1, 0 = '
                           'ignore)' if reduce_zero else '') + ' and not the ignore value 255.')

    return _progress(images, check, f'{split} {kind} samples', findings)


def _image_size(path: str, decode: bool = False) -> Tuple[int, int]:
    """(width, height) of an image; :class:`DataError` if it is missing or unreadable.

    ``decode`` reads every pixel (a truncated or corrupt file fails here, not in the
    middle of training); otherwise only the header is read.
    """
    from PIL import Image
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            return image.size
    except FileNotFoundError:
        raise DataError(f'image {path!r} does not exist.') from None
    except Exception as err:
        raise DataError(f'image {path!r} cannot be {"decoded" if decode else "read"} '
                        f'({_brief(err)}); re-download or regenerate it, or remove it from '
                        'the data set.') from None


def _brief(err: BaseException) -> str:
    return ' '.join(str(err).split())[:200] or type(err).__name__


def check_coco_images(dataset: ConfigDict, split: str, decode: bool = True,
                      findings: Optional[dict] = None) -> int:
    """Every image a COCO annotation file lists exists, decodes (``decode``; else its
    header is read) and has the size the file states (boxes are in those pixels); image
    ids are unique. What mmdet would do to the boxes goes to ``findings['warnings']``, the
    number of images it keeps to ``findings['loader_count']``. Returns the number of
    images."""
    root = dataset.get('data_root')
    ann_file = _join(root, dataset['ann_file'])
    img_dir = _join(root, (dataset.get('data_prefix') or {}).get('img', '')) or ''
    with open(ann_file) as f:
        coco = json.load(f)
    images = coco['images']
    check_coco_image_ids(coco, ann_file)  # (large files skip it in the structure check)
    if findings is not None:
        findings.setdefault('warnings', []).extend(coco_box_findings(coco, ann_file))
        findings['loader_count'] = coco_loader_count(coco, dataset, split)

    def check(image):
        path = osp.join(img_dir, image['file_name'])
        if not osp.isfile(path):
            raise DataError(f'{split}: image {path!r}, listed in {ann_file!r}, does not exist. '
                            'Restore it or remove it from the annotation file (or pass '
                            '--data-root DIR if the data lives elsewhere).')
        size = _image_size(path, decode)
        if size != (image['width'], image['height']):
            raise DataError(f'{split}: image {path!r} is {size[0]}x{size[1]} but {ann_file!r} '
                            f'says {image["width"]}x{image["height"]} (width x height); its '
                            'boxes would be misplaced. Fix the annotation or the image.')

    return _progress(images, check, f'{split} COCO images', findings)


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


#: mmpretrain ``CustomDataset``'s default image extensions.
CUSTOM_DATASET_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')
#: Data set types that read classes from sub-folders (mmpretrain's ``CustomDataset`` and its
#: subclasses without an annotation file).
CLASS_FOLDER_DATASETS = ('CustomDataset', 'ImageNet', 'ImageNet21k')


def check_image_files(dataset: ConfigDict, split: str, model: dict, decode: bool = True,
                      findings: Optional[dict] = None) -> int:
    """Image-classification sets (mmpretrain ``CustomDataset`` / ``ImageNet``) as
    mmpretrain reads them: ``ann_file`` lines are ``<path> <label>`` split at the last
    space, labels lie below the head's class count; without one, the class folders under
    the prefix are the classes and their number must equal the head's ``num_classes``.
    Every image decodes (``decode``; else its header is read). Returns the number of
    images."""
    root = dataset.get('data_root')
    prefix = (dataset.get('data_prefix') or {}).get('img_path', '') or ''
    img_dir = _join(root, prefix) if prefix else (root or '')
    ann_file = _join(root, dataset.get('ann_file')) if dataset.get('ann_file') else None
    num_classes = (model.get('head') or {}).get('num_classes')
    kind = _type_name(dataset)
    items = []
    if ann_file and osp.isfile(ann_file) and not ann_file.endswith('.json'):
        with_label = dataset.get('with_label', True)
        with open(ann_file) as f:
            lines = f.read().splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                raise DataError(f'{ann_file!r} line {number} is blank; mmpretrain would read it '
                                'as a sample without a file. Remove it.')
            fields = line.strip().rsplit(' ', 1)
            if with_label:
                if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
                    raise DataError(f'{ann_file!r} line {number}: expected "<image path> '
                                    f'<label>", got {line.strip()!r}.')
                label = int(fields[1])
                if num_classes and not 0 <= label < num_classes:
                    raise DataError(f'{ann_file!r} line {number}: label {label} is outside the '
                                    f'{num_classes} classes of the model head.')
            items.append(osp.join(img_dir, fields[0] if with_label else line.strip()))
    elif kind in CLASS_FOLDER_DATASETS and dataset.get('with_label', True):
        items = _class_folder_images(dataset, split, img_dir, num_classes, findings)
    elif img_dir and osp.isdir(img_dir):
        items = [entry.split('|')[0] for entry in _walk(img_dir)
                 if entry.split('|')[0].lower().endswith(IMAGE_SUFFIXES)]
    if not items:
        return 0
    if findings is not None and kind in CLASS_FOLDER_DATASETS:
        findings['loader_count'] = len(items)
    return _progress(items, lambda path: _image_size(path, decode), f'{split} images', findings)


def _class_folder_images(dataset: ConfigDict, split: str, img_dir: str,
                         num_classes: Optional[int], findings: Optional[dict]) -> List[str]:
    """The images of a class-folder set, as mmpretrain's ``CustomDataset`` finds them: the
    classes are the sorted sub-folders of ``img_dir``, the samples every file with one of
    the data set's extensions below them."""
    if not osp.isdir(img_dir):
        raise DataError(f'{_type_name(dataset)} for {split}: {img_dir!r} does not exist or is '
                        'not a folder.')
    folders = sorted(d for d in os.listdir(img_dir) if osp.isdir(osp.join(img_dir, d)))
    where = f'{_type_name(dataset)} for {split} ({img_dir})'
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes and len(classes) != len(folders):
        raise DataError(f'{where}: metainfo.classes names {len(classes)} classes but there are '
                        f'{len(folders)} class folders ({", ".join(folders[:6])}'
                        f'{", ..." if len(folders) > 6 else ""}); make them agree.')
    if num_classes is not None and len(folders) != num_classes:
        shown = ', '.join(folders[:6]) + (', ...' if len(folders) > 6 else '')
        raise DataError(f'{where} has {len(folders)} class folders ({shown or "none"}) but '
                        f'model.head.num_classes={num_classes}. Set model.head.num_classes='
                        f'{len(folders)} (or --cfg-options), or add the missing class folders.')
    extensions = tuple(e.lower() for e in dataset.get('extensions') or CUSTOM_DATASET_EXTENSIONS)
    items, empty = [], []
    for folder in folders:
        found = [entry.split('|')[0] for entry in _walk(osp.join(img_dir, folder))
                 if entry.split('|')[0].lower().endswith(extensions)]
        if not found:
            empty.append(folder)
        items += found
    if empty and findings is not None:
        findings.setdefault('warnings', []).append(
            f'{where}: {len(empty)} class folders hold no image ({", ".join(empty[:6])}); '
            f'those classes are never trained on (extensions read: {", ".join(extensions)}).')
    return items


def insert_sample_guards(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Wraps the data sets' pipelines of ``splits`` in :class:`emo_mm.checks.guard.SampleGuard`.

    The guard names the file when a transform fails on a sample and checks labels against
    the model head's class count right after loading.
    """
    heads = _head_classes(cfg.get('model') or {})
    num_classes = heads[0][1] if heads else None
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for dataset in iter_datasets(loader.get('dataset')):
            pipeline = dataset.get('pipeline')
            if not pipeline or any(isinstance(t, dict) and t.get('type') == 'emo_mm.SampleGuard'
                                   for t in pipeline):
                continue
            dataset['pipeline'] = [dict(type='emo_mm.SampleGuard', transforms=list(pipeline),
                                        num_classes=num_classes)]
