"""EMOv2: the i2RMB backbone family (1M, 2M, 5M, 20M, 50M).

Zhang et al., "EMOv2: Pushing 5M Vision Model Frontier". The module layout and names are
the authors' (``stage0`` stem, ``stage1..stage4`` of i2RMBs, optional final ``norm``), so
their ImageNet checkpoints load as they are. The network itself is
:class:`~emo_mm.models.backbones.base.I2RMBBackbone`, shared with V-EMO.
"""
from typing import Optional, Sequence, Union

from ...registry import MODELS
from .base import I2RMBBackbone


@MODELS.register_module()
class EMOv2(I2RMBBackbone):
    """EMOv2 backbone.

    A PyTorch implementation of `EMOv2: Pushing 5M Vision Model Frontier
    <https://arxiv.org/abs/2412.06674>`_, built from i2RMB blocks whose spanning window
    attention sums attention over contiguous (near) and strided (far) windows that share
    q/k/v. Weights are interchangeable with the authors' release.

    Args:
        arch (str | dict): ``'1M'``, ``'2M'``, ``'5M'``, ``'20M'``, ``'50M'`` or a dict
            with the per-stage lists (the named variants are in
            :attr:`I2RMBBackbone.arch_settings`)

            - depths (list[int]): blocks per stage.
            - embed_dims (list[int]): output channels per stage.
            - exp_ratios (list[float]): expansion of the non-first blocks (first blocks
              use twice the ratio); relative to the block *input* width.
            - dim_heads (list[int]): q/k channels per attention head.

            and optionally ``norms`` (``'bn'``/``'ln'``), ``acts``, ``mixers`` (one of
            ``'conv'``, ``'strided'``, ``'contiguous'``, ``'spanning'``), ``dw_kernels``
            and ``stem_channels`` (default ``embed_dims[0] // 2``). Defaults to ``'5M'``.
        in_channels (int): Input channels. Defaults to 3.
        window_size (int): Attention window length (<= 0: global). 10 in every
            downstream config, 7 for ImageNet at 224, 8 at 256/512. Defaults to 10.
        out_indices (int | Sequence[int]): Outputs to return: 0 is the stem (stride 2),
            1..4 the stages (strides 4..32); negatives count from the end.
            Defaults to (1, 2, 3, 4).
        frozen_stages (int): Freeze the stem and stages 1..k (eval mode, no grad);
            -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training.
            Defaults to False.
        drop_path_rate (float): Stochastic depth, linearly increasing over all blocks.
            Defaults to 0.
        final_norm (bool): Apply the classifier's final LayerNorm to the last stage's
            output (ImageNet classifier). Defaults to False.
        local_norm (str): Norm of the depth-wise conv in every block: ``'bn'`` (with SiLU;
            the ImageNet, detection and reported ADE20K models) or ``'ln'`` (with GELU; the
            authors' segmentation file and U-EMO). Defaults to ``'bn'``.
        layer_scale (float): Initial LayerScale value. Defaults to 1e-6.
        qkv_bias (bool): Bias in q/k/v and the 1x1 mixers. Defaults to True.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        fused_attn (bool, optional): Attention kernel: True torch's
            ``scaled_dot_product_attention``, False two eager matmuls (the reference), None
            chosen per call from measurements (SDPA on CUDA for heads of >= 32 channels,
            eager otherwise). All give the same outputs. Defaults to None.
        channels_last (bool): Run in channels-last memory format (faster with oneDNN on
            CPU and cuDNN on GPUs); outputs are returned in the standard contiguous NCHW
            layout either way. Defaults to True.
        return_tuple (bool): Return a tuple even for one output. False returns the tensor
            itself (mmaction2 heads need that). Defaults to True.
        pretrained (str, optional): Deprecated, use ``init_cfg``.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` loads the
            authors' (or emo_mm's) weights. Defaults to None.

    Example:
        >>> import torch
        >>> from emo_mm.models import EMOv2
        >>> model = EMOv2('1M').eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 32, 56, 56)
        (1, 48, 28, 28)
        (1, 80, 14, 14)
        (1, 180, 7, 7)
    """

    def __init__(self,
                 arch: Union[str, dict] = '5M',
                 in_channels: int = 3,
                 window_size: int = 10,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.,
                 final_norm: bool = False,
                 local_norm: str = 'bn',
                 layer_scale: float = 1e-6,
                 qkv_bias: bool = True,
                 attn_drop_rate: float = 0.,
                 fused_attn: Optional[bool] = None,
                 channels_last: bool = True,
                 return_tuple: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            arch, local_norm=local_norm, layer_scale=layer_scale, qkv_bias=qkv_bias,
            attn_drop_rate=attn_drop_rate, fused_attn=fused_attn, in_channels=in_channels,
            window_size=window_size, out_indices=out_indices, frozen_stages=frozen_stages,
            norm_eval=norm_eval, drop_path_rate=drop_path_rate, final_norm=final_norm,
            channels_last=channels_last, return_tuple=return_tuple, pretrained=pretrained,
            init_cfg=init_cfg)
        self.build_stages()
