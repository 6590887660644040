"""V-EMO: the logged Kinetics model's size and names, 2-D -> 3-D inflation, bad input."""
import json
import os.path as osp

import pytest
import torch

from emo_mm.apis import build_model, load_config
from emo_mm.models import VEMO, EMOv2, inflate_2d_state
from helpers import relative_error


@pytest.fixture(scope='module')
def log_entry(reference_dir):
    with open(osp.join(reference_dir, 'downstream_log_params.json')) as f:
        return json.load(f)['EMOv2_5M_8_160_20240707_014439.log']


def test_kinetics_model_matches_log(log_entry):
    model = build_model(load_config('vemo_5m_k400'))
    assert sum(p.numel() for p in model.parameters()) == log_entry['n_params_total'] == 5983568
    assert sum(p.numel() for p in model.backbone.parameters()) == 5867968
    assert sum(p.numel() for p in model.cls_head.parameters()) == 115600
    assert {k: list(p.shape) for k, p in model.backbone.named_parameters()} == \
        log_entry['backbone']
    clip = torch.rand(2, 1, 3, 4, 64, 64)  # (N, clips, C, T, H, W)
    model.eval()
    with torch.no_grad():
        features = model(clip, mode='tensor')  # the backbone's pooled output
        scores = model.cls_head(features)
    assert features.shape == (2, 288) and scores.shape == (2, 400)


def _random_2d(arch='1M'):
    model = EMOv2(arch, window_size=5, out_indices=(1, 2, 3, 4))
    for p in model.parameters():  # every branch matters
        p.data.normal_(0, 0.3) if p.dim() > 1 else p.data.uniform_(0.5, 1.5)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_center_inflation_reproduces_2d_features(tmp_path):
    """Identical frames: every time step of V-EMO equals the 2-D model on that frame,
    when the spatial window equals the 2-D window and T is a multiple of the temporal
    window at every stage (no temporal padding; duplicated keys leave attention as is)."""
    model2d = _random_2d()
    path = str(tmp_path / '2d.pth')
    torch.save(model2d.state_dict(), path)
    model3d = VEMO('1M', window_size=(2, 5, 5), out_indices=(1, 2, 3, 4), final_norm=False,
                   return_tuple=True, global_pool=False,
                   init_cfg=dict(type='Pretrained', checkpoint=path))
    model3d.init_weights()
    model3d.eval()
    frame = torch.randn(2, 3, 96, 128)
    clip = frame.unsqueeze(2).expand(-1, -1, 4, -1, -1)
    with torch.no_grad():
        outs2d, outs3d = model2d(frame), model3d(clip)
    # Scale-relative, as every parity check here: activations of this random net reach
    # ~250, and the 3-D attention sums its partitions in another order than the 2-D one.
    for out2d, out3d in zip(outs2d, outs3d):
        for t in range(4):
            assert relative_error(out3d[:, :, t], out2d) < 1e-5


def test_mean_inflation_rule():
    """Mean inflation spreads a kernel over time: equal to 2-D where no zero padding is
    reached (the interior frames), scaled down at the clip's ends."""
    conv2d = torch.nn.Conv2d(4, 6, 3, padding=1)
    conv3d = torch.nn.Conv3d(4, 6, 3, padding=1)
    state = inflate_2d_state(conv2d.state_dict(), conv3d.state_dict(), 'mean')
    conv3d.load_state_dict(state)
    frame = torch.randn(1, 4, 8, 8)
    clip = frame.unsqueeze(2).expand(-1, -1, 5, -1, -1)
    with torch.no_grad():
        ref, out = conv2d(frame), conv3d(clip)
    for t in (1, 2, 3):
        torch.testing.assert_close(out[:, :, t], ref, rtol=1e-5, atol=1e-5)
    bias = conv2d.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out[:, :, 0] - bias, (ref - bias) * 2 / 3, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'center' or 'mean'"):
        inflate_2d_state({}, {}, 'tile')


def test_video_input_errors():
    model = VEMO('1M', global_pool=False).eval()
    with pytest.raises(ValueError, match='expects NCTHW input with 3 channels'):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match='temporal_strides'):
        VEMO('1M', temporal_strides=(1, 2))
    with pytest.raises(ValueError, match=r'window_size must be \(t, h, w\)'):
        VEMO('1M', window_size=5)
    # a clip shorter than the temporal window and sizes that are not multiples: padded
    with torch.no_grad():
        out = model(torch.rand(1, 3, 3, 50, 70))
    assert out.shape == (1, 180, 3, 2, 3)
    assert VEMO('1M', temporal_strides=(2, 1, 2, 1, 1), global_pool=False).eval()(
        torch.rand(1, 3, 8, 32, 32)).shape[2] == 2
