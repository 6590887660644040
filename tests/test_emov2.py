"""EMOv2 backbone: construction, outputs, freezing and bad input."""
import json
import os.path as osp

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm.models import I2RMB, EMOv2, WindowAttention, set_fused_attention

VARIANTS = ['1M', '2M', '5M', '20M', '50M']


def test_arch_names_and_dict():
    with pytest.raises(KeyError, match='Unknown EMOv2 arch'):
        EMOv2('3M')
    with pytest.raises(TypeError, match='arch must be'):
        EMOv2(5)
    with pytest.raises(ValueError, match='missing keys'):
        EMOv2(dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128]))
    with pytest.raises(ValueError, match='unknown keys'):
        EMOv2(dict(EMOv2.arch_settings['1M'], depth=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='but there are 3 stages'):
        EMOv2(dict(EMOv2.arch_settings['1M'], depths=[1, 1, 1]))
    with pytest.raises(ValueError, match='not a multiple of dim_heads'):
        EMOv2(dict(EMOv2.arch_settings['1M'], dim_heads=[16, 16, 30, 20]))
    with pytest.raises(ValueError, match='mixers'):
        EMOv2(dict(EMOv2.arch_settings['1M'], mixers=['conv', 'conv', 'swin', 'spanning']))
    with pytest.raises(ValueError, match='positive'):
        EMOv2(dict(EMOv2.arch_settings['1M'], depths=[0, 1, 1, 1]))

    custom = dict(depths=[1, 1, 2, 1], embed_dims=[16, 24, 32, 64], exp_ratios=[2, 2, 2, 2],
                  dim_heads=[8, 8, 16, 16], mixers=['conv', 'conv', 'strided', 'contiguous'],
                  stem_channels=8)
    model = EMOv2(custom, window_size=4)
    assert model.stage0[0].conv.out_channels == 8
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 24, 32, 64]
    assert model.stage3[1].eops[0].partitions == (True, )
    assert model.stage4[0].eops[0].net.conv.kernel_size == (1, 1)  # first block: 1x1 mixer


@pytest.mark.parametrize('arch', VARIANTS)
def test_state_dict_matches_authors_layout(arch, reference_dir):
    """Every key and shape of the authors' det backbone (and classifier with final_norm)."""
    with open(osp.join(reference_dir, f'emov2_{arch}_state_dict.json')) as f:
        manifest = json.load(f)
    backbone = EMOv2(arch)
    assert {k: list(v.shape) for k, v in backbone.state_dict().items()} == \
        manifest['det_backbone']
    assert list(backbone.state_dict()) == list(manifest['det_backbone'])  # same order
    with_norm = EMOv2(arch, out_indices=-1, final_norm=True)
    expected = {k: v for k, v in manifest['classification'].items() if not k.startswith('head.')}
    assert {k: list(v.shape) for k, v in with_norm.state_dict().items()} == expected
    seg = EMOv2(arch, local_norm='ln')
    assert {k: list(v.shape) for k, v in seg.state_dict().items()} == manifest['seg_backbone']


def test_outputs_strides_and_indices():
    model = EMOv2('1M', out_indices=(0, 1, 2, 3, 4)).eval()
    outs = model(torch.rand(2, 3, 96, 128))
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 48, 64), (2, 32, 24, 32), (2, 48, 12, 16), (2, 80, 6, 8), (2, 180, 3, 4)]
    assert model.out_channels == [16, 32, 48, 80, 180]
    model = EMOv2('1M', out_indices=(-1, 2)).eval()
    assert model.out_indices == (4, 2)
    outs = model(torch.rand(1, 3, 64, 64))
    assert outs[0].shape[1] == 180 and outs[1].shape[1] == 48
    # out_channels: the returned outputs, in order; stage_channels: every output
    assert model.out_channels == [o.shape[1] for o in outs] == [180, 48]
    assert model.stage_channels == [16, 32, 48, 80, 180]
    single = EMOv2('1M', out_indices=3, return_tuple=False).eval()
    assert isinstance(single(torch.rand(1, 3, 64, 64)), torch.Tensor)


def test_stages_past_last_output_are_skipped():
    model = EMOv2('1M', out_indices=(2, )).eval()
    called = []
    model.stage3.register_forward_hook(lambda *_: called.append(3))
    model(torch.rand(1, 3, 64, 64))
    assert not called


@pytest.mark.parametrize('size', [(1, 1), (7, 9), (33, 17), (224, 224), (250, 333)])
def test_any_input_size(size):
    """Maps smaller than a window or not a multiple of it are padded, output cropped."""
    model = EMOv2('1M', window_size=10).eval()
    outs = model(torch.rand(1, 3, *size))
    for halvings, out in zip((2, 3, 4, 5), outs):  # every stride-2 layer gives ceil(s / 2)
        expected = list(size)
        for _ in range(halvings):
            expected = [-(-s // 2) for s in expected]
        assert tuple(out.shape[2:]) == tuple(expected)
        assert torch.isfinite(out).all()


def test_bad_input_errors():
    model = EMOv2('1M').eval()
    with pytest.raises(ValueError, match='expects NCHW input with 3 channels'):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match='expects NCHW'):
        model(torch.rand(3, 64, 64))
    assert EMOv2('1M', in_channels=1).eval()(torch.rand(1, 1, 32, 32))[0].shape[1] == 32
    # dtypes and values a user can get wrong, caught before any layer runs
    with pytest.raises(TypeError, match='floating-point input, got torch.uint8'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match='float32 weights but got torch.float64'):
        model(torch.rand(1, 3, 32, 32, dtype=torch.float64))
    for bad in (2.5, (7, 7, 7), 'ten'):
        with pytest.raises(ValueError, match='window_size must be'):
            EMOv2('1M', window_size=bad)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match='in_channels must be a positive int'):
            EMOv2('1M', in_channels=bad)
    with pytest.raises(ValueError, match='out_indices entry 5 is out of range'):
        EMOv2('1M', out_indices=(1, 5))
    with pytest.raises(ValueError, match='out of range'):
        EMOv2('1M', out_indices=(-6, ))
    with pytest.raises(ValueError, match='twice'):
        EMOv2('1M', out_indices=(4, -1))
    with pytest.raises(TypeError, match='non-empty'):
        EMOv2('1M', out_indices=())
    for bad in (-2, 5, 1.5):
        with pytest.raises(ValueError, match='frozen_stages'):
            EMOv2('1M', frozen_stages=bad)
    with pytest.raises(ValueError, match='return_tuple=False'):
        EMOv2('1M', return_tuple=False)
    with pytest.raises(ValueError, match='final_norm'):
        EMOv2('1M', out_indices=(2, ), final_norm=True)
    with pytest.raises(ValueError, match='local_norm'):
        EMOv2('1M', local_norm='gn')
    with pytest.raises(ValueError, match='drop_path_rate'):
        EMOv2('1M', drop_path_rate=1.5)


def test_frozen_stages_and_norm_eval():
    model = EMOv2('1M', frozen_stages=1, norm_eval=True)
    model.train()
    for name, param in model.named_parameters():
        assert param.requires_grad == (not name.startswith(('stage0.', 'stage1.'))), name
    for name, module in model.named_modules():
        if name.startswith(('stage0', 'stage1')):
            assert not module.training, name
        if isinstance(module, _BatchNorm):
            assert not module.training, name
    assert model.stage3.training  # LN stages keep training mode
    assert model.train() is model  # chaining works (the authors' train() returned None)

    full = EMOv2('1M', out_indices=-1, final_norm=True, frozen_stages=4)
    assert not any(p.requires_grad for p in full.parameters())


def test_drop_path_schedule():
    model = EMOv2('1M', drop_path_rate=0.1)
    blocks = [b for i in range(1, 5) for b in getattr(model, f'stage{i}')]
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in blocks]
    total = len(blocks)
    expected = [0.1 * i / (total - 1) if b.has_skip else 0. for i, b in enumerate(blocks)]
    assert rates == pytest.approx(expected)
    assert not blocks[0].has_skip and blocks[1].has_skip


@pytest.mark.parametrize('channels_last', [True, False], ids=['channels_last', 'nchw'])
@pytest.mark.parametrize('size', [(100, 150), (224, 224)])
def test_attention_paths_agree(size, channels_last):
    """SDPA (True) and the automatic path (None: convs before padding, kernel by device;
    on CPU two matmuls, on channels-first maps in the (heads, D, tokens) layout; identical
    partitions computed once) equal the eager reference (False, the authors' order).
    100x150 pads every stage; at 224 stage 4 is one window of 7x7, where the contiguous
    and strided partitions coincide."""
    model = EMOv2('2M', window_size=7, channels_last=channels_last).eval()
    for module in model.modules():
        if isinstance(module, I2RMB):
            module.ls.gamma.data.fill_(0.7)  # make every block matter
    x = torch.randn(2, 3, *size)
    outs = {}
    for path in (True, None, False):
        set_fused_attention(model, path)
        with torch.no_grad():
            outs[path] = model(x)
    assert all(m.fused_attn is False for m in model.modules() if isinstance(m, WindowAttention))
    for path in (True, None):
        for a, b in zip(outs[path], outs[False]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert EMOv2('1M', fused_attn=False).stage3[1].eops[0].fused_attn is False
    assert EMOv2('1M').stage3[1].eops[0].fused_attn is None


def test_spanning_is_sum_of_partitions():
    """Spanning attention = contiguous + strided attention on shared q/k/v."""
    torch.manual_seed(0)
    span = WindowAttention(32, 64, 8, (4, 4), (False, True), 'gelu').eval()
    close = WindowAttention(32, 64, 8, (4, 4), (False, ), 'gelu').eval()
    far = WindowAttention(32, 64, 8, (4, 4), (True, ), 'gelu').eval()
    close.load_state_dict(span.state_dict())
    far.load_state_dict(span.state_dict())
    x = torch.randn(2, 32, 10, 13)
    torch.testing.assert_close(span(x), close(x) + far(x), rtol=1e-5, atol=1e-6)
    # One window covering the whole map: both partitions coincide, output is 2x global.
    glob = WindowAttention(32, 64, 8, (0, 0), (False, ), 'gelu').eval()
    glob.load_state_dict(span.state_dict())
    span_global = WindowAttention(32, 64, 8, (0, 0), (False, True), 'gelu').eval()
    span_global.load_state_dict(span.state_dict())
    torch.testing.assert_close(span_global(x), 2 * glob(x), rtol=1e-5, atol=1e-6)


def test_strided_windows_group_the_right_tokens():
    """A strided window holds rows a, a+n1, ... (dilated grid); a contiguous one a block."""
    from emo_mm.models.attention import merge_heads, partition_heads
    x = torch.arange(6 * 8, dtype=torch.float32).view(1, 1, 6, 8)  # one head, D = 1
    windows, lengths = (2, 2), (3, 4)
    strided = partition_heads(x, 1, windows, lengths, strided=True)[..., 0]
    close = partition_heads(x, 1, windows, lengths, strided=False)[..., 0]
    grid = x[0, 0]
    assert set(strided[1, 0].tolist()) == set(grid[0::2, 1::2].flatten().tolist())
    assert set(close[1, 0].tolist()) == set(grid[0:3, 4:8].flatten().tolist())
    for flag, parts in ((True, strided), (False, close)):
        back = merge_heads(parts[:, :, :, None], windows, lengths, flag).reshape(1, 1, 6, 8)
        assert torch.equal(back, x)
        # the channels-outer layout (heads, D, tokens) holds the same tokens in the same order
        inner = partition_heads(x, 1, windows, lengths, strided=flag, tokens_inner=True)
        assert torch.equal(inner[:, :, 0], parts)
        back = merge_heads(inner, windows, lengths, flag, tokens_inner=True)
        assert torch.equal(back.reshape(1, 1, 6, 8), x)


def test_attention_paths_agree_in_training():
    """Gradients too: each memory layout and attention path gives the reference's."""
    x = torch.randn(2, 3, 100, 150)
    grads = {}
    for channels_last in (True, False):
        for path in (None, False):
            torch.manual_seed(0)
            model = EMOv2('1M', window_size=7, channels_last=channels_last,
                          fused_attn=path).train()
            image = x.clone().requires_grad_()
            sum(o.square().mean() for o in model(image)).backward()
            grads[channels_last, path] = (image.grad, model.stage3[1].eops[0].qk.conv.weight.grad)
    for key, (image_grad, weight_grad) in grads.items():
        torch.testing.assert_close(image_grad, grads[False, False][0], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(weight_grad, grads[False, False][1], rtol=1e-4, atol=1e-6)


def test_gradients_flow():
    model = EMOv2('1M', drop_path_rate=0.1).train()
    for block in model.stage3:
        block.ls.gamma.data.fill_(0.5)
    outs = model(torch.rand(2, 3, 64, 96))
    sum(o.mean() for o in outs).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_deprecated_pretrained_argument(tmp_path):
    path = str(tmp_path / 'w.pth')
    torch.save(EMOv2('1M').state_dict(), path)
    with pytest.warns(DeprecationWarning, match='pretrained=PATH is deprecated'):
        model = EMOv2('1M', pretrained=path)
    assert model.init_cfg == dict(type='Pretrained', checkpoint=path)
    with pytest.raises(ValueError, match='not both'):
        EMOv2('1M', pretrained=path, init_cfg=dict(type='Pretrained', checkpoint=path))
