"""Train any emo_mm config (mmdet, mmseg, mmaction2 or mmpretrain) with MMEngine's Runner.

    python tools/train.py configs/retinanet_emov2_5m_coco.py
    python tools/train.py CONFIG --work-dir work_dirs/x --cfg-options train_cfg.max_epochs=3
    python tools/train.py CONFIG --resume                 # newest good checkpoint of the work dir
    python tools/train.py CONFIG --resume auto            # the same, or start afresh if none
    python tools/train.py CONFIG --resume work_dirs/x/epoch_6.pth
    tools/dist_train.sh CONFIG 8 [ARGS]                   # torchrun; CPUs use gloo

The toolbox comes from the config's default_scope. Every sample is checked first (once:
unchanged data sets are skipped). One run at a time per work dir (a second one is refused);
a work dir that already holds checkpoints is not trained into again without --resume or
--overwrite. Training stops at the first NaN or infinite loss, gradient norm or weight,
before anything is saved from them. Checkpoints are written atomically and load without
unpickling code; a checkpoint that needs more is refused unless --trust-checkpoint, one with
NaN or infinite tensors unless --allow-nonfinite.
Errors print one or two lines (exit code 2); --debug or EMO_MM_DEBUG=1 shows the traceback.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.engine import (allow_nonfinite_checkpoints, finish_distributed, prepare_train_config,
                           run_cli, trusted_checkpoints)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (or the name of one in configs/)')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='latest', default=None,
                        metavar='auto|CHECKPOINT',
                        help='resume from this checkpoint; without a value from the newest good '
                        'one in the work dir (an error if there is none); "auto": the same, '
                        'or start afresh if there is none')
    parser.add_argument('--overwrite', action='store_true',
                        help='start afresh even if the work dir holds checkpoints')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow full unpickling of the resumed / load_from checkpoint '
                        '(it can run code; emo_mm\'s own checkpoints never need it)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='load a resumed / load_from checkpoint even if it holds NaN or '
                        'infinite tensors (refused otherwise)')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--data-root', help='data set folder, replacing the config\'s data_root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_epochs=3')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone (dynamic shapes: varying input '
                        'sizes reuse graphs instead of recompiling each)')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


_work_dir = []


def main():
    args = parse_args()
    cfg = prepare_train_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options,
                               resume=args.resume, amp=args.amp,
                               auto_scale_lr=args.auto_scale_lr, launcher=args.launcher,
                               data_root=args.data_root, trust_checkpoint=args.trust_checkpoint,
                               overwrite=args.overwrite, allow_nonfinite=args.allow_nonfinite)
    _work_dir.append(cfg.work_dir)
    if args.compile:
        from emo_mm.engine.compile import enable_compile
        enable_compile(cfg)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    trusted = [cfg.load_from] if cfg.trust_checkpoint and cfg.get('load_from') else []
    with trusted_checkpoints(*trusted), allow_nonfinite_checkpoints(cfg.allow_nonfinite):
        runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
        runner.train()
    finish_distributed()


def _interrupt_hint() -> str:
    if not _work_dir:
        return ''
    return (f'Checkpoints saved so far in {_work_dir[0]} are intact; continue with '
            f'--resume (same --work-dir).') if osp.isdir(_work_dir[0]) else ''


if __name__ == '__main__':
    run_cli(main, _interrupt_hint)
