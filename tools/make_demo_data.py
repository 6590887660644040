"""Generate the bundled demo data sets (deterministic; skipped when already there).

    python tools/make_demo_data.py coco          # data/demo_coco: COCO-format boxes + masks
    python tools/make_demo_data.py all
"""
import argparse

from emo_mm.datasets import demo_data

SETS = {
    'coco': (demo_data.make_coco_shapes, 'data/demo_coco'),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('sets', nargs='+', choices=[*SETS, 'all'])
    parser.add_argument('--root', help='output folder (one set only)')
    args = parser.parse_args()
    names = list(SETS) if 'all' in args.sets else args.sets
    if args.root and len(names) != 1:
        parser.error('--root needs exactly one set')
    for name in names:
        make, default_root = SETS[name]
        print(f'{name}: {make(args.root or default_root)}')


if __name__ == '__main__':
    main()
