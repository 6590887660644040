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
import subprocess

import torch


def needed(launcher: str) -> bool:
    return launcher in ('pytorch', 'slurm') and not torch.cuda.is_available()


def init_process_group(launcher: str) -> None:
    """Creates the gloo process group from torchrun's (or Slurm's) environment."""
    import torch.distributed as dist
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        slurm_environment()
    dist.init_process_group('gloo', rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']))


def slurm_environment() -> None:
    """Sets torch's rendezvous variables from Slurm's, as mmengine's ``_init_dist_slurm``
    does: rank, world size and local rank of the task (overriding the ``LOCAL_RANK=0``
    the tools set for single-process runs), port 29500 unless ``MASTER_PORT`` is set, and
    the first machine of the job as master unless ``MASTER_ADDR`` is set."""
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        hosts = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
                               capture_output=True, text=True, check=True).stdout.split()
        os.environ['MASTER_ADDR'] = hosts[0]


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
