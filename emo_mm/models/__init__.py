"""Models of emo_mm, registered in the ``emo_mm`` scope on import."""
from .backbones import UEMO, EMOv2, I2RMBConvBlock
from .blocks import I2RMB, MetaMobileBlock, set_fused_attention
from .checkpoint import (CheckpointError, authors_to_mmpretrain, load_pretrained,
                         mmpretrain_to_authors)

__all__ = [
    'EMOv2', 'UEMO', 'I2RMBConvBlock', 'I2RMB', 'MetaMobileBlock', 'set_fused_attention',
    'CheckpointError', 'load_pretrained', 'authors_to_mmpretrain', 'mmpretrain_to_authors'
]
