from ..models.weights import allow_nonfinite_checkpoints
from .checkpoints import (CheckpointLayoutHook, CheckpointSafetyHook, find_resume_checkpoint,
                          install_checkpoint_loader, list_checkpoints, safe_load,
                          trusted_checkpoints)
from .compile import CompileHook, enable_compile
from .errors import UserError, run_cli
from .hooks import ParameterSyncCheckHook, ProgressBarHook, SwitchToDeployHook
from .launch import (finish_distributed, place_show_dir, prepare_test_config, prepare_train_config,
                     verify_checkpoint)
from .nonfinite import NonFiniteError, NonFiniteGuardHook
from .worklock import WorkDirBusyError, lock_work_dir

__all__ = ['CompileHook', 'enable_compile', 'ParameterSyncCheckHook', 'ProgressBarHook',
           'SwitchToDeployHook',
           'CheckpointSafetyHook', 'CheckpointLayoutHook',
           'NonFiniteGuardHook', 'NonFiniteError', 'prepare_train_config', 'prepare_test_config',
           'place_show_dir', 'finish_distributed', 'verify_checkpoint', 'safe_load',
           'trusted_checkpoints', 'allow_nonfinite_checkpoints', 'install_checkpoint_loader',
           'list_checkpoints', 'find_resume_checkpoint', 'UserError', 'run_cli',
           'WorkDirBusyError', 'lock_work_dir']
