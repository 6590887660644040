"""Distributed training and testing on CPUs (torchrun without CUDA).

Upstream: mmengine <= 0.10.7 ``mmengine.dist.utils._init_dist_pytorch`` (and ``_slurm``)
call ``torch.cuda.set_device(local_rank)`` unconditionally, which fails without a GPU
(``AttributeError: ... _cuda_setDevice`` on CPU builds of torch, a CUDA error on CUDA builds
without a device), and ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to DDP,
which DDP rejects for CPU modules. No upstream issue was found for it (mmengine's launchers
assume GPUs); checked against mmengine 0.10.7.

Fix, without patching anything: when the Runner is about to be built for a
``pytorch``/``slurm`` launcher and CUDA is unavailable, the gloo process group is created
here from the launcher's environment (the Runner skips ``init_dist`` when a group exists),
and the config's ``model_wrapper_cfg`` asks for DDP without device ids.
"""
import os

import torch


def needed(launcher: str) -> bool:
    return launcher in ('pytorch', 'slurm') and not torch.cuda.is_available()


def init_process_group(launcher: str) -> None:
    """Creates the gloo process group from torchrun's (or slurm's) environment."""
    import torch.distributed as dist
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        os.environ.setdefault('MASTER_PORT', '29500')
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    dist.init_process_group('gloo', rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']))


def prepare(cfg) -> None:
    """Applies the fix for a Runner about to be built from ``cfg`` (a no-op with CUDA)."""
    launcher = cfg.get('launcher', 'none')
    if not needed(launcher):
        return
    init_process_group(launcher)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
