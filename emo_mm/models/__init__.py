"""Models of emo_mm, registered in the ``emo_mm`` scope on import.

Layers: ``layers`` (convs, norms, folds) < ``attention`` (the window attention) < ``blocks``
(iRMB, i2RMB) < ``backbones`` (one file per family on ``backbones/base.py``) and ``dit``
(the DiT / D-EMO denoisers).
"""
from typing import List

import torch.nn as nn

from .attention import (MIXERS, WindowAttention, attention_path, set_fused_attention,
                        set_stack_partitions)
from .backbones import EMO, VEMO, EMOBackbone, EMOv2, I2RMBBackbone, inflate_2d_state
from .blocks import I2RMB, IRMB, MetaMobileBlock
from .dit import DEMO, DEMOBlock, DiffusionTransformer, DiT, DiTBlock, convert_official_dit
from .layers import reparameterize
from .weights import CheckpointError, authors_to_mmpretrain, load_pretrained, mmpretrain_to_authors


def switch_to_deploy(model: nn.Module, fold_batch_norm: bool = False) -> List[str]:
    """Re-parameterises ``model`` (a backbone, classifier, detector, segmentor, ...) for
    inference, in place, and puts it in eval mode (a deployed model cannot train).

    Calls ``switch_to_deploy()`` on ``model`` or, where it has none, on its outermost
    submodules that have one (mmpretrain's and timm's convention for re-parameterisable
    modules: EMO backbones and blocks fold their BatchNorm and LayerScale into convs).

    Args:
        model (nn.Module): The model, changed in place.
        fold_batch_norm (bool): Also fold the other (conv, BatchNorm) pairs, in
            Sequentials and mmcv ``ConvModule`` s (necks and heads). Defaults to False.

    Returns:
        list[str]: Names of the modules whose ``switch_to_deploy()`` ran (``''`` is
        ``model`` itself); empty when nothing in ``model`` has a deploy mode.
    """
    model.eval()
    outermost = []  # disjoint subtrees: switching one leaves the others as they are
    for name, module in model.named_modules():
        if callable(getattr(module, 'switch_to_deploy', None)) and not any(
                name.startswith(done + '.') or done == '' for done, _ in outermost):
            outermost.append((name, module))
    if fold_batch_norm and not (outermost and outermost[0][0] == ''):
        reparameterize(model)  # switches the same subtrees, and folds the pairs outside
    else:
        for _, module in outermost:
            module.switch_to_deploy()
    return [name for name, _ in outermost]


def __getattr__(name):
    # U-EMO needs mmseg and mmcv: imported when asked for.
    if name in ('UEMO', 'I2RMBConvBlock'):
        from .backbones import uemo
        return getattr(uemo, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'EMO', 'EMOv2', 'VEMO', 'UEMO', 'EMOBackbone', 'I2RMBBackbone', 'I2RMBConvBlock',
    'inflate_2d_state', 'I2RMB', 'IRMB', 'MetaMobileBlock', 'WindowAttention', 'MIXERS',
    'set_fused_attention', 'set_stack_partitions', 'attention_path', 'switch_to_deploy',
    'reparameterize',
    'DiT', 'DEMO', 'DiffusionTransformer', 'DiTBlock', 'DEMOBlock', 'convert_official_dit',
    'CheckpointError', 'load_pretrained', 'authors_to_mmpretrain', 'mmpretrain_to_authors'
]
