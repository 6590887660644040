"""What ``tools/train.py`` and ``tools/test.py`` do around MMEngine's Runner, for any toolbox.

The toolbox is the config's ``default_scope`` (mmdet, mmseg, mmaction, mmpretrain); the
differences between the toolboxes' own train/test scripts (visualisation switches, mostly)
are handled here, so one pair of tools serves every config of emo_mm.
"""
import os
import os.path as osp
from typing import Dict, Optional, Union

import torch
from mmengine.config import Config

from .. import compat
from ..apis import load_config
from ..checks.data import check_data, insert_sample_guards, set_data_root
from ..models.weights import (CheckpointError, UnsafeCheckpointError, adapt_layout,
                              allow_nonfinite_checkpoints, extract_state_dict,
                              is_authors_classifier, pretrained_without_checkpoint, shape_problems)
from .checkpoints import find_resume_checkpoint, list_checkpoints, remove_partial_files, safe_load
from .errors import UserError
from .worklock import lock_work_dir

#: How the command-line tools trust a checkpoint, named when one is refused.
CLI_TRUST_HINT = ('If you trust the file, pass --trust-checkpoint (or set trust_checkpoint = '
                  'True in the config).')


def _load(config: str, cfg_options: Optional[dict], launcher: str, work_dir: Optional[str],
          data_root: Optional[str]) -> Config:
    cfg = load_config(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root:
        set_data_root(cfg, data_root)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    _check_init_cfgs(cfg.get('model'), 'model')
    return cfg


def _check_init_cfgs(node, where: str) -> None:
    """``init_cfg=dict(type='Pretrained')`` without a checkpoint fails late with a KeyError."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        for item in init if isinstance(init, list) else [init]:
            if isinstance(item, dict) and item.get('type') == 'Pretrained' and not item.get(
                    'checkpoint'):
                raise UserError(pretrained_without_checkpoint(where))
        for key, value in node.items():
            if key != 'init_cfg':
                _check_init_cfgs(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _check_init_cfgs(value, f'{where}[{i}]')


def _finish(cfg: Config, trust: bool, splits, allow_nonfinite: bool = False) -> None:
    """What every Runner built by the tools gets: safe, atomic checkpoints; the upstream
    fixes the config needs; per-sample guards in the pipelines of the splits it runs.

    Training guards train and val only: the test pipeline of the config the Runner saves
    in the work dir stays as written, since the toolboxes' inferencers look their loading
    transform up in it by type."""
    cfg.trust_checkpoint = bool(trust)
    cfg.allow_nonfinite = bool(allow_nonfinite)
    hooks = list(cfg.get('custom_hooks') or [])
    wanted = ['CheckpointSafetyHook', 'CheckpointLayoutHook'] + (
        ['NonFiniteGuardHook'] if 'train' in splits else [])
    for name in wanted:
        if not any(h.get('type') in (f'emo_mm.{name}', name) for h in hooks):
            hooks.append(dict(type=f'emo_mm.{name}'))
    cfg.custom_hooks = hooks
    insert_sample_guards(cfg, splits)
    compat.prepare_runner_config(cfg)  # the upstream fixes, and CPU-only distributed runs


def _check_checkpoint(path: str, trust: bool, what: str, allow_nonfinite: bool = False):
    """Loads ``path`` without running code from it (or fully, if trusted); clear errors.

    Checkpoints with NaN or infinite tensors are refused unless ``allow_nonfinite``.
    """
    if not path.startswith(('http://', 'https://')) and not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path!r} does not exist.')
    try:
        with allow_nonfinite_checkpoints(allow_nonfinite):
            return safe_load(path, trust=trust, trust_hint=CLI_TRUST_HINT)
    except UnsafeCheckpointError:
        raise
    except CheckpointError as err:
        if 'NaN or infinite' in str(err):
            raise CheckpointError(f'{what}: {err}') from None
        others = [p for p in list_checkpoints(osp.dirname(path) or '.')
                  if osp.abspath(p) != osp.abspath(path)]
        offer = f' Earlier checkpoints there: {", ".join(others[:3])}.' if others else ''
        raise CheckpointError(f'{what}: {err}{offer}') from None


def prepare_train_config(config: str,
                         work_dir: Optional[str] = None,
                         cfg_options: Optional[dict] = None,
                         resume: Union[str, bool, None] = None,
                         amp: bool = False,
                         auto_scale_lr: bool = False,
                         launcher: str = 'none',
                         data_root: Optional[str] = None,
                         trust_checkpoint: bool = False,
                         overwrite: bool = False,
                         allow_nonfinite: bool = False) -> Config:
    """Loads a config for training and applies the command line's switches.

    The work dir is locked for the rest of the process first (one run per work dir, see
    :mod:`emo_mm.engine.worklock`), before anything in it is read or changed.

    Args:
        resume: ``'latest'`` (``--resume`` alone) resumes from the newest good checkpoint
            of the work dir and is an error when there is none; ``'auto'`` does the same
            but starts afresh when there is none; a path resumes from that checkpoint;
            None starts afresh.
        trust_checkpoint (bool): Allow full unpickling (which can run code) of the
            resumed / ``load_from`` checkpoint. emo_mm's own checkpoints never need it.
        overwrite (bool): Start afresh in a work dir that already holds checkpoints
            (otherwise an error: they would be overwritten).
        allow_nonfinite (bool): Load a resumed / ``load_from`` checkpoint even if it holds
            NaN or infinite tensors (refused otherwise).
    """
    cfg = _load(config, cfg_options, launcher, work_dir, data_root)
    lock = lock_work_dir(cfg.work_dir, launcher)
    if lock.took_over:
        from mmengine.logging import print_log

        from .worklock import describe
        print_log(f'Took over the lock of {cfg.work_dir} from {describe(lock.took_over)}, which '
                  'is no longer running.', logger='current')
    trust = trust_checkpoint or bool(cfg.get('trust_checkpoint', False))
    allow_nonfinite = allow_nonfinite or bool(cfg.get('allow_nonfinite', False))
    if amp:
        if not torch.cuda.is_available():
            raise UserError('--amp needs a GPU: MMEngine\'s AmpOptimWrapper runs on CUDA '
                            'devices only. On a CPU, train in float32 (omit --amp).')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise UserError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config.')
        cfg.auto_scale_lr.enable = True
    with allow_nonfinite_checkpoints(allow_nonfinite):
        _resolve_resume(cfg, resume, trust, overwrite, allow_nonfinite,
                        existed=not lock.created_dir)
    check_data(cfg, ('train', 'val'))
    _finish(cfg, trust, ('train', 'val'), allow_nonfinite)
    return cfg


def _rank() -> int:
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) or 0)


def _resolve_resume(cfg: Config, resume, trust: bool, overwrite: bool,
                    allow_nonfinite: bool = False, existed: bool = True) -> None:
    work_dir = cfg.work_dir
    if osp.isdir(work_dir) and (cfg.launcher == 'none' or _rank() == 0):
        remove_partial_files(work_dir)  # (this run holds the work dir's lock)
    if resume is None and cfg.get('resume'):  # resume = True in the config itself
        resume = cfg.get('load_from') or 'auto'
    if resume in ('latest', 'auto', True):
        found = find_resume_checkpoint(work_dir, trust) if osp.isdir(work_dir) else None
        if found is None and resume != 'auto':
            where = ('does not exist' if not (existed and osp.isdir(work_dir)) else
                     'holds no checkpoint (no last_checkpoint, epoch_*.pth or iter_*.pth)')
            raise UserError(f'--resume: nothing to resume from, the work dir {work_dir} '
                            f'{where}. Check --work-dir, drop --resume to start afresh, or use '
                            '--resume auto to resume only when there is a checkpoint.')
        if found is None:
            cfg.resume = False
            if cfg.get('load_from'):
                _check_checkpoint(cfg.load_from, trust, 'load_from', allow_nonfinite)
        else:
            cfg.resume, cfg.load_from = True, found
    elif resume:
        _check_resumable(_check_checkpoint(resume, trust, '--resume', allow_nonfinite), resume)
        cfg.resume, cfg.load_from = True, resume
    else:
        existing = list_checkpoints(work_dir) if osp.isdir(work_dir) else []
        if existing and not overwrite:
            names = ', '.join(osp.basename(p) for p in existing[:3])
            raise UserError(f'The work dir {work_dir} already holds checkpoints ({names}); '
                            'training again would overwrite them. Pass --resume to continue, '
                            '--overwrite to start afresh anyway, or another --work-dir.')
        if cfg.get('load_from'):
            _check_checkpoint(cfg.load_from, trust, 'load_from', allow_nonfinite)


def _check_resumable(checkpoint, path: str) -> None:
    """Resuming needs a training checkpoint (weights, optimizer, iteration); a bare state
    dict, such as the authors' released classifiers, can only start a run."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('meta'), dict):
        return
    try:
        state = extract_state_dict(checkpoint, path)
    except CheckpointError:
        state = {}
    what = ("an ImageNet classifier in the authors' key layout" if is_authors_classifier(state)
            else 'weights without a training state (no meta: epoch, iteration, optimizer)')
    raise UserError(f'--resume {path}: it is {what}, which cannot be resumed. Start from it '
                    f'with --cfg-options load_from={path} instead.')


def prepare_test_config(config: str,
                        checkpoint: Optional[str],
                        work_dir: Optional[str] = None,
                        cfg_options: Optional[dict] = None,
                        show_dir: Optional[str] = None,
                        score_thr: Optional[float] = None,
                        out: Optional[str] = None,
                        launcher: str = 'none',
                        data_root: Optional[str] = None,
                        trust_checkpoint: bool = False,
                        allow_nonfinite: bool = False) -> Config:
    """Loads a config for testing: checkpoint, visualisation, dumped predictions.

    The checkpoint is read here, without running code from it unless trusted, before
    anything is built; one with NaN or infinite tensors is refused unless
    ``allow_nonfinite``. ``checkpoint=None``: the caller replaces the model (a deploy bundle,
    :func:`emo_mm.deploy.runner.prepare_bundle_test_config`).
    """
    cfg = _load(config, cfg_options, launcher, work_dir, data_root)
    trust = trust_checkpoint or bool(cfg.get('trust_checkpoint', False))
    allow_nonfinite = allow_nonfinite or bool(cfg.get('allow_nonfinite', False))
    if checkpoint is not None:
        _check_checkpoint(checkpoint, trust, 'Checkpoint', allow_nonfinite)
    cfg.load_from = checkpoint
    if show_dir:
        enable_visualization(cfg, show_dir, score_thr)
    if out:
        if not out.endswith(('.pkl', '.pickle')):
            raise UserError(f'--out must be a .pkl file, got {out!r}.')
        cfg.test_evaluator = [*(cfg.test_evaluator if isinstance(cfg.test_evaluator, list)
                                else [cfg.test_evaluator]),
                              dict(type='DumpResults', out_file_path=out)]
    check_data(cfg, ('test', ))
    _finish(cfg, trust, ('test', ), allow_nonfinite)
    return cfg


def enable_visualization(cfg: Config, show_dir: str, score_thr: Optional[float] = None) -> None:
    """Turns on the toolbox's visualisation hook so that test images are drawn to show_dir.

    As mmdet's tools/test.py does, a relative ``show_dir`` is a folder of the run's log
    folder (``work_dir/<timestamp>/show_dir``) for every toolbox; an absolute one is used as
    it is. mmpretrain's and mmaction2's hooks take the folder as given, so theirs is set
    once the Runner (and its timestamp) exists: :func:`place_show_dir`.
    """
    hooks = cfg.setdefault('default_hooks', {})
    scope = cfg.get('default_scope', 'mmengine')
    if scope == 'mmaction' and 'visualization' not in hooks:
        # mmaction2's runtime base lists no visualisation hook; its own (frames as PNG).
        hooks['visualization'] = dict(type='VisualizationHook')
    if 'visualization' not in hooks:
        raise UserError(f'--show-dir needs a visualization hook in default_hooks of the '
                        f'config (scope {scope}).')
    vis = hooks['visualization']
    if scope == 'mmdet':
        # DetVisualizationHook joins a relative test_out_dir to work_dir/timestamp itself.
        vis.update(draw=True, interval=1, test_out_dir=show_dir)
        if score_thr is not None:
            vis['score_thr'] = score_thr
    elif scope == 'mmseg':
        # SegVisualizationHook saves through the visualiser's LocalVisBackend, whose folder
        # is work_dir/timestamp/vis_data; its images go to img_save_dir under that.
        vis.update(draw=True, interval=1)
        backends = cfg.visualizer.get('vis_backends') or []
        local = [b for b in backends if b.get('type', '').split('.')[-1] == 'LocalVisBackend']
        if not local:
            raise UserError('--show-dir needs a LocalVisBackend in visualizer.vis_backends of '
                            'the config (mmseg saves drawn images through it).')
        for backend in local:
            backend['img_save_dir'] = show_dir if osp.isabs(show_dir) else osp.join(
                os.pardir, show_dir)
    elif scope in ('mmaction', 'mmpretrain'):
        vis.update(enable=True, interval=1, out_dir=show_dir)
    else:
        raise UserError(f'--show-dir is not supported for scope {scope!r}.')
    cfg.show_dir = show_dir


def place_show_dir(runner) -> Optional[str]:
    """The folder ``--show-dir`` images of this Runner go to (None without --show-dir),
    made, and given to the hooks that do not place a relative folder themselves."""
    show_dir = runner.cfg.get('show_dir')
    if not show_dir:
        return None
    folder = show_dir if osp.isabs(show_dir) else osp.join(runner.log_dir, show_dir)
    for hook in runner.hooks:
        # mmpretrain's / mmaction2's VisualizationHook write to out_dir as given.
        if getattr(hook, 'out_dir', None) == show_dir and not hasattr(hook, 'test_out_dir'):
            hook.out_dir = folder
    if runner.rank == 0:
        os.makedirs(folder, exist_ok=True)
    return osp.abspath(folder)


def verify_checkpoint(model: torch.nn.Module, path: str, trust: bool = False,
                      allow_nonfinite: bool = False) -> Dict[str, torch.Tensor]:
    """Raises :class:`CheckpointError` unless ``path`` holds exactly ``model``'s tensors;
    returns the state dict it read.

    ``tools/test.py`` evaluates a trained checkpoint: anything missing or mis-shaped would
    silently evaluate random weights (MMEngine's loader only warns). A classifier in the
    authors' key layout is compared after conversion (the Runner converts it on loading).
    """
    with allow_nonfinite_checkpoints(allow_nonfinite):
        checkpoint = safe_load(path, trust=trust, trust_hint=CLI_TRUST_HINT)
    state = extract_state_dict(checkpoint, path)
    model = model.module if hasattr(model, 'module') else model
    state, _ = adapt_layout(state, model.state_dict(), path)
    problems = shape_problems(state, model.state_dict(), require_all=True)
    if problems:
        raise CheckpointError(f'Checkpoint {path} does not match the model of this config '
                              '(trained with another config or variant?): ' + '; '.join(problems))
    return state


def finish_distributed() -> None:
    """Synchronises and tears down the process group (avoids an abort at exit)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
