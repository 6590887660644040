"""Helpers shared by the tests."""
import importlib.util
import os.path as osp

import torch

from emo_mm.apis import build_model, load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(path: str):
    """``tools/<path>.py`` as a module (tools/ is not a package), e.g. ``'train'`` or
    ``'analysis_tools/get_flops'``."""
    name = path.rsplit('/', 1)[-1]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{path}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (the scale-relative error, docs/development.md)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def build_classifier(arch: str, **backbone):
    """The mmpretrain ImageClassifier of configs/emov2_<arch>_in1k.py (backbone overrides)."""
    cfg = load_config(f'emov2_{arch.lower()}_in1k')
    cfg.model.backbone.update(backbone)
    return build_model(cfg)


def train_and_test(config: str, work_dir: str, schedule: dict, options: dict = None,
                   seed: int = 0, extra_hooks=(), dump: str = None):
    """Trains a (demo) config in-process and evaluates it before and after training.

    ``schedule`` shortens the config's schedule: ``max_epochs`` or ``max_iters``; the
    cosine scheduler (param_scheduler[1]) is stretched to the new length. ``extra_hooks``
    are appended to the config's custom hooks; ``dump`` (a .pkl path) keeps the data
    samples of the evaluation after training (MMEngine's DumpResults).

    Returns:
        (dict, dict): test metrics of the initialised and of the trained model.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    length = schedule.get('max_epochs', schedule.get('max_iters'))
    key = 'max_epochs' if 'max_epochs' in schedule else 'max_iters'
    cfg.train_cfg[key] = length
    cfg.train_cfg.val_interval = length + 1  # evaluate once, after training
    cosine = cfg.param_scheduler[1]
    cosine.update(end=length, T_max=length - cosine.get('begin', 0))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=length)
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=seed)  # reproducible runs
    if options:
        cfg.merge_from_dict(options)
    if extra_hooks:
        cfg.custom_hooks = [*(cfg.get('custom_hooks') or []), *extra_hooks]
    if dump:
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=dump)]
    runner = Runner.from_cfg(cfg)
    before = runner.test()
    runner.train()
    after = runner.test()
    return before, after
