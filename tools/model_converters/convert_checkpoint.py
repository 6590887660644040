"""Convert classifier checkpoints between the authors' layout and mmpretrain's.

    python tools/model_converters/convert_checkpoint.py EMOv2_5M_224.pth emov2_5m_in1k.pth
    python tools/model_converters/convert_checkpoint.py --reverse work_dirs/x/epoch_300.pth \\
        EMOv2_5M_mine.pth

Authors' keys (``stage*``, ``norm.*``, ``head.*``) become ``backbone.*`` and ``head.fc.*`` of
an mmpretrain ImageClassifier (configs/emov2_*_in1k.py), and back with --reverse. Backbone
keys are the same in both, so detection / segmentation configs need no conversion.
"""
import argparse

import torch

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.engine import run_cli
from emo_mm.models.weights import (authors_to_mmpretrain, extract_state_dict, mmpretrain_to_authors,
                                   read_checkpoint)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--reverse', action='store_true', help='mmpretrain -> authors')
    parser.add_argument('--trust', action='store_true',
                        help='unpickle a full training checkpoint (only for files you trust)')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    args = parser.parse_args()
    state = extract_state_dict(read_checkpoint(args.src, weights_only=not args.trust), args.src)
    if args.reverse:
        state = mmpretrain_to_authors(
            {k: v for k, v in state.items() if not k.startswith('data_preprocessor.')})
        torch.save(state, args.dst)
    else:
        torch.save({'state_dict': authors_to_mmpretrain(state)}, args.dst)
    print(f'wrote {len(state)} tensors to {args.dst}')


if __name__ == '__main__':
    run_cli(main)
