"""Hooks of emo_mm (scope ``emo_mm``)."""
import hashlib
import json
import os.path as osp

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook

from ..registry import HOOKS


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


__all__ = ['ParameterSyncCheckHook']
