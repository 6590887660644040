"""Parameter and FLOP counting in the convention the EMO papers quote (fvcore's).

fvcore counts one FLOP per multiply-accumulate of convolutions, linear layers and matmuls
(the attention's q k^T and A v included, conv biases not), 2 per element for BatchNorm in
eval mode and 5 per element for LayerNorm; activations, softmax, pooling, padding and
additions are free. Here torch's ``FlopCounterMode`` supplies the MACs (its FLOPs / 2) and
hooks add the norm terms. Attention runs on the eager path while counting, so the count
is the authors' computation (including the 1x1 projections of padded tokens).
"""
from typing import Dict

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

from ..models.attention import attention_path

#: aten ops whose FLOPs FlopCounterMode reports, grouped as the reference tables do.
_OP_GROUPS = {
    'convolution': 'conv', 'bmm': 'matmul', 'mm': 'matmul', 'addmm': 'linear',
    'baddbmm': 'matmul', '_scaled_dot_product_flash_attention_for_cpu': 'matmul',
    '_scaled_dot_product_efficient_attention': 'matmul',
    '_scaled_dot_product_flash_attention': 'matmul', 'linear': 'linear',
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, *inputs, **kwargs) -> Dict[str, int]:
    """Counts fvcore-style FLOPs of ``model(*inputs, **kwargs)`` in eval mode.

    Returns:
        dict: ``params``, MACs per group (``conv``, ``matmul``, ``linear``, ``other``),
        ``bn`` and ``ln`` FLOPs, ``macs`` (their sum) and ``flops`` (MACs + norms, the
        figure the papers print).
    """
    norm_flops = {'bn': 0, 'ln': 0}

    def bn_hook(module, args, output):
        norm_flops['bn'] += 2 * args[0].numel()

    def ln_hook(module, args, output):
        norm_flops['ln'] += 5 * args[0].numel()

    hooks = []
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            hooks.append(module.register_forward_hook(bn_hook))
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            hooks.append(module.register_forward_hook(ln_hook))
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with attention_path(model, False), counter:
            model(*inputs, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    groups = {'conv': 0, 'matmul': 0, 'linear': 0, 'other': 0}
    for op, flops in counter.get_flop_counts()['Global'].items():
        name = getattr(op, '__name__', str(op)).split('.')[0]
        groups[_OP_GROUPS.get(name, 'other')] += int(flops) // 2
    macs = sum(groups.values())
    return dict(params=count_parameters(model), **groups, **norm_flops, macs=macs,
                flops=macs + norm_flops['bn'] + norm_flops['ln'])
