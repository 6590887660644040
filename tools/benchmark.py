"""Inference throughput of EMO classifiers and peers from the installed toolboxes, side by side.

    python tools/benchmark.py                                  # defaults below
    python tools/benchmark.py --models EMOv2-5M EMOv1-5M edgenext-small --batch-sizes 1 16
    python tools/benchmark.py --device cuda --batch-sizes 1 64 256

Every model is an ImageNet classifier at 224x224 in eval mode under inference_mode, timed
for at least --min-time seconds after warm-up; img/s and the ratio to the first model
(or --baseline) are printed for each batch size. Nothing here asserts a speed.
"""
import argparse
import time

import torch

import emo_mm  # noqa: F401  (first: applies emo_mm.compat)

from emo_mm.apis import build_model, load_config
from emo_mm.utils.flops import count_flops

#: peers: display name -> mmpretrain model-index name (architectures only, no weights)
PEERS = {
    'edgenext-small': 'edgenext-small_3rdparty_in1k',
    'edgenext-xsmall': 'edgenext-xsmall_3rdparty_in1k',
    'mobilenet-v2': 'mobilenet-v2_8xb32_in1k',
    'mobilenet-v3-small': 'mobilenet-v3-small_8xb128_in1k',
    'mobilevit-s': 'mobilevit-small_3rdparty_in1k',
    'efficientformer-l1': 'efficientformer-l1_3rdparty_8xb128_in1k',
    'resnet50': 'resnet50_8xb32_in1k',
}
DEFAULT_MODELS = ['EMOv2-1M', 'EMOv2-2M', 'EMOv2-5M', 'EMOv2-20M', 'edgenext-small',
                  'mobilenet-v2', 'resnet50']


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS,
                        help=f'EMOv2-<1M|2M|5M|20M|50M>, EMOv1-<1M|2M|5M|6M> or one of '
                        f'{list(PEERS)}')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s choice)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--min-time', type=float, default=3.0,
                        help='seconds of timed runs per model and batch size')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--baseline', default=None, help='model the ratios refer to')
    parser.add_argument('--eager-attention', action='store_true',
                        help='time EMO attention on the eager path instead of fused SDPA')
    return parser.parse_args()


def build(name: str, eager: bool):
    family, _, arch = name.partition('-')
    if family.lower() in ('emov2', 'emov1') and arch:
        cfg = load_config(f'{family.lower()}_{arch.lower()}_in1k')
        if eager:
            cfg.model.backbone.fused_attn = False
        return build_model(cfg)
    if name in PEERS:
        from mmpretrain import get_model
        return get_model(PEERS[name], pretrained=False)
    raise SystemExit(f'Unknown model {name!r}; use EMOv2-<variant>, EMOv1-<variant> or one '
                     f'of {list(PEERS)}.')


@torch.inference_mode()
def throughput(model, batch: int, size: int, device: str, warmup: int, min_time: float):
    x = torch.rand(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    for _ in range(warmup):
        model(x, mode='tensor')
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        model(x, mode='tensor')
        runs += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and runs >= 3:
            return batch * runs / elapsed


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = args.baseline or args.models[0]
    if baseline not in args.models:
        raise SystemExit(f'--baseline {baseline!r} is not among --models.')
    print(f'torch {torch.__version__}, device {args.device}, threads '
          f'{torch.get_num_threads()}, input {args.size}x{args.size}, eval, '
          f'attention {"eager" if args.eager_attention else "fused (SDPA)"}')
    rows = {}
    for name in args.models:
        model = build(name, args.eager_attention).eval()
        counts = count_flops(model, torch.rand(1, 3, args.size, args.size), mode='tensor')
        model.to(args.device)
        speeds = [throughput(model, b, args.size, args.device, args.warmup, args.min_time)
                  for b in args.batch_sizes]
        rows[name] = (counts['params'], counts['flops'], speeds)
        print(f'  measured {name}: ' + ', '.join(
            f'bs{b} {s:.1f} img/s' for b, s in zip(args.batch_sizes, speeds)), flush=True)

    head = f'{"model":<22}{"params (M)":>11}{"FLOPs (G)":>11}'
    for b in args.batch_sizes:
        head += f'{f"bs{b} img/s":>14}{f"x {baseline}":>16}'
    print('\n' + head)
    print('-' * len(head))
    base = rows[baseline][2]
    for name, (params, flops, speeds) in rows.items():
        line = f'{name:<22}{params / 1e6:>11.2f}{flops / 1e9:>11.3f}'
        for speed, ref in zip(speeds, base):
            line += f'{speed:>14.1f}{speed / ref:>16.2f}'
        print(line)


if __name__ == '__main__':
    main()
