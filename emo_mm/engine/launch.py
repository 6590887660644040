"""What ``tools/train.py`` and ``tools/test.py`` do around MMEngine's Runner, for any toolbox.

The toolbox is the config's ``default_scope`` (mmdet, mmseg, mmaction, mmpretrain); the
differences between the toolboxes' own train/test scripts (visualisation switches, mostly)
are handled here, so one pair of tools serves every config of emo_mm.
"""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config

from ..datasets.checks import check_data, set_data_root
from ..models.checkpoint import CheckpointError, extract_state_dict, read_checkpoint


def _load(config: str, cfg_options: Optional[dict], launcher: str, work_dir: Optional[str],
          data_root: Optional[str]) -> Config:
    if not osp.isfile(config):
        raise FileNotFoundError(f'Config {config!r} does not exist.')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root:
        set_data_root(cfg, data_root)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def prepare_train_config(config: str,
                         work_dir: Optional[str] = None,
                         cfg_options: Optional[dict] = None,
                         resume: Optional[str] = None,
                         amp: bool = False,
                         auto_scale_lr: bool = False,
                         launcher: str = 'none',
                         data_root: Optional[str] = None) -> Config:
    """Loads a config for training and applies the command line's switches.

    Args:
        resume: ``'auto'`` resumes from the latest checkpoint in the work dir, a path
            from that checkpoint, None starts afresh.
    """
    cfg = _load(config, cfg_options, launcher, work_dir, data_root)
    if amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a GPU: MMEngine\'s AmpOptimWrapper runs on CUDA '
                               'devices only. On a CPU, train in float32 (omit --amp).')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config.')
        cfg.auto_scale_lr.enable = True
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume!r}: no such checkpoint.')
        cfg.resume, cfg.load_from = True, resume
    check_data(cfg, ('train', 'val'))
    return cfg


def prepare_test_config(config: str,
                        checkpoint: str,
                        work_dir: Optional[str] = None,
                        cfg_options: Optional[dict] = None,
                        show_dir: Optional[str] = None,
                        score_thr: Optional[float] = None,
                        out: Optional[str] = None,
                        launcher: str = 'none',
                        data_root: Optional[str] = None) -> Config:
    """Loads a config for testing: checkpoint, visualisation, dumped predictions."""
    cfg = _load(config, cfg_options, launcher, work_dir, data_root)
    if not osp.isfile(checkpoint) and not checkpoint.startswith(('http://', 'https://')):
        raise FileNotFoundError(f'Checkpoint {checkpoint!r} does not exist.')
    cfg.load_from = checkpoint
    if show_dir:
        enable_visualization(cfg, osp.abspath(show_dir), score_thr)
    if out:
        if not out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {out!r}.')
        cfg.test_evaluator = [*(cfg.test_evaluator if isinstance(cfg.test_evaluator, list)
                                else [cfg.test_evaluator]),
                              dict(type='DumpResults', out_file_path=out)]
    check_data(cfg, ('test', ))
    return cfg


def enable_visualization(cfg: Config, show_dir: str, score_thr: Optional[float] = None) -> None:
    """Turns on the toolbox's visualisation hook so that test images are drawn to show_dir."""
    hooks = cfg.setdefault('default_hooks', {})
    scope = cfg.get('default_scope', 'mmengine')
    if 'visualization' not in hooks:
        raise RuntimeError(f'--show-dir needs a visualization hook in default_hooks of the '
                           f'config (scope {scope}).')
    vis = hooks['visualization']
    if scope == 'mmdet':
        vis.update(draw=True, interval=1, test_out_dir=show_dir)
        if score_thr is not None:
            vis['score_thr'] = score_thr
    elif scope == 'mmseg':
        vis.update(draw=True, interval=1)
        cfg.visualizer['save_dir'] = show_dir
    elif scope in ('mmaction', 'mmpretrain'):
        vis.update(enable=True, interval=1, out_dir=show_dir)
    else:
        raise RuntimeError(f'--show-dir is not supported for scope {scope!r}.')
    os.makedirs(show_dir, exist_ok=True)


def verify_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Raises :class:`CheckpointError` unless ``path`` holds exactly ``model``'s tensors.

    ``tools/test.py`` evaluates a trained checkpoint: anything missing or mis-shaped would
    silently evaluate random weights (MMEngine's loader only warns).
    """
    state = extract_state_dict(read_checkpoint(path, weights_only=False), path)
    model = model.module if hasattr(model, 'module') else model
    own = model.state_dict()
    mismatched = [f'  {k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state]
    problems = []
    if mismatched:
        problems.append(f'{len(mismatched)} tensors of other shapes:\n' + '\n'.join(mismatched[:10]))
    if missing:
        problems.append(f'{len(missing)} tensors missing, e.g. {missing[:5]}')
    if problems:
        raise CheckpointError(f'Checkpoint {path} does not match the model of this config '
                              '(trained with another config or variant?): ' + '; '.join(problems))


def finish_distributed() -> None:
    """Synchronises and tears down the process group (avoids an abort at exit)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
