"""Deploy mode: folding BatchNorm and LayerScale into convs changes no output.

Weights and BatchNorm statistics are randomised first (every BN and LayerScale far from
identity), so a wrong fold cannot hide behind the default initialisation.
"""
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm.models import EMO, VEMO, EMOv2, switch_to_deploy
from emo_mm.models.attention import WindowAttention
from helpers import relative_error

TOL = 1e-5


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)

    def normal(t, std, mean=0.):
        t.copy_(torch.randn(t.shape, generator=gen) * std + mean)

    for name, param in model.named_parameters():
        if name.endswith('gamma'):
            normal(param, 0.1, 0.5)
        elif param.dim() > 1:
            normal(param, param[0].numel()**-0.5)
        elif 'norm' in name and name.endswith('weight'):
            normal(param, 0.1, 1.)
        else:
            normal(param, 0.1)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            normal(module.running_mean, 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def assert_deploy_exact(model: nn.Module, x: torch.Tensor):
    model = randomize(model)
    with torch.no_grad():
        before = model(x)
        switch_to_deploy(model)
        after = model(x)
    before = before if isinstance(before, (tuple, list)) else [before]
    after = after if isinstance(after, (tuple, list)) else [after]
    for a, b in zip(after, before):
        assert relative_error(a, b) < TOL, relative_error(a, b)
    return model


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize('window', [7, 10])
@pytest.mark.parametrize('arch', ['1M', '2M', '5M', '20M', '50M'])
def test_emov2_deploy_equals_model(arch, window):
    model = EMOv2(arch, window_size=window)
    assert count(model, _BatchNorm) > 0
    model = assert_deploy_exact(model, torch.rand(1, 3, 67, 45))
    # Every BatchNorm is gone: after a conv it is folded into it; the stage 1-2 pre-norms
    # go into their pointwise mixers.
    assert count(model, _BatchNorm) == 0
    assert not [n for n, _ in model.named_parameters() if n.endswith('ls.gamma')]
    # the attention scale went into the q projections
    scales = {m.scale for m in model.modules() if isinstance(m, WindowAttention)}
    assert scales == {1.0}


@pytest.mark.parametrize('arch', ['1M', '5M'])
def test_emov2_classifier_deploy(arch):
    from helpers import build_classifier
    model = build_classifier(arch)
    x = torch.rand(2, 3, 113, 97)
    model = randomize(model)
    with torch.no_grad():
        before = model(x, mode='tensor')
        switch_to_deploy(model)
        after = model(x, mode='tensor')
    assert relative_error(after, before) < TOL


@pytest.mark.parametrize('arch', ['1M', '2M', '5M', '6M'])
def test_emov1_deploy_equals_model(arch):
    model = assert_deploy_exact(EMO(arch), torch.rand(2, 3, 101, 75))
    assert count(model, _BatchNorm) == 0
    assert {b.scale for b in model.modules() if getattr(b, 'attention', False)} == {1.0}


def test_vemo_deploy_equals_model():
    arch = dict(depths=[1, 1, 2, 1], embed_dims=[32, 48, 80, 180],
                exp_ratios=[2., 2.5, 3., 3.5], dim_heads=[16, 16, 20, 20])
    model = assert_deploy_exact(VEMO(arch, global_pool=False), torch.rand(2, 3, 4, 45, 61))
    assert count(model, _BatchNorm) == 0


def test_uemo_deploy_equals_model():
    import mmseg.models  # noqa: F401  (registers UNet's upsampling layers)
    from mmengine.registry import DefaultScope

    from emo_mm.models import UEMO
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = UEMO(base_channels=16, num_stages=4, strides=(1, 1, 1, 1),
                     enc_num_convs=(1, 1, 1, 1), dec_num_convs=(1, 1, 1),
                     downsamples=(True, True, True), enc_dilations=(1, 1, 1, 1),
                     dec_dilations=(1, 1, 1), block_cfg=dict(window_size=4))
    model = assert_deploy_exact(model, torch.rand(2, 3, 48, 40))
    # The encoder's conv layers lose their BatchNorms; the i2RMBs their LayerScales.
    assert not [n for n, _ in model.encoder.named_parameters() if n.endswith('ls.gamma')]
    assert not any(isinstance(m, _BatchNorm) for m in model.encoder.modules())


def test_deployed_model_refuses_training():
    model = EMOv2('1M')
    model.switch_to_deploy()
    assert model.deployed and not model.training
    with pytest.raises(RuntimeError, match='deploy mode'):
        model.train()
    model.eval()  # still allowed
    model.switch_to_deploy()  # idempotent


def test_deploy_fold_is_exact_in_float64():
    """Folding in float64 is exact to rounding: the fold itself is algebraically right."""
    model = randomize(EMOv2('1M', window_size=7, channels_last=False)).double()
    x = torch.rand(1, 3, 45, 37, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    for a, b in zip(after, before):
        assert relative_error(a, b) < 1e-12
