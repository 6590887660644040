"""End-to-end speed of deploy bundles: image in, results out, side by side with peers.

``tools/analysis_tools/benchmark.py --end-to-end detection|segmentation|BUNDLE ...`` runs
this. Each row is a bundle run by :class:`~emo_mm.deploy.Predictor` on one image file: decoding, the
config's test-pipeline replay, the graph (with its NMS or resize + arg-max) and the
conversion to plain results are all timed. The stage split (preprocess / infer /
postprocess) says where the time goes; ``--profile`` adds onnxruntime's per-operator
kernel time of the graph.

The peers are exported by the same code (:func:`~emo_mm.deploy.export.export_bundle`)
from the toolboxes' own configs, so both sides pay the same pre- and post-processing.
Weights are the configs' initialisation: speed does not depend on their values, except
that a detector's NMS sees the boxes that pass its score threshold, which the table
reports per row.
"""
import os
import os.path as osp
import statistics
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np


class E2EModel(NamedTuple):
    """One benchmarked bundle: a config (a path, an emo_mm config name, or ``pkg::path``
    of a toolbox's config) and the fixed input size of its graph (None: the pipeline's)."""
    config: str
    input_size: Optional[Tuple[int, int]] = None


#: The default rows per task; the last one is the baseline of the ratios.
E2E_MODELS: Dict[str, Dict[str, E2EModel]] = {
    'detection': {
        'SSDLite-EMOv2-1M': E2EModel('ssdlite_emov2_1m_320_coco'),
        'SSDLite-EMOv2-5M': E2EModel('ssdlite_emov2_5m_320_coco'),
        'SSDLite-MobileNetV2': E2EModel(
            'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'),
    },
    'segmentation': {
        'DeepLabv3-EMOv2-1M': E2EModel('deeplabv3_emov2_1m_ade20k', (512, 512)),
        'DeepLabv3-EMOv2-5M': E2EModel('deeplabv3_emov2_5m_ade20k', (512, 512)),
        'DeepLabv3-MobileNetV2': E2EModel(
            'mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py',
            (512, 512)),
    },
}

#: The test image per task (H, W): a 4:3 photo size for detectors (their pipeline resizes
#: it to 320x320), the ADE20K crop size for segmentors.
E2E_IMAGE_SIZE = {'detection': (480, 640), 'segmentation': (512, 512)}


def test_image(size: Tuple[int, int], path: str) -> str:
    """Writes a smooth random image with a few filled shapes (PNG) and returns its path."""
    import cv2
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (*size, 3)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 5)
    height, width = size
    for _ in range(6):
        x, y = int(rng.randint(0, width)), int(rng.randint(0, height))
        radius = int(rng.randint(height // 12, height // 5))
        color = tuple(int(c) for c in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:
            cv2.circle(image, (x, y), radius, color, -1)
        else:
            cv2.rectangle(image, (x - radius, y - radius), (x + radius, y + radius), color, -1)
    cv2.imwrite(path, image)
    return path


def peer_config(config: str, folder: str) -> str:
    """A toolbox config named ``pkg::path`` as a one-line file inheriting it (the deploy
    tool takes files and emo_mm config names)."""
    if '::' not in config or config.startswith('emo_mm::'):
        return config
    path = osp.join(folder, config.replace('::', '_').replace('/', '_'))
    with open(path, 'w') as f:
        f.write(f'_base_ = [{config!r}]\n')
    return path


def build_bundle(name: str, model: E2EModel, folder: str) -> str:
    """Exports ``model`` into ``folder/<name>`` once (kept for later runs)."""
    from .bundle import is_bundle
    from .export import export_bundle
    out = osp.join(folder, name)
    if not is_bundle(out):
        os.makedirs(folder, exist_ok=True)
        export_bundle(peer_config(model.config, folder), None, out,
                      input_size=model.input_size)
    return out


class Row(NamedTuple):
    name: str
    bundle: str
    params: Optional[int]
    results: str  # what the predictions hold (boxes found / classes in the map)


def _describe(result: Dict, task: str) -> str:
    if task == 'detection':
        return f'{len(result["boxes"])} boxes'
    if task == 'segmentation':
        return f'{len(np.unique(result["label_map"]))} classes in the map'
    return f'top-1 {result["classes"][0]}'


def _graph_params(bundle: str) -> Optional[int]:
    """Parameters in the bundle's network graph (its initializers' elements)."""
    try:
        import onnx

        from .bundle import graph_path, read_bundle
        graph = onnx.load(graph_path(read_bundle(bundle, verify=False), 'model'),
                          load_external_data=False)
        return int(sum(np.prod(t.dims) for t in graph.graph.initializer))
    except Exception:  # noqa: B902 - a count for the table only
        return None


def time_stages(predictor, image: str, min_time: float) -> Dict[str, float]:
    """Seconds per call of each stage (and the whole), over at least ``min_time`` s."""
    spent = dict(preprocess=0., infer=0., postprocess=0.)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        meta = predictor.preprocess(image)
        t1 = time.perf_counter()
        outputs = predictor.infer(meta)
        t2 = time.perf_counter()
        predictor.postprocess(outputs)
        t3 = time.perf_counter()
        spent['preprocess'] += t1 - t0
        spent['infer'] += t2 - t1
        spent['postprocess'] += t3 - t2
        calls += 1
    per_call = {stage: total / calls for stage, total in spent.items()}
    per_call['total'] = sum(per_call.values())
    return per_call


def run_end_to_end(targets: Sequence[str], threads: Optional[int], min_time: float,
                   warmup: int, rounds: int, baseline: Optional[str], bundle_dir: str,
                   profile: int = 0) -> Tuple[List[dict], str]:
    """Benchmarks the tasks' default rows and/or bundle folders; returns rows and table.

    Args:
        targets: ``'detection'``, ``'segmentation'`` (their :data:`E2E_MODELS`) or bundle
            folders written by ``tools/deploy.py``.
        threads: onnxruntime intra-op threads.
        rounds: timing rounds over all rows (interleaved); medians are reported.
        baseline: the row the ratios refer to (default: each task's last default row,
            the peer, or the first bundle).
        bundle_dir: where the default rows' bundles are exported (and reused).
        profile: print the N operators with the most kernel time of each graph.
    """
    from .predictor import Predictor
    entries: List[Tuple[str, str, str]] = []  # (name, bundle, task)
    for target in targets:
        if target in E2E_MODELS:
            for name, model in E2E_MODELS[target].items():
                print(f'[end-to-end] bundle {name}: {model.config}', flush=True)
                entries.append((name, build_bundle(name, model, bundle_dir), target))
        else:
            predictor = Predictor(target, verify=False)
            entries.append((osp.basename(osp.normpath(target)), target, predictor.task))
    images: Dict[str, str] = {}
    os.makedirs(bundle_dir, exist_ok=True)
    rows = []
    for name, bundle, task in entries:
        if task not in images:
            images[task] = test_image(E2E_IMAGE_SIZE.get(task, (480, 640)),
                                      osp.join(bundle_dir, f'{task}_input.png'))
        predictor = Predictor(bundle, threads=threads)
        for _ in range(warmup):
            result = predictor(images[task])
        rows.append(dict(model=name, task=task, bundle=bundle, predictor=predictor,
                         params=_graph_params(bundle), results=_describe(result, task),
                         size='x'.join(map(str, predictor.preprocess(images[task])
                                           ['inputs'].shape[-2:])),
                         runs=[]))
    for _ in range(rounds):  # interleaved: a slow phase of the machine hits every row
        for row in rows:
            row['runs'].append(time_stages(row['predictor'], images[row['task']], min_time))
    for row in rows:
        row['seconds'] = {stage: statistics.median(run[stage] for run in row['runs'])
                          for stage in row['runs'][0]}
        row['images_per_s'] = 1. / row['seconds']['total']
    bases = {}
    for task in {row['task'] for row in rows}:
        defaults = list(E2E_MODELS.get(task, {}))
        names = [row['model'] for row in rows if row['task'] == task]
        bases[task] = (baseline if baseline in names else
                       defaults[-1] if defaults and defaults[-1] in names else names[0])
    speed = {row['model']: row['images_per_s'] for row in rows}
    for row in rows:
        row['baseline'] = bases[row['task']]
        row['ratio'] = row['images_per_s'] / speed[row['baseline']]
    table = format_rows(rows)
    if profile:
        table += '\n' + profile_rows(rows, images, threads, profile)
    for row in rows:
        del row['predictor']
    return rows, table


def format_rows(rows: List[dict]) -> str:
    columns = [('model', 24), ('graph in', 10), ('params M', 9), ('img/s', 8),
               ('x baseline', 11), ('pre ms', 8), ('graph ms', 9), ('post ms', 8),
               ('  predictions', 24)]
    line = ''.join(f'{title:<{width}}' if i in (0, 1, 8) else f'{title:>{width}}'
                   for i, (title, width) in enumerate(columns))
    out = [line, '-' * len(line)]
    for row in rows:
        ms = {stage: 1e3 * value for stage, value in row['seconds'].items()}
        cells = [row['model'][:23], row['size'],
                 f'{row["params"] / 1e6:.2f}' if row['params'] else '-',
                 f'{row["images_per_s"]:.1f}', f'{row["ratio"]:.2f}',
                 f'{ms["preprocess"]:.1f}', f'{ms["infer"]:.1f}', f'{ms["postprocess"]:.2f}',
                 '  ' + row['results']]
        out.append(''.join(f'{cell:<{width}}' if i in (0, 1, 8) else f'{cell:>{width}}'
                           for i, (cell, (_, width)) in enumerate(zip(cells, columns))))
    baselines = sorted({(row['task'], row['baseline']) for row in rows})
    out.append('ratios: img/s over ' + ', '.join(f'{b} ({t})' for t, b in baselines) +
               '; ms: median time per call of each Predictor stage')
    return '\n'.join(out)


def profile_rows(rows: List[dict], images: Dict[str, str], threads: Optional[int],
                 top: int) -> str:
    """onnxruntime's kernel time per operator type of each row's network graph."""
    from ..utils.onnx import operator_kernel_times
    from .bundle import graph_path
    from .predictor import graph_feeds
    out = []
    for row in rows:
        predictor = row['predictor']
        meta = predictor.preprocess(images[row['task']])
        feeds = graph_feeds(predictor.task, predictor.post, meta)[0]
        times = operator_kernel_times(graph_path(predictor.manifest, 'model'), feeds, threads)
        total = sum(times.values()) or 1
        shares = sorted(times.items(), key=lambda kv: -kv[1])[:top]
        out.append(f'{row["model"]}: ' + ', '.join(f'{op} {100 * t / total:.1f}%'
                                                   for op, t in shares))
    return 'graph kernel time per operator type (onnxruntime profiler):\n' + '\n'.join(out)
