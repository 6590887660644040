"""`make demo`: train RetinaNet-EMOv2 on a generated COCO-format set on the CPU, in minutes.

1. generates data/demo_coco (shapes on textured backgrounds, boxes and masks);
2. pretrains the EMOv2-1M backbone on generated shapes (the bundled stand-in for ImageNet
   weights, about 1.5 CPU minutes, once);
3. trains configs/demo/retinanet_emov2_1m_demo.py with a progress bar;
4. evaluates the final checkpoint (COCO bbox mAP table) and draws its predictions.
"""
import argparse
import glob
import os.path as osp

import emo_mm  # noqa: F401  (first: applies emo_mm.compat)
from emo_mm.datasets.demo_backbone import pretrain_shapes_backbone
from emo_mm.datasets.demo_data import make_coco_shapes
from emo_mm.engine import prepare_test_config, prepare_train_config

CONFIG = 'configs/demo/retinanet_emov2_1m_demo.py'


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo_retinanet')
    parser.add_argument('--epochs', type=int, default=None, help='override the demo schedule')
    args = parser.parse_args()
    from mmengine.runner import Runner

    print(f'[demo] data: {make_coco_shapes("data/demo_coco")}')
    print('[demo] backbone pretrained on generated shapes (written once, ~1.5 min): '
          f'{pretrain_shapes_backbone()}')
    options = dict(custom_hooks=[dict(type='emo_mm.ProgressBarHook')],
                   default_hooks=dict(logger=dict(interval=1000)))
    if args.epochs:
        options['train_cfg'] = dict(max_epochs=args.epochs, val_interval=args.epochs)
    cfg = prepare_train_config(CONFIG, work_dir=args.work_dir, cfg_options=options)
    print(f'[demo] training {CONFIG} on the CPU (work dir {args.work_dir})')
    runner = Runner.from_cfg(cfg)
    runner.train()
    checkpoint = osp.join(args.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')

    show_dir = osp.abspath(osp.join(args.work_dir, 'predictions'))
    cfg = prepare_test_config(CONFIG, checkpoint, work_dir=args.work_dir, show_dir=show_dir,
                              score_thr=0.3)
    print(f'[demo] evaluating {checkpoint}')
    metrics = Runner.from_cfg(cfg).test()
    images = sorted(glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True))
    print(f'\n[demo] bbox mAP {metrics["coco/bbox_mAP"]:.3f}, '
          f'mAP@0.5 {metrics["coco/bbox_mAP_50"]:.3f}')
    print(f'[demo] {len(images)} images with predictions in {show_dir}, e.g.')
    for path in images[:4]:
        print(f'         {path}')


if __name__ == '__main__':
    main()
