"""Models of emo_mm, registered in the ``emo_mm`` scope on import."""
from .backbones import EMO, UEMO, VEMO, EMOv2, I2RMBConvBlock, inflate_2d_state
from .blocks import I2RMB, IRMB, MetaMobileBlock, set_fused_attention
from .checkpoint import (CheckpointError, authors_to_mmpretrain, load_pretrained,
                         mmpretrain_to_authors)

__all__ = [
    'EMO', 'EMOv2', 'UEMO', 'VEMO', 'I2RMBConvBlock', 'inflate_2d_state', 'I2RMB', 'IRMB', 'MetaMobileBlock', 'set_fused_attention',
    'CheckpointError', 'load_pretrained', 'authors_to_mmpretrain', 'mmpretrain_to_authors'
]
