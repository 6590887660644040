from .hooks import ParameterSyncCheckHook, ProgressBarHook
from .launch import (finish_distributed, prepare_test_config, prepare_train_config,
                     verify_checkpoint)

__all__ = ['ParameterSyncCheckHook', 'ProgressBarHook', 'prepare_train_config',
           'prepare_test_config', 'finish_distributed', 'verify_checkpoint']
