"""Hooks of emo_mm (scope ``emo_mm``)."""
import hashlib
import json
import os.path as osp

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook

from ..registry import HOOKS
from ..utils.progress import ProgressBar


@HOOKS.register_module()
class ParameterSyncCheckHook(Hook):
    """Checks after training that every rank holds bit-identical parameters.

    Each rank hashes its model's parameters; the hashes are gathered and compared, and
    ``param_sync.json`` in the work dir records them. Raises if the ranks diverged (a
    broken distributed set-up: a process group that does not reduce, a model wrapped
    without DDP, ...).
    """

    priority = 'VERY_LOW'

    def after_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        digest = hashlib.sha256()
        for name, param in sorted(model.named_parameters()):
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
        hashes = all_gather_object(digest.hexdigest())
        if get_rank() == 0:
            with open(osp.join(runner.work_dir, 'param_sync.json'), 'w') as f:
                json.dump(dict(world_size=get_world_size(), hashes=hashes), f)
        if len(set(hashes)) != 1:
            raise RuntimeError(f'Parameters differ between ranks after training: {hashes}')
        runner.logger.info(f'Parameters identical on all {get_world_size()} ranks '
                           f'(sha256 {hashes[0][:16]}...).')


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A one-line training progress bar: iterations, epoch, loss and time left.

    Redrawn in place on a terminal; elsewhere (logs, CI) a line per ``10%``
    (:class:`emo_mm.utils.progress.ProgressBar`).

    Args:
        width (int): Bar width in characters. Defaults to 30.
    """

    priority = 'LOW'

    def __init__(self, width: int = 30):
        self.width = width
        self._bar = None

    def before_train(self, runner) -> None:
        self._bar = ProgressBar(runner.max_iters, width=self.width, initial=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss', float('nan'))
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()  # it still requires grad: converting it as is warns
        self._bar.update(runner.iter + 1 - self._bar.done,
                         f'epoch {runner.epoch + 1}/{runner.max_epochs}  loss {float(loss):.3f}')


@HOOKS.register_module()
class SwitchToDeployHook(Hook):
    """Evaluates in deploy mode: re-parameterises the model (BatchNorm and LayerScale
    folded into convs, see ``emo_mm.models.switch_to_deploy``) before testing, after the
    checkpoint is loaded. Outputs are unchanged; for test configs (``tools/test.py
    --deploy`` adds it), since a deployed model cannot train."""

    priority = 'VERY_LOW'

    def before_test(self, runner) -> None:
        from ..models import switch_to_deploy
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        switch_to_deploy(model, fold_batch_norm=True)
        runner.logger.info('Model switched to deploy mode (BatchNorm and LayerScale folded).')


__all__ = ['ParameterSyncCheckHook', 'ProgressBarHook', 'SwitchToDeployHook']
