"""DiT and D-EMO: sizes against the authors' logs, FLOPs against the paper, DiT's
computations, initialisation, guidance and label dropout.

Large models are built on the meta device (shapes only): parameters are counted and FLOPs
traced without allocating gigabytes; one real build checks that meta counting agrees.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn

from emo_mm.models import DEMO, I2RMB, DEMOBlock, DiT, DiTBlock, WindowAttention
from emo_mm.models.attention import attention_path
from emo_mm.models.dit import LabelEmbedder, convert_official_dit, sincos_pos_embed_2d
from emo_mm.utils.flops import count_flops
from helpers import REPO

SIZES = ['S-2', 'B-2', 'L-2', 'XL-2']
#: "DiT Parameters: N" in the authors' D-EMO training logs (DEMO-{S,B,L,XL}-2_log.txt).
DEMO_LOG_PARAMS = {'S-2': 24_596_000, 'B-2': 96_672_800, 'L-2': 334_831_648,
                   'XL-2': 492_692_000}
#: EMOv2 paper, Table XIV (GFLOPs at 256x256, i.e. 32x32x4 latents).
DEMO_PAPER_GFLOPS = {'S-2': 5.4, 'B-2': 19.9, 'L-2': 69.3, 'XL-2': 101.5}
#: DiT's parameter totals (its model definitions) and Gflops (DiT paper, Table 4).
DIT_PARAMS = {'S-2': 32_963_360, 'B-2': 130_512_416, 'L-2': 458_102_816,
              'XL-2': 675_129_632}
DIT_PAPER_GFLOPS = {'S-2': 6.06, 'B-2': 23.01, 'L-2': 80.71, 'XL-2': 118.64}

TINY_DEMO = dict(hidden=64, depth=2, heads=2, patch_size=2, window_size=4)
TINY_DIT = dict(hidden=64, depth=2, heads=2, patch_size=2)


def latent_inputs(batch=1, channels=4, size=32, device=None):
    return (torch.randn(batch, channels, size, size, device=device),
            torch.randint(0, 1000, (batch, ), device=device),
            torch.randint(0, 1000, (batch, ), device=device))


def count_on_meta(cls, arch, **kwargs):
    with torch.device('meta'):
        model = cls(arch, **kwargs)
        inputs = latent_inputs(device='meta')
    return count_flops(model, *inputs)


def randomize_(model):
    """Non-zero values everywhere (DiT's init zeroes the modulation and the output)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


# ---------------------------------------------------------------------------------------
# Sizes and FLOPs.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', SIZES)
def test_demo_parameters_match_the_logs(arch):
    params = count_on_meta(DEMO, arch)['params']
    if arch != 'B-2':
        assert params == DEMO_LOG_PARAMS[arch]
        return
    # The B-2 log was written at input_size 64: a larger fixed positional embedding.
    assert params == 96_082_976
    assert DEMO_LOG_PARAMS[arch] - params == (64**2 - 32**2) // 4 * 768
    with torch.device('meta'):
        assert sum(p.numel() for p in DEMO(arch, input_size=64).parameters()) == \
            DEMO_LOG_PARAMS[arch]


@pytest.mark.parametrize('arch', SIZES)
def test_dit_parameters_match_dit(arch):
    assert count_on_meta(DiT, arch)['params'] == DIT_PARAMS[arch]


@pytest.mark.parametrize('arch', SIZES)
def test_demo_flops_match_the_paper(arch):
    gflops = count_on_meta(DEMO, arch)['flops'] / 1e9
    assert abs(gflops / DEMO_PAPER_GFLOPS[arch] - 1) < 0.02, gflops


@pytest.mark.parametrize('arch', SIZES)
def test_dit_flops_match_the_dit_paper(arch):
    gflops = count_on_meta(DiT, arch)['flops'] / 1e9
    assert abs(gflops / DIT_PAPER_GFLOPS[arch] - 1) < 0.01, gflops


@pytest.mark.parametrize('cls', [DEMO, DiT])
def test_meta_counting_equals_a_real_build(cls):
    # Two full-width blocks at 32x32x4: the sizes above differ only in width and depth.
    arch = dict(hidden=384, depth=2, heads=6, patch_size=2)
    real = count_flops(cls(arch), *latent_inputs())
    assert real['flops'] > 5e8
    assert real == count_on_meta(cls, arch)


def test_per_block_parameters_follow_the_design():
    for h in (384, 1152):
        demo_block = DEMOBlock(h, 6 if h == 384 else 16)
        assert sum(p.numel() for p in demo_block.parameters()) == 13 * h * h + 119 * h
        dit_block = DiTBlock(h, 6 if h == 384 else 16)
        assert sum(p.numel() for p in dit_block.parameters()) == 18 * h * h + 15 * h


# ---------------------------------------------------------------------------------------
# Structure: the project's block and attention.
# ---------------------------------------------------------------------------------------
def test_demo_blocks_are_i2rmbs_with_window_attention():
    with torch.device('meta'):
        model = DEMO('S-2')
    assert len(model.blocks) == 12
    for block in model.blocks:
        assert isinstance(block, I2RMB)
        attn = block.eops[0]
        assert type(attn) is WindowAttention
        assert attn.partitions == (False, True)  # spanning: contiguous + strided
        assert attn.window_size == (8, 8) and attn.num_heads == 6
        assert isinstance(block.ls, nn.Identity)  # the adaLN gate replaces LayerScale
    attentions = [m for m in model.modules() if hasattr(m, 'fused_attn')]
    assert len(attentions) == 12 and all(type(m) is WindowAttention for m in attentions)


def test_dit_attention_is_window_attention_with_one_global_window():
    with torch.device('meta'):
        model = DiT('S-2')
    for block in model.blocks:
        assert type(block.attn) is WindowAttention
        assert block.attn.partitions == (False, ) and block.attn.window_size == (0, 0)
        assert isinstance(block.attn.v.act, nn.Identity)


def dit_reference_block(block: DiTBlock, x_tokens, c, heads):
    """DiT's block as DiT writes it (tokens, one qkv Linear), from the block's weights."""
    h = x_tokens.shape[-1]
    qkv_w = torch.cat([block.attn.qk.conv.weight, block.attn.v.conv.weight]).view(3 * h, h)
    qkv_b = torch.cat([block.attn.qk.conv.bias, block.attn.v.conv.bias])
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = block.adaLN_modulation(c).chunk(6, 1)

    def ln(t):
        return nn.functional.layer_norm(t, (h, ), eps=1e-6)

    y = ln(x_tokens) * (1 + scale_a[:, None]) + shift_a[:, None]
    B, N, _ = y.shape
    q, k, v = (y @ qkv_w.T + qkv_b).reshape(B, N, 3, heads, h // heads).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1) / math.sqrt(h // heads)).softmax(-1)
    y = (attn @ v).transpose(1, 2).reshape(B, N, h)
    x_tokens = x_tokens + gate_a[:, None] * block.attn_proj(y)
    y = ln(x_tokens) * (1 + scale_m[:, None]) + shift_m[:, None]
    return x_tokens + gate_m[:, None] * block.mlp(y)


@pytest.mark.parametrize('fused', [False, True])
def test_dit_block_computes_dits_block(fused):
    h, heads, side = 64, 4, 6
    block = randomize_(DiTBlock(h, heads, fused_attn=fused)).eval()
    tokens, c = torch.randn(2, side * side, h), torch.randn(2, h)
    expected = dit_reference_block(block, tokens, c, heads)
    grid = tokens.transpose(1, 2).unflatten(2, (side, side))  # channels-last map
    out = block(grid, c).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fused', [False, True])
def test_dit_equals_dits_own_code(fused):
    """Outputs of DiT's own models.py (facebookresearch/DiT at ed81ce2: a depth-2, width-32
    DiT on 8x8x4 inputs with N(0, 0.1) weights, its ``forward`` and ``forward_with_cfg`` at
    scale 3), stored in tests/data/dit_official_tiny.pt, reproduced from its state dict."""
    ref = torch.load(osp.join(REPO, 'tests', 'data', 'dit_official_tiny.pt'), weights_only=True)
    cfg = ref['config']
    model = DiT(dict(hidden=cfg['hidden_size'], depth=cfg['depth'], heads=cfg['num_heads'],
                     patch_size=cfg['patch_size'], mlp_ratio=cfg['mlp_ratio']),
                input_size=cfg['input_size'], in_channels=cfg['in_channels'],
                num_classes=cfg['num_classes'], learn_sigma=cfg['learn_sigma'],
                class_dropout_prob=cfg['class_dropout_prob'], fused_attn=fused).eval()
    # The fixed positions are not learned: a fresh model already has DiT's.
    torch.testing.assert_close(model.pos_embed, ref['state_dict']['pos_embed'])
    model.load_state_dict(convert_official_dit(ref['state_dict']), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(ref['x'], ref['t'], ref['y']), ref['out'],
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            model.forward_with_cfg(ref['x'], ref['t'], ref['y'], ref['cfg_scale']),
            ref['cfg_out'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cls, arch', [(DEMO, TINY_DEMO), (DiT, TINY_DIT)])
def test_fused_and_eager_attention_agree(cls, arch):
    model = randomize_(cls(arch, input_size=16)).eval()
    inputs = latent_inputs(2, size=16)
    with attention_path(model, False):
        eager = model(*inputs)
    with attention_path(model, True):
        fused = model(*inputs)
    assert eager.abs().mean() > 1e-2
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-5)


def test_positional_embedding_is_dits():
    """DiT's numpy construction (meshgrid of x then y, sin then cos per half)."""
    dim, size = 32, 4

    def one_d(embed_dim, pos):
        omega = 1. / 10000**(np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.))
        out = np.einsum('m,d->md', pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(size, dtype=np.float32),
                                np.arange(size, dtype=np.float32)), axis=0)
    expected = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    torch.testing.assert_close(sincos_pos_embed_2d(dim, size),
                               torch.from_numpy(expected).float())
    model = DEMO(TINY_DEMO, input_size=8)
    assert not model.pos_embed.requires_grad
    torch.testing.assert_close(model.pos_embed[0], sincos_pos_embed_2d(64, 4))


# ---------------------------------------------------------------------------------------
# Forward, initialisation, guidance, label dropout.
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('cls, arch', [(DEMO, TINY_DEMO), (DiT, TINY_DIT)])
def test_forward_shapes(cls, arch):
    x, t, y = latent_inputs(3, size=16)
    assert cls(arch, input_size=16)(x, t.float() + 0.5, y).shape == (3, 8, 16, 16)
    net = cls(arch, input_size=16, in_channels=3, learn_sigma=False, num_classes=5)
    assert net(torch.randn(2, 3, 16, 16), t[:2], torch.tensor([0, 5])).shape == (2, 3, 16, 16)


@pytest.mark.parametrize('cls, arch', [(DEMO, TINY_DEMO), (DiT, TINY_DIT)])
def test_fresh_network_is_zero_gated(cls, arch):
    """DiT's init zeroes every adaLN modulation and the final layer: each block starts as
    the identity and the network's output is exactly zero."""
    model = cls(arch, input_size=16).train()
    x, t, y = latent_inputs(2, size=16)
    assert torch.count_nonzero(model(x, t, y)) == 0
    grid, c = torch.randn(2, 64, 8, 8), torch.randn(2, 64)
    for block in model.blocks:
        assert torch.equal(block(grid, c), grid)
    # ...while the trunk itself is not trivially zero.
    assert model.x_embedder.proj.weight.abs().sum() > 0


def test_classifier_free_guidance():
    model = randomize_(DEMO(TINY_DEMO, input_size=16)).eval()
    x = torch.randn(2, 4, 16, 16)
    x = torch.cat([x, torch.randn_like(x)])  # the second half is ignored, as in DiT
    t = torch.tensor([10, 700, 10, 700])
    y = torch.tensor([3, 5, 1000, 1000])
    cond = model(x[:2], t[:2], y[:2])
    uncond = model(x[:2], t[2:], y[2:])
    scale = 4.0
    out = model.forward_with_cfg(x, t, y, scale)
    guided = uncond[:, :3] + scale * (cond[:, :3] - uncond[:, :3])
    torch.testing.assert_close(out[:2, :3], guided, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[2:, :3], guided, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[:2, 3:], cond[:, 3:])  # DiT guides 3 of 4 channels
    torch.testing.assert_close(out[2:, 3:], uncond[:, 3:])
    every = model.forward_with_cfg(x, t, y, scale, guidance_channels=None)
    torch.testing.assert_close(every[:2, :4], uncond[:, :4] + scale * (cond[:, :4] - uncond[:, :4]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(every[:, 4:], torch.cat([cond, uncond])[:, 4:])
    with pytest.raises(ValueError, match='even batch'):
        model.forward_with_cfg(x[:3], t[:3], y[:3], scale)


def test_label_dropout_only_in_training():
    embedder = LabelEmbedder(num_classes=10, hidden=8, dropout_prob=0.3)
    labels = torch.arange(10).repeat(100)
    assert embedder.embedding_table.num_embeddings == 11  # + the null class
    dropped = embedder.train().token_drop(labels) == 10
    assert 0.25 < dropped.float().mean() < 0.35
    embedder.train()
    null = embedder.embedding_table.weight[10]
    rows = embedder(labels)
    is_null = (rows == null).all(dim=1)
    assert 0.25 < is_null.float().mean() < 0.35
    embedder.eval()
    assert not (embedder(labels) == null).all(dim=1).any()
    forced = embedder(torch.tensor([1, 2, 3]), force_drop_ids=torch.tensor([1, 0, 1]))
    assert torch.equal(forced[0], null) and torch.equal(forced[2], null)
    assert torch.equal(forced[1], embedder.embedding_table.weight[2])


def test_training_mode_drops_labels_in_the_network():
    model = randomize_(DiT(TINY_DIT, input_size=8, class_dropout_prob=0.5))
    x, t = torch.randn(8, 4, 8, 8), torch.full((8, ), 100)
    y = torch.arange(8)
    model.eval()
    assert torch.equal(model(x, t, y), model(x, t, y))
    model.train()
    torch.manual_seed(0)
    first = model(x, t, y)
    torch.manual_seed(1)
    assert not torch.equal(first, model(x, t, y))


# ---------------------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------------------
def test_arch_validation():
    with pytest.raises(KeyError, match='Unknown DEMO arch'):
        DEMO('M-2')
    with pytest.raises(ValueError, match='missing keys'):
        DEMO(dict(hidden=64, depth=2, heads=2))
    with pytest.raises(ValueError, match='unknown keys'):
        DiT(dict(TINY_DIT, window_size=4))
    with pytest.raises(ValueError, match='not divisible'):
        DiT(dict(TINY_DIT, heads=3))
    with pytest.raises(ValueError, match='must be an int'):
        DEMO(dict(TINY_DEMO, depth=2.5))
    with pytest.raises(ValueError, match='multiple of the patch'):
        DEMO(TINY_DEMO, input_size=15)
    with pytest.raises(ValueError, match='class_dropout_prob'):
        DEMO(TINY_DEMO, input_size=16, class_dropout_prob=1.0)


def test_input_validation():
    model = DiT(TINY_DIT, input_size=8, num_classes=10)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r'\(B, 4, 8, 8\)'):
        model(torch.randn(2, 4, 16, 16), t, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r'Labels must lie in \[0, 10\]'):
        model(x, t, torch.tensor([1, 11]))
    with pytest.raises(TypeError, match='integers'):
        model(x, t, torch.tensor([1., 2.]))
    with pytest.raises(ValueError, match='one per sample'):
        model(x, torch.tensor([1]), torch.tensor([1, 2]))
    no_null = DiT(TINY_DIT, input_size=8, num_classes=10, class_dropout_prob=0.)
    with pytest.raises(ValueError, match='no null class'):
        no_null(x, t, torch.tensor([1, 10]))


def test_registered_in_the_emo_mm_scope():
    from mmengine.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(dict(type='emo_mm.DEMO', arch='S-2'))
    assert isinstance(model, DEMO)
    assert sum(p.numel() for p in model.parameters()) == DEMO_LOG_PARAMS['S-2']


# ---------------------------------------------------------------------------------------
# ImageNet 256 configs (built on the meta device: the denoiser only; the Runner path is
# tested with the diffusion wrapper).
# ---------------------------------------------------------------------------------------
CONFIGS = [(f'{prefix}-{size.lower()}_imagenet256.py', family, size)
           for family, prefix in (('demo', 'd-emo'), ('dit', 'dit')) for size in SIZES]


@pytest.mark.parametrize('name, family, arch', CONFIGS)
def test_imagenet_configs(name, family, arch):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(f'{REPO}/configs/dit/{name}')
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        denoiser = MODELS.build(cfg.model.denoiser)
    expected = {'demo': {**DEMO_LOG_PARAMS, 'B-2': 96_082_976}, 'dit': DIT_PARAMS}[family]
    assert type(denoiser) is {'demo': DEMO, 'dit': DiT}[family]
    assert sum(p.numel() for p in denoiser.parameters()) == expected[arch]
    assert cfg.model.type == 'emo_mm.DiffusionModel'
    assert (cfg.model.num_timesteps, cfg.model.beta_schedule) == (1000, 'linear')
    assert cfg.model.learn_sigma and denoiser.learn_sigma and denoiser.out_channels == 8
    assert denoiser.y_embedder.dropout_prob == 0.1
    assert cfg.model.data_preprocessor.std == pytest.approx(1 / 0.18215)
    assert cfg.model.data_preprocessor.hflip_prob == 0.5
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, 0.)
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=400_000)
    assert cfg.train_dataloader.batch_size * 8 == 256
    assert cfg.train_dataloader.dataset.type == 'emo_mm.LatentDataset'
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and ema[0].momentum == 1e-4


def test_ema_momentum_convention():
    """MMEngine's momentum is the weight of the *new* value: 1e-4 is DiT's decay 0.9999."""
    from mmengine.model import ExponentialMovingAverage
    net = nn.Linear(2, 1)
    ema = ExponentialMovingAverage(net, momentum=1e-4)
    ema.update_parameters(net)  # first update: copy
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.)
    ema.update_parameters(net)
    torch.testing.assert_close(ema.module.weight, 0.9999 * before + 1e-4 * net.weight)


def test_deploy_folds_demo_batch_norm_exactly():
    from emo_mm.models import switch_to_deploy
    model = randomize_(DEMO(TINY_DEMO, input_size=16))
    model.train()(*latent_inputs(4, size=16))  # running statistics that are not identity
    model.eval()
    inputs = latent_inputs(2, size=16)
    expected = model(*inputs)
    switch_to_deploy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(*inputs), expected, rtol=1e-4, atol=1e-5)


def test_init_cfg_loads_a_checkpoint(tmp_path):
    trained = randomize_(DiT(TINY_DIT, input_size=8))
    path = str(tmp_path / 'dit.pth')
    torch.save(trained.state_dict(), path)
    model = DiT(TINY_DIT, input_size=8, init_cfg=dict(type='Pretrained', checkpoint=path))
    assert torch.count_nonzero(model.final_layer.linear.weight) == 0  # DiT's init until...
    model.init_weights()  # ...the Runner's call loads the checkpoint
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
