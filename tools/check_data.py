"""Check the data a config points at, before spending hours on it.

    python tools/check_data.py configs/deeplabv3_emov2_5m_ade20k.py          # quick
    python tools/check_data.py configs/deeplabv3_emov2_5m_ade20k.py --all    # every sample

tools/train.py and tools/test.py run the quick check by themselves; --all reads every
label map (segmentation) instead of the first few.
"""
import argparse

from mmengine.config import Config

import emo_mm  # noqa: F401
from emo_mm.datasets.checks import check_data, set_data_root


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--all', action='store_true', help='check every sample')
    parser.add_argument('--data-root', help='data set folder, replacing the config\'s data_root')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'])
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    check_data(cfg, args.splits, full=args.all)
    print(f'{args.config}: data for {", ".join(args.splits)} looks right.')


if __name__ == '__main__':
    main()
