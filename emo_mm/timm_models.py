"""EMOv2 and EMOv1 ImageNet classifiers as timm models.

Importing this module registers ``emov2_1m``, ``emov2_2m``, ``emov2_5m``, ``emov2_20m``,
``emov2_50m`` and ``emov1_1m``, ``emov1_2m``, ``emov1_5m``, ``emov1_6m`` in timm's model
registry (timm must be installed; emo_mm does not need it otherwise):

>>> import timm
>>> import emo_mm.timm_models  # noqa: F401  (registers the models)
>>> model = timm.create_model('emov2_5m', pretrained=True,
...                           pretrained_cfg_overlay=dict(file='EMOv2_5M_224.pth'))
>>> backbone = timm.create_model('emov2_5m', features_only=True, out_indices=(1, 2, 3, 4))
>>> backbone.feature_info.channels(), backbone.feature_info.reduction()
([48, 72, 160, 288], [4, 8, 16, 32])

The classifiers are the authors': the EMO backbone (module names and weights as in their
release: ``stage0`` stem, ``stage1..4``), the final LayerNorm (``norm``), global average
pooling and a linear ``head``; their ImageNet files load as they are. Checkpoints pass
through :func:`checkpoint_filter_fn` (emo_mm's converter): the authors' containers
(``net`` / ``net_E``), emo_mm's mmpretrain classifiers (``backbone.*`` / ``head.fc.*``) and
shape checks with clear errors. ``features_only=True`` returns the stem (index 0, stride 2)
and stage outputs (1..4, strides 4..32), numbered as emo_mm's ``out_indices``.

Nothing of mmpretrain / mmdet is imported here.
"""
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

try:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from timm.layers import SelectAdaptivePool2d, trunc_normal_
    from timm.models._builder import build_model_with_cfg
    from timm.models._features import feature_take_indices
    from timm.models._manipulate import checkpoint_seq
    from timm.models._registry import generate_default_cfgs, register_model
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError('emo_mm.timm_models registers the EMO classifiers in timm, which is not '
                      f'installed ({err}): pip install timm') from err

from .models.backbones.base import EMOBackbone
from .models.backbones.emov1 import EMO
from .models.backbones.emov2 import EMOv2
from .models.weights import (CheckpointError, extract_state_dict, mmpretrain_to_authors,
                             shape_problems)

__all__ = ['EMOv2Classifier', 'EMOv1Classifier', 'checkpoint_filter_fn']

#: Keys of emo_mm's mmpretrain classifier checkpoints that are not network weights.
_MMPRETRAIN_EXTRA = ('data_preprocessor.', )


class _TimmClassifier:
    """The timm interface over an EMO backbone built with ``final_norm=True``.

    Mixed into a subclass of an EMO backbone class, before it: the backbone supplies the
    stages and the final norm, this class the pooling, the head and timm's methods
    (``forward_features`` / ``forward_head``, ``forward_intermediates``,
    ``prune_intermediate_layers``, classifier reset, gradient checkpointing).
    """

    def _init_head(self, num_classes: int, global_pool: str, drop_rate: float) -> None:
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.grad_checkpointing = False
        self.output_fmt = 'NCHW'
        self.feature_info = [
            dict(num_chs=channels, reduction=2**(i + 1), module=f'stage{i}')
            for i, channels in enumerate(self.stage_channels)]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features * self.global_pool.feat_mult(), num_classes)
        # The mmpretrain configs' LinearClsHead init (and timm's usual one).
        trunc_normal_(head.weight, std=.02)
        nn.init.zeros_(head.bias)
        return head

    # ------------------------------------------------------------------------------------
    # timm's model interface.
    # ------------------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        blocks = [(r'^stage(\d+)\.(\d+)', None), (r'^norm', (99999, ))]
        return dict(stem=r'^stage0', blocks=r'^stage(\d+)' if coarse else blocks)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        # The authors' recipe: no decay on LayerScale (timm's optimizer factory already
        # leaves out biases and the other 1-D tensors).
        return {name for name, _ in self.named_parameters() if name.endswith('.gamma')}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head = self._make_head(num_classes)

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting() and torch.is_grad_enabled():
            return checkpoint_seq(stage, x)
        return stage(x)

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x.contiguous(memory_format=self.memory_format)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map after the final LayerNorm, (N, C, H/32, W/32)."""
        x = self._start(x)
        for stage in self.stages:
            x = self._run_stage(stage, x)
        return self.norm(x).contiguous()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Outputs of the stem (index 0) and stages (1..4), as timm's models return them.

        Args:
            indices: The last n outputs if an int, all if None, else these indices.
            norm: Apply the final LayerNorm to the last stage's output.
            stop_early: Run no stage past the last requested output.
            output_fmt: ``'NCHW'`` only.
            intermediates_only: Return the outputs alone.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"{type(self).__name__} returns NCHW outputs, not {output_fmt!r}.")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        last = self.num_stages
        stages = self.stages[:max_index + 1] if stop_early or intermediates_only else self.stages
        x = self._start(x)
        intermediates = []
        for index, stage in enumerate(stages):
            x = self._run_stage(stage, x)
            if index in take_indices:
                out = self.norm(x) if norm and index == last else x
                intermediates.append(out.contiguous())
        if intermediates_only:
            return intermediates
        if len(stages) == last + 1:
            x = self.norm(x)
        return x.contiguous(), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drops the stages (and norm / head) the requested outputs do not need."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        for index in range(max_index + 1, self.num_stages + 1):
            setattr(self, f'stage{index}', nn.Identity())
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices


class EMOv2Classifier(_TimmClassifier, EMOv2):
    """The authors' EMOv2 ImageNet classifier with timm's interface.

    Args:
        arch (str | dict): ``'1M'``, ``'2M'``, ``'5M'``, ``'20M'``, ``'50M'`` or a dict (see
            :class:`emo_mm.models.EMOv2`).
        num_classes (int): Classes of the head; 0 leaves the head out. Defaults to 1000.
        in_chans (int): Input channels. Defaults to 3.
        global_pool (str): timm's pooling type (``'avg'``, as the authors'). Defaults to
            ``'avg'``.
        drop_rate (float): Dropout before the head. Defaults to 0.
        window_size (int): Attention window; 7 is the authors' ImageNet setting at 224.
            Defaults to 7.
        **kwargs: Further :class:`emo_mm.models.EMOv2` arguments (``drop_path_rate``,
            ``fused_attn``, ``channels_last``, ...).
    """

    def __init__(self, arch: Union[str, dict] = '5M', num_classes: int = 1000,
                 in_chans: int = 3, global_pool: str = 'avg', drop_rate: float = 0.,
                 window_size: int = 7, **kwargs):
        super().__init__(arch, in_channels=in_chans, window_size=window_size, out_indices=-1,
                         final_norm=True, return_tuple=False, **kwargs)
        self._init_head(num_classes, global_pool, drop_rate)


class EMOv1Classifier(_TimmClassifier, EMO):
    """The authors' EMOv1 ImageNet classifier with timm's interface.

    Args: as :class:`EMOv2Classifier`, for the variants ``'1M'``, ``'2M'``, ``'5M'``,
    ``'6M'``; further keyword arguments go to :class:`emo_mm.models.EMO`.
    """

    def __init__(self, arch: Union[str, dict] = '5M', num_classes: int = 1000,
                 in_chans: int = 3, global_pool: str = 'avg', drop_rate: float = 0.,
                 window_size: int = 7, **kwargs):
        super().__init__(arch, in_channels=in_chans, window_size=window_size, out_indices=-1,
                         final_norm=True, return_tuple=False, **kwargs)
        self._init_head(num_classes, global_pool, drop_rate)


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor],
                         model: EMOBackbone) -> Dict[str, torch.Tensor]:
    """Maps a checkpoint onto an EMO timm classifier (timm's ``pretrained_filter_fn``).

    Accepts the authors' classifier files (flat, or in ``net`` / ``net_E``; ``net_E``, their
    EMA weights, wins), emo_mm's mmpretrain classifier checkpoints (``backbone.*``,
    ``head.fc.*``) and this model's own state dicts. The head is left to timm, which drops it
    when ``num_classes`` differs from the checkpoint's 1000.

    Raises:
        CheckpointError: no state dict in the file, keys of another layout, or tensors whose
            shapes differ from the model's (another variant's file).
    """
    state = extract_state_dict(state_dict, 'pretrained checkpoint')
    if any(key.startswith('backbone.') for key in state):
        state = mmpretrain_to_authors(
            {k: v for k, v in state.items() if not k.startswith(_MMPRETRAIN_EXTRA)})
    convert = model.convert_checkpoint()
    own = model.state_dict()
    if convert is not None:
        state = dict(convert(state, own))
    name = model.pretrained_cfg.get('architecture', type(model).__name__) \
        if hasattr(model, 'pretrained_cfg') else type(model).__name__
    if not own.keys() & state.keys():
        raise CheckpointError(f'None of the {len(state)} tensors of the pretrained checkpoint '
                              f'belong to {name}: it has keys like {list(state)[:3]}, the model '
                              f'expects {list(own)[:3]}.')
    problems = shape_problems({k: v for k, v in state.items() if not k.startswith('head.')},
                              own)
    if problems:
        raise CheckpointError(f'The pretrained checkpoint does not fit {name} (a file of '
                              f'another variant?): {problems[0]}')
    return state


# ----------------------------------------------------------------------------------------
# Registration.
# ----------------------------------------------------------------------------------------
_V2_WEIGHTS = 'https://github.com/zhangzjn/data/raw/main/emov2_pretrained_weights/'
_V1_WEIGHTS = 'https://github.com/zhangzjn/EMO/raw/main/resources/'


def _cfg(url: str = '', **kwargs) -> dict:
    """The authors' ImageNet evaluation: 224 crops of 256 (bicubic), ImageNet mean / std
    (configs/_base_/emov2_in1k.py)."""
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stage0.0.conv', 'classifier': 'head',
        **kwargs,
    }


_V1_FIRST_CONV = 'stage0.0.convs.0.0'
default_cfgs = generate_default_cfgs({
    'emov2_1m.in1k': _cfg(_V2_WEIGHTS + 'EMOv2_1M_224.pth'),
    'emov2_1m.kd_in1k': _cfg(_V2_WEIGHTS + 'EMOv2_1M_224_KD.pth'),
    'emov2_2m.in1k': _cfg(_V2_WEIGHTS + 'EMOv2_2M_224.pth'),
    'emov2_2m.kd_in1k': _cfg(_V2_WEIGHTS + 'EMOv2_2M_224_KD.pth'),
    'emov2_5m.in1k': _cfg(_V2_WEIGHTS + 'EMOv2_5M_224.pth'),
    'emov2_5m.kd_in1k': _cfg(_V2_WEIGHTS + 'EMOv2_5M_224_KD.pth'),
    # No ImageNet weights were released for 20M / 50M.
    'emov2_20m': _cfg(),
    'emov2_50m': _cfg(),
    'emov1_1m.in1k': _cfg(_V1_WEIGHTS + 'EMO_1M/net.pth', first_conv=_V1_FIRST_CONV),
    'emov1_2m.in1k': _cfg(_V1_WEIGHTS + 'EMO_2M/net.pth', first_conv=_V1_FIRST_CONV),
    'emov1_5m.in1k': _cfg(_V1_WEIGHTS + 'EMO_5M/net.pth', first_conv=_V1_FIRST_CONV),
    'emov1_6m.in1k': _cfg(_V1_WEIGHTS + 'EMO_6M/net.pth', first_conv=_V1_FIRST_CONV),
})


def _create(model_cls: Callable, variant: str, arch: str, pretrained: bool, **kwargs):
    return build_model_with_cfg(
        model_cls, variant, pretrained, arch=arch,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls='getter', out_indices=(0, 1, 2, 3, 4)),
        **kwargs)


@register_model
def emov2_1m(pretrained: bool = False, **kwargs) -> EMOv2Classifier:
    return _create(EMOv2Classifier, 'emov2_1m', '1M', pretrained, **kwargs)


@register_model
def emov2_2m(pretrained: bool = False, **kwargs) -> EMOv2Classifier:
    return _create(EMOv2Classifier, 'emov2_2m', '2M', pretrained, **kwargs)


@register_model
def emov2_5m(pretrained: bool = False, **kwargs) -> EMOv2Classifier:
    return _create(EMOv2Classifier, 'emov2_5m', '5M', pretrained, **kwargs)


@register_model
def emov2_20m(pretrained: bool = False, **kwargs) -> EMOv2Classifier:
    return _create(EMOv2Classifier, 'emov2_20m', '20M', pretrained, **kwargs)


@register_model
def emov2_50m(pretrained: bool = False, **kwargs) -> EMOv2Classifier:
    return _create(EMOv2Classifier, 'emov2_50m', '50M', pretrained, **kwargs)


@register_model
def emov1_1m(pretrained: bool = False, **kwargs) -> EMOv1Classifier:
    return _create(EMOv1Classifier, 'emov1_1m', '1M', pretrained, **kwargs)


@register_model
def emov1_2m(pretrained: bool = False, **kwargs) -> EMOv1Classifier:
    return _create(EMOv1Classifier, 'emov1_2m', '2M', pretrained, **kwargs)


@register_model
def emov1_5m(pretrained: bool = False, **kwargs) -> EMOv1Classifier:
    return _create(EMOv1Classifier, 'emov1_5m', '5M', pretrained, **kwargs)


@register_model
def emov1_6m(pretrained: bool = False, **kwargs) -> EMOv1Classifier:
    return _create(EMOv1Classifier, 'emov1_6m', '6M', pretrained, **kwargs)
