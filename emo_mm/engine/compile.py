"""``torch.compile`` for the OpenMMLab tools (``tools/train.py`` / ``tools/test.py --compile``).

MMEngine 0.10.7's own ``cfg.compile`` compiles ``model.train_step`` when training starts
and nothing at validation or test time. ``train_step`` holds the data preprocessor and
the heads' losses and target assignment (Python control flow, data samples), where
dynamo breaks the graph and recompiles for every new input size. emo_mm instead compiles
the network the time goes into, ``model.backbone`` by default, in place
(:meth:`torch.nn.Module.compile`: parameters and state-dict keys stay as they are), when
training, validation or testing starts, through :class:`CompileHook`.

Detection batches vary in height and width; ``dynamic=True`` traces the backbone with
symbolic sizes from the first batch on, instead of one static graph per size. Sizes that
fall on the other side of a window-padding branch still compile a new graph; after
``torch._dynamo.config.recompile_limit`` of them the backbone runs eagerly for new ones
(with a warning), which bounds the compile time.
"""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS

#: Default options of :func:`torch.compile` used by ``--compile``.
DEFAULT_OPTIONS = dict(dynamic=True)


@HOOKS.register_module()
class CompileHook(Hook):
    """Compiles a submodule of the runner's model with ``torch.compile``, in place.

    Runs before training, validation and testing (once; later calls find it compiled),
    after ``before_run`` hooks, so an ``EMAHook`` copies the model before it is compiled.

    Args:
        target (str): Dotted name of the submodule to compile (``'backbone'``); ``''``
            compiles the whole model's ``forward``.
        **options: Keyword arguments of :func:`torch.compile` (``dynamic``, ``mode``,
            ``backend``, ``fullgraph``). Defaults to :data:`DEFAULT_OPTIONS`.
    """

    priority = 'VERY_LOW'

    def __init__(self, target: str = 'backbone', **options):
        self.target = target
        self.options = {**DEFAULT_OPTIONS, **options}

    def _compile(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            module = model.get_submodule(self.target) if self.target else model
        except AttributeError as error:
            raise AttributeError(
                f'CompileHook: {type(model).__name__} has no submodule {self.target!r} to '
                f'compile; set target to one of its children '
                f'({[name for name, _ in model.named_children()]}) or "" for the whole '
                f'model.') from error
        if getattr(module, '_compiled_call_impl', None) is not None:
            return
        module.compile(**self.options)
        runner.logger.info(f'torch.compile({self.target or "model"}, {self.options}): the '
                           f'first iterations (and each new input-size class) compile.')

    def before_train(self, runner) -> None:
        self._compile(runner)

    def before_val(self, runner) -> None:
        self._compile(runner)

    def before_test(self, runner) -> None:
        self._compile(runner)


def enable_compile(cfg, target: str = 'backbone', **options) -> None:
    """Makes a Runner config compile ``target`` (what ``--compile`` of the tools does).

    Adds :class:`CompileHook` to ``cfg.custom_hooks`` (so a dumped config runs without the
    flag too; MMEngine finds ``emo_mm.CompileHook`` in :mod:`emo_mm.engine` by itself).

    Args:
        cfg (Config): The MMEngine config, changed in place.
        target (str): Submodule to compile, ``'backbone'`` by default; ``'train_step'``
            uses MMEngine's own ``cfg.compile`` (training only, whole step).
        **options: :func:`torch.compile` options; :data:`DEFAULT_OPTIONS` otherwise.

    Raises:
        RuntimeError: torch without ``torch.compile``, or a config that already has a
            ``CompileHook`` or ``cfg.compile``.
    """
    if not hasattr(torch, 'compile'):
        raise RuntimeError(f'--compile needs torch >= 2.0 (torch.compile); this is torch '
                           f'{torch.__version__}.')
    hooks = list(cfg.get('custom_hooks', None) or [])
    if cfg.get('compile') or any(str(h.get('type', '')).endswith('CompileHook') for h in hooks):
        raise RuntimeError('The config compiles already (cfg.compile or a CompileHook); '
                           'drop --compile or the config\'s setting.')
    options = {**DEFAULT_OPTIONS, **options}
    if target == 'train_step':
        cfg.compile = options
        return
    hooks.append(dict(type='emo_mm.CompileHook', target=target, **options))
    cfg.custom_hooks = hooks


def compiled_target(model: torch.nn.Module, target: str = 'backbone') -> Optional[bool]:
    """Whether ``model``'s ``target`` is compiled in place (None: no such submodule)."""
    model = model.module if is_model_wrapper(model) else model
    try:
        module = model.get_submodule(target) if target else model
    except AttributeError:
        return None
    return getattr(module, '_compiled_call_impl', None) is not None
