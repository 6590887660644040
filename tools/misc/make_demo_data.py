"""Generate the bundled demo data sets (deterministic; skipped when already there).

    python tools/misc/make_demo_data.py coco          # data/demo_coco: COCO-format boxes + masks
    python tools/misc/make_demo_data.py ade20k        # data/demo_ade20k: ADE20K-layout regions
    python tools/misc/make_demo_data.py hrf           # data/demo_hrf: HRF-layout vessel maps
    python tools/misc/make_demo_data.py kinetics      # data/demo_kinetics: K400-layout videos
    python tools/misc/make_demo_data.py shapes_cls    # data/demo_shapes_cls: one shape per image
    python tools/misc/make_demo_data.py shapes_backbone  # EMOv2-1M pretrained on generated shapes,
                                                    # for the demo detection configs (~1.5 min)
    python tools/misc/make_demo_data.py demo_det      # data/demo_det_shapes: make demo's set
    python tools/misc/make_demo_data.py demo_det_backbone  # EMOv2-1M pretrained on such images
    python tools/misc/make_demo_data.py all
"""
import argparse

from emo_mm.demo import data, pretrain
from emo_mm.generation.class_shapes import GEN_SHAPES_ROOT, make_class_shapes

# The default roots are those of configs/demo/_base_/demo_data.py (emo_mm.demo reads it).
SETS = {
    'coco': (data.make_coco_shapes, data.DEMO_SETTINGS.demo_coco_root),
    'ade20k': (data.make_ade20k_regions, data.DEMO_SETTINGS.demo_ade20k_root),
    'hrf': (data.make_hrf_vessels, data.DEMO_SETTINGS.demo_hrf_root),
    'kinetics': (data.make_motion_videos, data.DEMO_SETTINGS.demo_kinetics_root),
    'shapes_cls': (data.make_shapes_classification, data.DEMO_SETTINGS.demo_cls_root),
    'shapes_backbone': (pretrain.pretrain_shapes_backbone, pretrain.SHAPES_BACKBONE),
    'gen_shapes': (make_class_shapes, GEN_SHAPES_ROOT),
    'demo_det': (data.make_demo_det_shapes, data.DEMO_SETTINGS.demo_det_root),
    'demo_det_backbone': (pretrain.pretrain_demo_det_backbone, pretrain.DEMO_DET_BACKBONE),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('sets', nargs='+', choices=[*SETS, 'all'])
    parser.add_argument('--root', help='output folder (checkpoint file for the backbones; '
                                       'one set only)')
    args = parser.parse_args()
    names = list(SETS) if 'all' in args.sets else args.sets
    if args.root and len(names) != 1:
        parser.error('--root needs exactly one set')
    for name in names:
        make, default_root = SETS[name]
        print(f'{name}: {make(args.root or default_root)}')


if __name__ == '__main__':
    main()
