"""U-EMO: mmseg's UNet with its convolution blocks made of i2RMBs (the authors' HRF model).

The encoder and decoder blocks whose input has at least ``min_attention_channels`` (64)
channels become stacks of i2RMBs with LayerNorm + GELU in the depth-wise conv (the
block of the authors' released segmentation file), spanning window attention of window
10, ``dim_head`` 32 and expansion 2; narrower blocks keep UNet's 3x3 conv + norm + act.
Module names follow mmseg's UNet (``encoder.i.1.convs.j``, ``decoder.i.conv_block.convs.j``),
as in the authors' logged model.

This file imports mmseg and mmcv: ``emo_mm.models`` registers ``UEMO`` through a builder
that imports it on first use, so that the other backbones work without them.
"""
from typing import Optional

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmseg.models.backbones import UNet

from ..blocks import I2RMB
from ..layers import DeployMixin


class I2RMBConvBlock(nn.Module):
    """Drop-in for mmseg's ``BasicConvBlock``: ``num_convs`` layers in ``convs``.

    Args:
        in_channels (int): Block input channels; below ``min_attention_channels`` the
            layers are 3x3 ConvModules (conv + norm + act), otherwise i2RMBs.
        out_channels (int): Output channels of every layer.
        num_convs (int): Number of layers. Defaults to 2.
        stride (int), dilation (int): For the conv layers (i2RMB layers are stride 1,
            dilation 1; other values are rejected).
        with_cp (bool): Gradient checkpointing. Defaults to False.
        conv_cfg, norm_cfg, act_cfg: For the conv layers.
        window_size (int): Attention window of the i2RMBs. Defaults to 10.
        dim_head (int): q/k channels per head. Defaults to 32.
        exp_ratio (float): i2RMB expansion. Defaults to 2.
        dw_kernel (int): Depth-wise kernel. Defaults to 5.
        min_attention_channels (int): See ``in_channels``. Defaults to 64.
        layer_scale (float): Initial LayerScale of the i2RMBs. Defaults to 1e-6.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_convs: int = 2,
                 stride: int = 1,
                 dilation: int = 1,
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 dcn=None,
                 plugins=None,
                 window_size: int = 10,
                 dim_head: int = 32,
                 exp_ratio: float = 2.,
                 dw_kernel: int = 5,
                 min_attention_channels: int = 64,
                 layer_scale: float = 1e-6):
        super().__init__()
        if dcn is not None or plugins is not None:
            raise ValueError('I2RMBConvBlock supports neither dcn nor plugins.')
        self.with_cp = with_cp
        layers = []
        for i in range(num_convs):
            cin = in_channels if i == 0 else out_channels
            if in_channels < min_attention_channels:
                layers.append(ConvModule(
                    cin, out_channels, 3, stride=stride if i == 0 else 1,
                    dilation=1 if i == 0 else dilation, padding=1 if i == 0 else dilation,
                    conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg))
            else:
                if stride != 1 or dilation != 1:
                    raise ValueError(f'i2RMB layers of U-EMO run at stride 1, dilation 1; '
                                     f'got stride {stride}, dilation {dilation}.')
                layers.append(I2RMB(
                    cin, out_channels, exp_ratio=exp_ratio, norm='ln', act='gelu',
                    mixer='spanning', dw_kernel=dw_kernel, dim_head=dim_head,
                    window_size=window_size, local_norm='ln', local_act='gelu',
                    layer_scale=layer_scale))
        self.convs = nn.Sequential(*layers)

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self.convs, x, use_reentrant=False)
        return self.convs(x)


class UEMO(DeployMixin, UNet):
    """U-EMO backbone: a UNet built of i2RMBs (EMOv2 paper, HRF experiments).

    Takes every argument of mmseg's ``UNet`` (``base_channels``, ``num_stages``,
    ``strides``, ``enc_num_convs``, ``dec_num_convs``, ``downsamples``, dilations,
    ``norm_cfg``, ``upsample_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``, ...) and
    ``block_cfg``, the :class:`I2RMBConvBlock` settings (window, heads, expansion).
    Returns mmseg UNet's outputs: the bottleneck map and each decoder stage's map.

    Example:
        >>> import torch
        >>> from emo_mm.models import UEMO
        >>> model = UEMO()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 1024, 4, 4), (1, 512, 8, 8), (1, 256, 16, 16), (1, 128, 32, 32), (1, 64, 64, 64)]
    """

    def __init__(self, block_cfg: Optional[dict] = None, **kwargs):
        # Build mmseg's UNet, then swap each of its conv blocks for an i2RMB block with the
        # same inputs (UNet offers no hook for the block type).
        super().__init__(**kwargs)
        block_cfg = dict(block_cfg or {})
        common = dict(with_cp=kwargs.get('with_cp', False), conv_cfg=kwargs.get('conv_cfg'),
                      norm_cfg=kwargs.get('norm_cfg', dict(type='BN')),
                      act_cfg=kwargs.get('act_cfg', dict(type='ReLU')), **block_cfg)
        for stage in self.encoder:
            old = stage[-1]
            stage[-1] = self._swap(old, **common)
        for up in self.decoder:
            up.conv_block = self._swap(up.conv_block, **common)

    @staticmethod
    def _swap(block: nn.Module, **common) -> I2RMBConvBlock:
        first = block.convs[0].conv
        last = block.convs[-1].conv
        return I2RMBConvBlock(first.in_channels, last.out_channels, len(block.convs),
                              stride=first.stride[0], dilation=last.dilation[0], **common)
