"""Training stops at the first non-finite loss, gradient norm or weight.

A diverging run (learning rate too high, an fp16 overflow, a corrupt sample) otherwise
trains on to the end with NaN weights, saves them, and MMEngine's ``max_keep_ckpts``
rotation deletes the good checkpoints to make room. :class:`NonFiniteGuardHook` checks
every iteration, before the logger and checkpoint hooks run: the loss, the gradient norm
(where ``clip_grad`` computes it) and the weights. At the first non-finite value it
raises :class:`NonFiniteError`, so no checkpoint is saved from those weights and no older
one is rotated out.

With AMP (``AmpOptimWrapper``) an overflowing gradient is normal: the loss scaler skips
that step, leaving the weights as they were, and lowers its scale. Such steps are not
errors; only a run of ``max_skipped_steps`` skipped steps in a row is (the scaler can no
longer find a scale at which the gradients are finite).
"""
import math
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook

from ..models.weights import nonfinite_tensors
from ..registry import HOOKS
from .errors import UserError


class NonFiniteError(UserError):
    """Training produced a non-finite loss, gradient norm or weight."""


def _scalar(value) -> Optional[float]:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean()) if value.numel() else None
    return float(value) if isinstance(value, (int, float)) else None


def _batch_files(data_batch, limit: int = 4) -> Sequence[str]:
    """The file names of the samples in a batch (what to look at for a bad sample)."""
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    names = []
    for sample in samples or []:
        meta = getattr(sample, 'metainfo', None) or {}
        for key in ('img_path', 'filename', 'frame_dir'):
            if meta.get(key):
                names.append(str(meta[key]))
                break
    return names[:limit] + (['...'] if len(names) > limit else [])


def nonfinite_weights(model: torch.nn.Module) -> Sequence[str]:
    """Names of the model's parameters and buffers that hold NaN or infinite values.

    One sum per tensor, stacked, answers for all of them (a sum is finite if every element
    is, and a NaN or infinity makes it non-finite); only when that fails are the tensors
    checked one by one (a sum can also overflow on large finite values).
    """
    state = model.state_dict()
    tensors = [t for t in state.values() if t.is_floating_point() and t.numel()]
    if not tensors:
        return []
    sums = torch.stack([t.detach().sum(dtype=torch.float32) for t in tensors])
    if bool(torch.isfinite(sums).all()):
        return []
    return nonfinite_tensors(state)


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Stops training at the first non-finite loss, gradient norm or weight.

    Args:
        check_weights (bool): Also check the model's parameters and floating-point
            buffers after every iteration (a finite loss can still produce an infinite
            gradient, and without ``clip_grad`` its norm is never computed). Defaults to
            True.
        max_skipped_steps (int): With AMP, how many optimizer steps in a row the loss
            scaler may skip for non-finite gradients before training stops. Defaults
            to 50.
    """

    # Before the logger (BELOW_NORMAL) and checkpoint (VERY_LOW) hooks of each iteration.
    priority = 'ABOVE_NORMAL'

    def __init__(self, check_weights: bool = True, max_skipped_steps: int = 50):
        self.check_weights = check_weights
        self.max_skipped_steps = max_skipped_steps
        self._scale_before = None
        self._grad_norms_before = 0
        self._skipped = 0

    @staticmethod
    def _scaler(runner):
        return getattr(runner.optim_wrapper, 'loss_scaler', None)

    @staticmethod
    def _grad_norm_buffer(runner):
        wrapper = runner.optim_wrapper
        if not getattr(wrapper, 'clip_grad_kwargs', None):
            return None
        name = f'train/{getattr(wrapper, "grad_name", "grad_norm")}'
        return runner.message_hub.log_scalars.get(name)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        scaler = self._scaler(runner)
        self._scale_before = float(scaler.get_scale()) if scaler is not None and \
            scaler.is_enabled() else None
        buffer = self._grad_norm_buffer(runner)
        self._grad_norms_before = len(buffer.data[0]) if buffer is not None else 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        outputs = outputs or {}
        loss = _scalar(outputs.get('loss'))
        if loss is not None and not math.isfinite(loss):
            parts = [f'{k} {_scalar(v):.4g}' for k, v in outputs.items()
                     if k != 'loss' and 'loss' in k and _scalar(v) is not None]
            self._stop(runner, data_batch, f'the loss is {loss}'
                       + (f' ({", ".join(parts)})' if parts else ''))

        amp = self._scaler(runner) is not None
        skipped = False
        if self._scale_before is not None:
            skipped = float(self._scaler(runner).get_scale()) < self._scale_before
        grad_norm = self._new_grad_norm(runner)
        if grad_norm is not None and not math.isfinite(grad_norm):
            if amp:
                skipped = True  # the scaler skips every step whose gradients are not finite
            else:
                self._stop(runner, data_batch, f'the gradient norm is {grad_norm}')
        if amp:
            self._skipped = self._skipped + 1 if skipped else 0
            if self._skipped >= self.max_skipped_steps:
                self._stop(runner, data_batch,
                           f'the AMP loss scaler skipped {self._skipped} steps in a row for '
                           f'non-finite gradients (scale now {self._scaler(runner).get_scale():g})')

        if self.check_weights:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            bad = nonfinite_weights(model)
            if bad:
                self._stop(runner, data_batch, f'{len(bad)} weight tensors are not finite ('
                           + ', '.join(bad[:3]) + (', ...' if len(bad) > 3 else '') + ')')

    def _new_grad_norm(self, runner) -> Optional[float]:
        """The gradient norm clip_grad computed in this iteration, if it computed one."""
        buffer = self._grad_norm_buffer(runner)
        if buffer is None:
            return None
        count = len(buffer.data[0])
        if count == self._grad_norms_before and count < buffer.max_length:
            return None  # no optimizer step in this iteration (gradient accumulation)
        return float(buffer.current())

    def _stop(self, runner, data_batch, what: str) -> None:
        from .checkpoints import list_checkpoints
        amp = self._scaler(runner) is not None
        where = f'iteration {runner.iter + 1}'
        from mmengine.runner import EpochBasedTrainLoop
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1})'
        lr = runner.optim_wrapper.get_lr() if hasattr(runner.optim_wrapper, 'get_lr') else {}
        lr = lr.get('lr') if isinstance(lr, dict) else None
        lr_text = f' (now {lr[0]:.3g})' if lr else ''
        files = _batch_files(data_batch)
        causes = [f'a learning rate too high{lr_text}: lower optim_wrapper.optimizer.lr or '
                  'lengthen the warm-up']
        if amp:
            causes.append('an fp16 overflow under AMP: train in float32 or bfloat16 '
                          "(optim_wrapper.dtype='bfloat16')")
        causes.append('a bad sample in this batch' + (f' ({", ".join(files)})' if files else ''))
        saved = list_checkpoints(runner.work_dir)
        kept = (f'the newest checkpoint, {saved[0]}, is from before; fix the cause and '
                'continue with --resume' if saved else 'no checkpoint had been saved yet')
        raise NonFiniteError(f'Training stopped at {where}: {what}. Likely causes: '
                             + '; '.join(causes) + '. Nothing was saved from these weights; '
                             + kept + '.')


__all__ = ['NonFiniteGuardHook', 'NonFiniteError']
