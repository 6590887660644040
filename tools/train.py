"""Train any emo_mm config (mmdet, mmseg, mmaction2 or mmpretrain) with MMEngine's Runner.

    python tools/train.py configs/retinanet_emov2_5m_coco.py
    python tools/train.py CONFIG --work-dir work_dirs/x --cfg-options train_cfg.max_epochs=3
    python tools/train.py CONFIG --resume                 # latest checkpoint in the work dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_6.pth
    tools/dist_train.sh CONFIG 8 [ARGS]                   # torchrun; CPUs use gloo

The toolbox comes from the config's default_scope.
"""
import argparse
import os

from mmengine.config import DictAction

import emo_mm  # noqa: F401  (first: applies emo_mm.compat)
from emo_mm.engine import finish_distributed, prepare_train_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from this checkpoint, or without a value from the '
                        'latest one in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--data-root', help='data set folder, replacing the config\'s data_root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_epochs=3')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = prepare_train_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options,
                               resume=args.resume, amp=args.amp,
                               auto_scale_lr=args.auto_scale_lr, launcher=args.launcher,
                               data_root=args.data_root)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
