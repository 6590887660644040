"""Speed of deploy bundles of one config side by side (e.g. fp32 against int8), in one run.

    python tools/analysis_tools/benchmark_bundles.py configs/demo/retinanet_emov2_1m_demo.py \\
        bundles/retina_fp32 bundles/retina_int8 --threads 1 --repeat 5

Each bundle runs with :class:`emo_mm.deploy.Predictor` on the same ``--images`` files of
the config's test split, preprocessed once beforehand: what is timed is the graph(s),
``Predictor.infer``, one image (or clip) per call, as the bundle runs in an application.
The bundles are timed in interleaved rounds (every bundle once per round, ``--min-time``
seconds each, after ``--warmup`` untimed passes); the table gives each bundle's median
images per second over the rounds and its ratio to the first bundle's, by two clocks:
wall time, and the CPU time of this process (all its threads), which other processes'
load changes less.

``--torch-checkpoint CKPT`` adds the config's PyTorch model with these weights (deploy
mode, wrapped as the bundle's graph computes it: class probabilities, segmentation logits
at the input size, averaged clip scores) in fp32 and in bf16 autocast, fed the same
preprocessed inputs, so that a bf16 runtime is compared with the bundles in the same run
(classification, segmentation with whole-image inference, video; detectors and sliding-window
segmentors are evaluated but not timed).

``--evaluate`` also measures each bundle's accuracy with the toolbox's metric on the
config's test split (the test loop and evaluator of ``tools/test.py CONFIG BUNDLE``) and
prints the precision table of docs/deploy.md: per bundle its precision, the nodes its
int8 sensitivity pass kept in float, the metric and its change from the first bundle, and
the speed ratios, as a Markdown table (``--markdown``) or plain text. With
``--torch-checkpoint`` the table also has the checkpoint's own metric in fp32 and with the
network under bf16 autocast (``tools/test.py CONFIG CKPT [--bf16]``):

    python tools/analysis_tools/benchmark_bundles.py configs/demo/ssdlite_emov2_1m_demo.py \
        bundles/ssd_fp32 bundles/ssd_int8 --evaluate --markdown
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.engine import run_cli
from emo_mm.engine.errors import UserError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the config the bundles were exported from')
    parser.add_argument('bundles', nargs='+', help='bundle folders; ratios refer to the first')
    parser.add_argument('--images', type=int, default=16,
                        help='test-split files each pass runs (default 16)')
    parser.add_argument('--threads', type=int, default=1, help='onnxruntime threads (1)')
    parser.add_argument('--repeat', type=int, default=3, help='interleaved rounds (3)')
    parser.add_argument('--min-time', type=float, default=2.0,
                        help='seconds per bundle per round (2)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed passes (1)')
    parser.add_argument('--torch-checkpoint', default=None, metavar='CKPT',
                        help='also time the PyTorch model with these weights in fp32 and bf16 '
                        'autocast; with --evaluate, also measure its metric in both')
    parser.add_argument('--evaluate', action='store_true',
                        help="also measure each bundle's metric on the test split (the "
                        "toolbox's evaluator) and print the precision table")
    parser.add_argument('--metric', nargs='+', default=None, metavar='KEY',
                        help='the metrics of the table (default: the first of '
                        f'{"; ".join(" and ".join(m) for m in MAIN_METRICS)} the evaluator '
                        'reports)')
    parser.add_argument('--markdown', action='store_true',
                        help='print the precision table as Markdown (docs/deploy.md)')
    return parser.parse_args(argv)


#: The metrics a precision table shows by default: the first of these the evaluator gives.
MAIN_METRICS = (('coco/bbox_mAP', 'coco/bbox_mAP_50'), ('mIoU', ), ('mDice', ),
                ('accuracy/top1', ), ('acc/top1', ))


#: Metric prefixes of evaluators that report fractions in [0, 1] (mmdet's COCO metric,
#: mmaction's accuracy); mmpretrain, mmseg and U-EMO's Dice report percent.
FRACTION_METRICS = ('coco/', 'acc/')


def evaluate_bundle(config: str, bundle: str, threads: int, work_dir: str, name: str) -> dict:
    """The metrics of ``tools/test.py CONFIG BUNDLE``: the config's test loop and
    evaluator, with the bundle as the model. ``name`` must differ between the
    evaluations of one process: MMEngine keeps one logger and visualizer per name."""
    from mmengine.runner import Runner

    from emo_mm.apis import find_config
    from emo_mm.deploy.runner import prepare_bundle_test_config
    cfg = _test_config(config, None, work_dir, name)
    prepare_bundle_test_config(cfg, find_config(config), bundle, threads)
    return dict(Runner.from_cfg(cfg).test())


def _test_config(config: str, checkpoint, work_dir: str, name: str):
    """tools/test.py's config, quiet, under an experiment and visualizer ``name``."""
    from emo_mm.engine import prepare_test_config
    cfg = prepare_test_config(config, checkpoint, work_dir=work_dir)
    cfg.log_level = 'WARNING'
    cfg.experiment_name = name
    cfg.visualizer = dict(cfg.get('visualizer') or {}, name=name)
    return cfg


def evaluate_checkpoint(config: str, checkpoint: str, bf16: bool, work_dir: str,
                        name: str) -> dict:
    """The metrics of ``tools/test.py CONFIG CKPT [--bf16]``: the PyTorch model in fp32, or
    its network under CPU bf16 autocast with the post-processing in fp32."""
    from mmengine.runner import Runner

    from emo_mm.deploy.precision import autocast_network
    runner = Runner.from_cfg(_test_config(config, checkpoint, work_dir, name))
    if bf16:
        autocast_network(runner.model)
    return dict(runner.test())


def main_metrics(metrics: dict, keys=None) -> tuple:
    """``keys`` (checked against the evaluator's metrics), or the first of
    :data:`MAIN_METRICS` the evaluator gives."""
    if keys:
        missing = [key for key in keys if key not in metrics]
        if missing:
            raise UserError(f'--metric {" ".join(missing)}: not among the evaluator\'s metrics '
                            f'{sorted(metrics)}.')
        return tuple(keys)
    for names in MAIN_METRICS:
        if all(name in metrics for name in names):
            return names
    raise UserError(f'None of {[m for names in MAIN_METRICS for m in names]} is among the '
                    f'evaluator\'s metrics {sorted(metrics)}; name them with --metric.')


def float_nodes(manifest: dict) -> str:
    """What an int8 bundle keeps in float, as its sensitivity pass chose: node and group
    counts (the groups' names and reasons are in deploy.json)."""
    quantization = manifest.get('quantization')
    if not quantization:
        return '-'
    nodes = quantization.get('float_nodes') or []
    groups = quantization.get('float_reasons') or []
    attention = (quantization.get('config') or {}).get('float_attention')
    chosen = f'{len(nodes)} nodes in {len(groups)} groups' if nodes else ''
    if attention:
        return 'attention core' + (f' + {chosen}' if chosen else '')
    return chosen or 'none'


def precision_table(rows, metrics: tuple, markdown: bool) -> str:
    """Rows: dicts of name, precision, float, values (metric -> value), wall / cpu img/s
    (None: not timed; the first row must be timed). Metrics in [0, 1]
    (:data:`FRACTION_METRICS`) are shown in percent, as the others are."""
    first = rows[0]
    head = ['bundle', 'precision', 'kept in float']
    for metric in metrics:
        head += [metric, 'change']
    head += ['img/s (CPU clock)', 'x first', 'img/s (wall)', 'x first']
    cells = []
    for r in rows:
        line = [r['name'], r['precision'], r['float']]
        for metric in metrics:
            scale = 100. if metric.startswith(FRACTION_METRICS) else 1.
            line += [f'{scale * r["values"][metric]:.2f}',
                     f'{scale * (r["values"][metric] - first["values"][metric]):+.2f}']
        if r['cpu'] is None:  # evaluated, not timed
            line += ['-'] * 4
        else:
            line += [f'{r["cpu"]:.1f}', f'{r["cpu"] / first["cpu"]:.2f}', f'{r["wall"]:.1f}',
                     f'{r["wall"] / first["wall"]:.2f}']
        cells.append(line)
    if markdown:
        lines = ['| ' + ' | '.join(head) + ' |',
                 '|' + '|'.join(['---'] * 3 + ['---:'] * (len(head) - 3)) + '|']
        return '\n'.join(lines + ['| ' + ' | '.join(c) + ' |' for c in cells])
    widths = [max(len(x) for x in column) for column in zip(head, *cells)]
    return '\n'.join('  '.join(f'{x:<{w}}' for x, w in zip(line, widths))
                     for line in [head] + cells)


def timed_pass(predictor, metas, min_time: float):
    """(images per wall second, images per CPU second) over whole passes of ``metas``."""
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        for meta in metas:
            predictor.infer(meta)
        count += len(metas)
        elapsed = time.perf_counter() - wall
        if elapsed >= min_time:
            return count / elapsed, count / max(time.process_time() - cpu, 1e-9)


class TorchRunner:
    """The config's PyTorch model behind ``Predictor.infer``'s interface (for timing)."""

    UNTIMED = ('--torch-checkpoint times classifiers, whole-image segmentors and video '
               'models (the detector graph\'s NMS and the sliding window are not timed in '
               'torch).')

    @staticmethod
    def times(task: str, post: dict) -> bool:
        """Whether the bundle's task is one this runner times."""
        return (task in ('classification', 'segmentation', 'video')
                and post.get('mode', 'whole') == 'whole')

    def __init__(self, cfg, checkpoint: str, task: str, post: dict, bf16: bool):
        from emo_mm.deploy import graphs
        from emo_mm.deploy.export import build_model
        from emo_mm.utils.onnx import switch_to_deploy
        wrappers = dict(classification=graphs.ClassifierGraph,
                        segmentation=graphs.SegmentorGraph, video=graphs.RecognizerGraph)
        if not self.times(task, post):
            raise UserError(self.UNTIMED)
        model = build_model(cfg, checkpoint)
        switch_to_deploy(model)
        self.model = wrappers[task](model).eval()
        self.task, self.post, self.bf16 = task, post, bf16
        self.manifest = dict(precision=self.precision(bf16))

    @staticmethod
    def precision(bf16: bool) -> str:
        """The precision column of a PyTorch row."""
        return 'bf16 autocast (torch)' if bf16 else 'fp32 (torch)'

    def infer(self, meta):
        import torch

        from emo_mm.deploy.predictor import graph_feeds
        feeds = graph_feeds(self.task, self.post, meta)[0]
        image = torch.from_numpy(feeds['clips' if self.task == 'video' else 'image'])
        with torch.inference_mode(), torch.autocast('cpu', torch.bfloat16, enabled=self.bf16):
            return self.model(image)


def main(argv=None):
    args = parse_args(argv)
    from emo_mm.apis import find_config, load_config
    from emo_mm.deploy import Predictor
    from emo_mm.deploy.calibration import split_files
    if len(set(args.bundles)) != len(args.bundles):
        raise UserError('A bundle is named twice; give each bundle folder once.')
    cfg = load_config(find_config(args.config))
    files = split_files(cfg, 'test', args.images)
    predictors = [Predictor(bundle, threads=args.threads) for bundle in args.bundles]
    tasks = {p.task for p in predictors}
    if len(tasks) > 1:
        raise UserError(f'The bundles are of different tasks ({", ".join(sorted(tasks))}); '
                        'compare bundles of one config.')
    inputs = [[p.preprocess(path) for path in files] for p in predictors]
    names = list(args.bundles)
    torch_timed = False
    if args.torch_checkpoint:
        import torch
        torch.set_num_threads(args.threads)
        first = predictors[0]
        torch_timed = TorchRunner.times(first.task, first.post)
        if not (torch_timed or args.evaluate):
            raise UserError(TorchRunner.UNTIMED)
        if not torch_timed:
            print(f'{TorchRunner.UNTIMED[:-1]}; the PyTorch rows are evaluated only.')
        for bf16 in (False, True) if torch_timed else ():
            predictors.append(TorchRunner(cfg, args.torch_checkpoint, first.task, first.post,
                                          bf16))
            inputs.append(inputs[0])
            names.append('torch ' + osp.basename(args.torch_checkpoint))
    for predictor, metas in zip(predictors, inputs):
        for _ in range(args.warmup):
            for meta in metas:
                predictor.infer(meta)
    rounds = [[] for _ in predictors]
    for _ in range(args.repeat):
        for i, (predictor, metas) in enumerate(zip(predictors, inputs)):
            rounds[i].append(timed_pass(predictor, metas, args.min_time))
    print(f'{len(files)} test files of {args.config}, {args.threads} thread(s), '
          f'{args.repeat} interleaved rounds of {args.min_time:g} s; medians')
    print(f'{"bundle":40s} {"precision":22s} {"img/s wall":>10s} {"ratio":>6s} '
          f'{"img/s cpu":>10s} {"ratio":>6s}')
    base_wall = statistics.median(r[0] for r in rounds[0])
    base_cpu = statistics.median(r[1] for r in rounds[0])
    speeds = []
    for bundle, predictor, measured in zip(names, predictors, rounds):
        wall = statistics.median(r[0] for r in measured)
        cpu = statistics.median(r[1] for r in measured)
        speeds.append((wall, cpu))
        print(f'{bundle:40s} {predictor.manifest["precision"]:22s} {wall:10.1f} '
              f'{wall / base_wall:6.2f} {cpu:10.1f} {cpu / base_cpu:6.2f}')
    if not args.evaluate:
        return 0
    rows, metric = [], None
    with tempfile.TemporaryDirectory(prefix='emo_mm_bundle_eval.') as work_dir:
        for index, (bundle, predictor, (wall, cpu)) in enumerate(
                zip(args.bundles, predictors, speeds)):
            print(f'evaluating {bundle} on the test split', flush=True)
            metrics = evaluate_bundle(args.config, bundle, args.threads, work_dir,
                                      f'bundle_eval_{index}')
            metric = metric or main_metrics(metrics, args.metric)
            rows.append(dict(name=bundle, precision=predictor.manifest['precision'],
                             float=float_nodes(predictor.manifest),
                             values={m: float(metrics[m]) for m in metric}, wall=wall, cpu=cpu))
        if args.torch_checkpoint:
            timed = speeds[len(args.bundles):] if torch_timed else [(None, None)] * 2
            for bf16, (wall, cpu) in zip((False, True), timed):
                precision = TorchRunner.precision(bf16)
                print(f'evaluating {args.torch_checkpoint} in {precision}', flush=True)
                metrics = evaluate_checkpoint(args.config, args.torch_checkpoint, bf16,
                                              work_dir, f'torch_eval_{int(bf16)}')
                rows.append(dict(name='torch ' + osp.basename(args.torch_checkpoint),
                                 precision=precision, float='-',
                                 values={m: float(metrics[m]) for m in metric},
                                 wall=wall, cpu=cpu))
    print(f'\n{args.config}: the toolbox\'s metrics on the whole test split; speed on '
          f'{len(files)} of its files, {args.threads} thread(s), median of {args.repeat} '
          'interleaved rounds')
    print(precision_table(rows, metric, args.markdown))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
