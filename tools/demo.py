"""`make demo`: train RetinaNet-EMOv2 on a generated COCO-format set on the CPU, in minutes.

1. generates data/demo_coco (shapes on textured backgrounds, boxes and masks);
2. pretrains the EMOv2-1M backbone on generated shapes (the bundled stand-in for ImageNet
   weights, about 1.5 CPU minutes, once);
3. evaluates the initialised detector, then trains configs/demo/retinanet_emov2_1m_demo.py
   for 6 epochs with seed 0, with a progress bar;
4. evaluates the final checkpoint (COCO bbox mAP table) and draws its predictions.

Seed, epoch count and the evaluation before training are those of the RetinaNet-EMOv2
run in tests/test_learning_detection.py, so the printed numbers repeat from run to run
(on the same machine and torch build) and match that test's.
"""
import argparse
import glob
import os.path as osp

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.demo.data import make_coco_shapes
from emo_mm.demo.pretrain import pretrain_shapes_backbone
from emo_mm.engine import prepare_test_config, prepare_train_config

CONFIG = 'configs/demo/retinanet_emov2_1m_demo.py'
SEED = 0
EPOCHS = 6


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo_retinanet')
    parser.add_argument('--epochs', type=int, default=EPOCHS,
                        help=f'training epochs (default {EPOCHS}; the cosine decay is fitted '
                             'to them)')
    parser.add_argument('--seed', type=int, default=SEED, help=f'random seed (default {SEED})')
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f'--epochs must be at least 1, got {args.epochs}.')
    from mmengine.runner import Runner

    print(f'[demo] data: {make_coco_shapes()}')
    print('[demo] backbone pretrained on generated shapes (written once, ~1.5 min): '
          f'{pretrain_shapes_backbone()}')
    options = dict(
        custom_hooks=[dict(type='emo_mm.ProgressBarHook')],
        default_hooks=dict(logger=dict(interval=1000), checkpoint=dict(interval=args.epochs)),
        randomness=dict(seed=args.seed),
        # no validation during training: the trained model is evaluated once, below
        train_cfg=dict(max_epochs=args.epochs, val_interval=args.epochs + 1))
    # The demo's own work dir: every run trains afresh (said here, not asked for).
    cfg = prepare_train_config(CONFIG, work_dir=args.work_dir, cfg_options=options,
                               overwrite=True)
    cosine = cfg.param_scheduler[1]  # decays to 0 at the last epoch, whatever their number
    cosine.update(end=args.epochs, T_max=args.epochs - cosine.get('begin', 0))
    runner = Runner.from_cfg(cfg)
    print('[demo] evaluating the initialised detector')
    before = runner.test()
    print(f'[demo] training {CONFIG} for {args.epochs} epochs, seed {args.seed}, on the CPU '
          f'(work dir {args.work_dir})')
    runner.train()
    checkpoint = osp.join(args.work_dir, f'epoch_{args.epochs}.pth')

    show_dir = osp.abspath(osp.join(args.work_dir, 'predictions'))
    cfg = prepare_test_config(CONFIG, checkpoint, work_dir=args.work_dir, show_dir=show_dir,
                              score_thr=0.3)
    print(f'[demo] evaluating {checkpoint}')
    after = Runner.from_cfg(cfg).test()
    images = sorted(glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True))
    # CocoMetric returns no keys when a model detects nothing: AP 0
    print(f'\n[demo] bbox mAP {before.get("coco/bbox_mAP", 0.):.3f} -> '
          f'{after["coco/bbox_mAP"]:.3f}, mAP@0.5 {before.get("coco/bbox_mAP_50", 0.):.3f} -> '
          f'{after["coco/bbox_mAP_50"]:.3f} (untrained -> trained, {args.epochs} epochs, '
          f'seed {args.seed})')
    print(f'[demo] {len(images)} images with predictions in {show_dir}, e.g.')
    for path in images[:4]:
        print(f'         {path}')


if __name__ == '__main__':
    main()
