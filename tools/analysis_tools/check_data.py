"""Check every sample of the data a config points at, before spending hours on it.

    python tools/analysis_tools/check_data.py configs/deeplabv3_emov2_5m_ade20k.py
    python tools/analysis_tools/check_data.py CONFIG --data-root /data/ade/ADEChallengeData2016
    python tools/analysis_tools/check_data.py CONFIG --quick    # image headers, not every pixel
    python tools/analysis_tools/check_data.py CONFIG --recheck  # ignore the passed sets' stamps

Images (decoded in full), label maps (read as mmseg reads them: sizes and values),
annotation references, list lines (parsed as the toolbox parses them) and video containers
are all read, with a progress bar; every bad sample is listed. What a toolbox would silently
drop or change (COCO boxes of no size, or outside their image) is reported as a warning with
counts and examples. A data set that passed is stamped and skipped next time while its
files are unchanged. tools/train.py and tools/test.py run the same check.
Errors print one or two lines (exit code 2); --debug or EMO_MM_DEBUG=1 shows the traceback.
"""
import argparse

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.apis import load_config
from emo_mm.checks.data import check_data, set_data_root
from emo_mm.engine import run_cli


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--quick', action='store_true',
                        help='read image headers (sizes) only instead of decoding every image')
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
    warnings = []

    def warn(line):
        warnings.append(line)
        print(f'warning: {line}')

    check_data(cfg, args.splits, decode=not args.quick, use_cache=not args.recheck,
               report=print, warn=warn)
    what = 'image headers' if args.quick else 'every sample decoded'
    found = f'{len(warnings)} warnings (above)' if warnings else 'no problems found'
    print(f'{args.config}: {", ".join(args.splits)} data checked ({what}); {found}.')


if __name__ == '__main__':
    run_cli(main)
