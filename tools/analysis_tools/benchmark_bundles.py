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
(classification, segmentation with whole-image inference, video).
"""
import argparse
import os.path as osp
import statistics
import sys
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
                        'autocast')
    return parser.parse_args(argv)


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

    def __init__(self, cfg, checkpoint: str, task: str, post: dict, bf16: bool):
        from emo_mm.deploy import graphs
        from emo_mm.deploy.export import build_model
        from emo_mm.utils.onnx import switch_to_deploy
        wrappers = dict(classification=graphs.ClassifierGraph,
                        segmentation=graphs.SegmentorGraph, video=graphs.RecognizerGraph)
        if task not in wrappers or post.get('mode', 'whole') != 'whole':
            raise UserError('--torch-checkpoint times classifiers, whole-image segmentors and '
                            'video models (the detector graph\'s NMS is not timed in torch).')
        model = build_model(cfg, checkpoint)
        switch_to_deploy(model)
        self.model = wrappers[task](model).eval()
        self.task, self.post, self.bf16 = task, post, bf16
        self.manifest = dict(precision='bf16 autocast (torch)' if bf16 else 'fp32 (torch)')

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
    if args.torch_checkpoint:
        import torch
        torch.set_num_threads(args.threads)
        first = predictors[0]
        for bf16 in (False, True):
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
    for bundle, predictor, measured in zip(names, predictors, rounds):
        wall = statistics.median(r[0] for r in measured)
        cpu = statistics.median(r[1] for r in measured)
        print(f'{bundle:40s} {predictor.manifest["precision"]:22s} {wall:10.1f} '
              f'{wall / base_wall:6.2f} {cpu:10.1f} {cpu / base_cpu:6.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
