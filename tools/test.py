"""Evaluate a checkpoint (or a deploy bundle) of any emo_mm config; optionally draw predictions.

    python tools/test.py configs/retinanet_emov2_5m_coco.py work_dirs/x/epoch_12.pth
    python tools/test.py CONFIG bundles/retina/     # a tools/deploy.py bundle, onnxruntime
    python tools/test.py CONFIG CKPT --show-dir vis          # images: WORK_DIR/<time>/vis
    python tools/test.py CONFIG CKPT --out preds.pkl          # dump raw predictions
    python tools/test.py CONFIG CKPT --deploy                 # evaluate in deploy mode
    python tools/test.py CONFIG CKPT --bf16                   # under bf16 autocast (CPU)
    tools/dist_test.sh CONFIG CKPT 8 [ARGS]

The checkpoint is read without unpickling code before anything is built (a file that needs
more is refused unless --trust-checkpoint, one with NaN or infinite tensors unless
--allow-nonfinite), and must match the config's model exactly (a mismatch is an error, not a
warning; a classifier in the authors' key layout is converted on the fly). A bundle folder
in place of the checkpoint is run by onnxruntime inside the same test loop (the config's
pipeline and data preprocessor, then the bundle's graph; emo_mm.deploy.runner), so the same
evaluator measures it; it must come from this config (same name, or its own DIR/config.py,
and the same test pipeline). The evaluator prints the toolbox's metric table
(COCO mAP, mIoU / mDice, top-k). Errors print one or two lines (exit code 2); --debug or
EMO_MM_DEBUG=1 shows the traceback.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.apis import find_config
from emo_mm.engine import (UserError, allow_nonfinite_checkpoints, finish_distributed,
                           place_show_dir, prepare_test_config, run_cli, trusted_checkpoints,
                           verify_checkpoint)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (or the name of one in configs/)')
    parser.add_argument('checkpoint', help='checkpoint file, or a deploy bundle folder')
    parser.add_argument('--work-dir', help='where logs go (default work_dirs/<config name>)')
    parser.add_argument('--show-dir', help='write images with the predictions drawn here; '
                        'a relative folder is made in the run\'s folder WORK_DIR/<timestamp>/ '
                        '(as mmdet\'s tools/test.py does)')
    parser.add_argument('--show-score-thr', type=float, default=None,
                        help='detection score threshold for drawing (mmdet default 0.3)')
    parser.add_argument('--out', help='dump predictions to this .pkl file')
    parser.add_argument('--deploy', action='store_true',
                        help='evaluate the re-parameterised model (BatchNorm and LayerScale '
                        'folded into convs; same outputs, faster)')
    parser.add_argument('--bf16', action='store_true',
                        help='evaluate on the CPU with the network (backbone, neck, heads) '
                        'under bf16 autocast and the post-processing in fp32: the bf16 '
                        'accuracy of docs/deploy.md')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow full unpickling of the checkpoint (it can run code; '
                        'emo_mm\'s own checkpoints never need it)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='evaluate the checkpoint even if it holds NaN or infinite tensors')
    parser.add_argument('--data-root', help='data set folder, replacing the config\'s data_root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone (dynamic shapes: varying input '
                        'sizes reuse graphs instead of recompiling each)')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    from emo_mm.deploy import is_bundle
    if osp.isdir(args.checkpoint):
        if not is_bundle(args.checkpoint):
            raise UserError(f'{args.checkpoint} is a folder without deploy.json: give a '
                            'checkpoint file or a bundle folder written by tools/deploy.py.')
        return test_bundle(args)
    cfg = prepare_test_config(args.config, args.checkpoint, work_dir=args.work_dir,
                              cfg_options=args.cfg_options, show_dir=args.show_dir,
                              score_thr=args.show_score_thr, out=args.out,
                              launcher=args.launcher, data_root=args.data_root,
                              trust_checkpoint=args.trust_checkpoint,
                              allow_nonfinite=args.allow_nonfinite)
    if args.deploy:
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='emo_mm.SwitchToDeployHook')]
    if args.bf16:
        import torch
        if torch.cuda.is_available():
            raise UserError('--bf16 evaluates on the CPU; hide the GPUs (CUDA_VISIBLE_DEVICES=) '
                            'or use --cfg-options test_cfg.fp16=True for fp16 autocast on them.')
    if args.compile:
        from emo_mm.engine.compile import enable_compile
        enable_compile(cfg)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    trusted = [args.checkpoint] if cfg.trust_checkpoint else []
    with trusted_checkpoints(*trusted), allow_nonfinite_checkpoints(cfg.allow_nonfinite):
        runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
        verify_checkpoint(runner.model, args.checkpoint, trust=cfg.trust_checkpoint)
        if args.bf16:
            from emo_mm.deploy.precision import autocast_network
            names = autocast_network(getattr(runner.model, 'module', runner.model))
            print(f'Evaluating with {", ".join(names)} under bf16 autocast on the CPU.')
        show_dir = place_show_dir(runner)
        metrics = runner.test()
    if show_dir and runner.rank == 0:
        print(f'Images with the predictions drawn: {show_dir}')
    finish_distributed()
    return metrics


def test_bundle(args):
    """Evaluates a deploy bundle with the config's test loop and evaluator."""
    for flag, given in (('--deploy', args.deploy), ('--compile', args.compile),
                        ('--bf16', args.bf16),
                        ('--trust-checkpoint', args.trust_checkpoint),
                        ('--allow-nonfinite', args.allow_nonfinite)):
        if given:
            raise UserError(f'{flag} applies to PyTorch checkpoints, not to a bundle folder.')
    if args.launcher != 'none':
        raise UserError('A bundle is evaluated in one process (--launcher none).')
    from emo_mm.deploy.runner import prepare_bundle_test_config
    cfg = prepare_test_config(args.config, None, work_dir=args.work_dir,
                              cfg_options=args.cfg_options, show_dir=args.show_dir,
                              score_thr=args.show_score_thr, out=args.out,
                              data_root=args.data_root)
    prepare_bundle_test_config(cfg, find_config(args.config), args.checkpoint)
    from mmengine.runner import Runner
    print(f'Evaluating the bundle {args.checkpoint} with onnxruntime.')
    runner = Runner.from_cfg(cfg)
    show_dir = place_show_dir(runner)
    metrics = runner.test()
    if show_dir:
        print(f'Images with the predictions drawn: {show_dir}')
    return metrics


if __name__ == '__main__':
    run_cli(main)
