"""Check every sample of the data a config points at, before spending hours on it.

    python tools/check_data.py configs/deeplabv3_emov2_5m_ade20k.py
    python tools/check_data.py CONFIG --data-root /data/ade/ADEChallengeData2016
    python tools/check_data.py CONFIG --quick        # structure only (folders, files, classes)
    python tools/check_data.py CONFIG --recheck      # ignore the stamps of passed data sets

Images (headers and sizes), label maps (sizes and values), annotation references and video
containers are all read, with a progress bar; a data set that passed is stamped and skipped
next time while its files are unchanged. tools/train.py and tools/test.py run the same check.
Errors print one or two lines (exit code 2); --debug or EMO_MM_DEBUG=1 shows the traceback.
"""
import argparse

import emo_mm  # noqa: F401
from emo_mm.apis import load_config
from emo_mm.datasets.checks import check_data, set_data_root
from emo_mm.engine import run_cli


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--quick', action='store_true',
                        help='check the structure only, not every sample')
    parser.add_argument('--recheck', action='store_true',
                        help='check data sets again even if they passed unchanged before')
    parser.add_argument('--all', action='store_true',
                        help='(kept for old scripts; every sample is checked by default)')
    parser.add_argument('--data-root', help='data set folder, replacing the config\'s data_root')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'])
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    check_data(cfg, args.splits, full=not args.quick, use_cache=not args.recheck, report=print)
    what = 'structure' if args.quick else 'every sample'
    print(f'{args.config}: {", ".join(args.splits)} data checked ({what}); no problems found.')


if __name__ == '__main__':
    run_cli(main)
