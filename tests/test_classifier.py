"""ImageNet-1k classifier configs: the authors' recipe, a training step per variant."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from emo_mm.apis import build_model, load_config

VARIANTS = ['1m', '2m', '5m', '20m', '50m']
SLOW_VARIANTS = ('5m', '20m', '50m')  # 1m and 2m cover the same recipe at a fraction of the cost


@pytest.mark.parametrize('variant', [pytest.param(v, marks=[pytest.mark.slow, pytest.mark.extended])
                                     if v in SLOW_VARIANTS else v for v in VARIANTS])
def test_config_trains_one_step(variant):
    cfg = load_config(f'emov2_{variant}_in1k')
    model = build_model(cfg)
    model.init_weights()
    head = model.head.fc
    assert head.weight.std() < 0.03 and head.bias.abs().max() == 0  # trunc-normal 0.02, zero bias
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # Decay only on >1-D weights, and none on LayerScale gammas (4-D), norms or biases.
    decay = {id(p): g['weight_decay'] for g in optim.optimizer.param_groups for p in g['params']}
    for name, param in model.named_parameters():
        expect = 0. if (param.ndim == 1 or name.endswith(('.bias', '.gamma'))) else 0.05
        assert decay[id(param)] == pytest.approx(expect), name
    data = dict(inputs=[torch.randint(0, 256, (3, 96, 96), dtype=torch.uint8) for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in (3, 7)])
    before = model.backbone.stage4[-1].proj.conv.weight.detach().clone()
    model.train()
    losses = model.train_step(data, optim)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.backbone.stage4[-1].proj.conv.weight)


def test_recipe_values():
    cfg = load_config('emov2_5m_in1k')
    assert cfg.optim_wrapper.optimizer.lr == 3e-3 and cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.train_dataloader.batch_size == 128 and cfg.train_cfg.max_epochs == 300
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.model.backbone.window_size == 7
    ema = cfg.custom_hooks[0]
    assert ema.type == 'EMAHook' and ema.momentum == pytest.approx(1 - 0.9998)
    assert not any(t['type'] == 'RandomErasing' for t in cfg.train_dataloader.dataset.pipeline)
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == 20 and cosine.eta_min == 5e-7
    assert warmup.start_factor * cfg.optim_wrapper.optimizer.lr == pytest.approx(5e-7)
