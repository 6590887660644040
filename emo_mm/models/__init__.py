"""Models of emo_mm, registered in the ``emo_mm`` scope on import.

Layers: ``layers`` (convs, norms, folds) < ``attention`` (the window attention) < ``blocks``
(iRMB, i2RMB) < ``backbones`` (one file per family on ``backbones/base.py``) and ``dit``
(the DiT / D-EMO denoisers).
"""
from .attention import (MIXERS, WindowAttention, attention_path, set_fused_attention,
                        set_stack_partitions)
from .backbones import EMO, VEMO, EMOBackbone, EMOv2, I2RMBBackbone, inflate_2d_state
from .blocks import I2RMB, IRMB, MetaMobileBlock
from .checkpoint import (CheckpointError, authors_to_mmpretrain, load_pretrained,
                         mmpretrain_to_authors)
from .dit import DEMO, DEMOBlock, DiffusionTransformer, DiT, DiTBlock, convert_official_dit
from .layers import reparameterize


def switch_to_deploy(model):
    """Re-parameterises every EMO backbone (and conv/BatchNorm pair) inside ``model`` (a
    classifier, detector, segmentor, ...) for inference, in place; returns ``model``."""
    model.eval()
    if hasattr(model, 'switch_to_deploy'):
        model.switch_to_deploy()
    else:
        reparameterize(model)
    return model


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
