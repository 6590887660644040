"""`make demo`: train RetinaNet-EMOv2-1M on generated shapes on the CPU, in minutes.

1. generates data/demo_det_shapes (four classes, each a shape of its own colour, on smooth
   backgrounds; train and held-out val split);
2. pretrains the EMOv2-1M backbone on other generated shapes (the stand-in for ImageNet
   weights, written once);
3. evaluates the initialised detector on the held-out split, trains
   configs/demo/retinanet_emov2_1m_make-demo.py with seed 0 and evaluates it again;
4. draws ground truth beside predictions for held-out images (demo_grid.png in the work dir).

The recipe is emo_mm.demo.run.run_demo, which tests/test_demo.py runs too: the printed
numbers repeat from run to run on the same kind of machine (CPU, thread count, torch build).
Run it from the repository root.
"""
import argparse
import os

# Before torch starts its OpenMP threads: idle threads sleep instead of spinning, so that on
# a machine whose cores other processes share, a step does not wait for a thread that spins
# while its peer is descheduled. The numbers do not depend on it.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import emo_mm.compat.enable  # noqa: E402,F401  (first emo_mm import: the upstream fixes)
from emo_mm.demo.run import DEMO_SEED, DEMO_WORK_DIR, run_demo  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default=DEMO_WORK_DIR)
    parser.add_argument('--epochs', type=int,
                        help="training epochs (default: the config's; the cosine decay is "
                             'fitted to them)')
    parser.add_argument('--seed', type=int, default=DEMO_SEED,
                        help=f'random seed (default {DEMO_SEED})')
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be at least 1, got {args.epochs}.')
    result = run_demo(args.work_dir, args.epochs, args.seed)
    print(f'\n[demo] {result.summary()}')
    print(f'[demo] checkpoint: {result.checkpoint}')
    print(f'[demo] ground truth | predictions on held-out images: {result.grid}')


if __name__ == '__main__':
    main()
