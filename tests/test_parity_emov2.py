"""Exact parity with the authors' EMOv2 release.

The reference outputs were produced by the authors' unmodified model files from
randomised weights in which every branch matters (LayerScale gamma ~0.5). The weights
and inputs are regenerated from their seeded recipe and checked against the authors'
checksums; logits are compared whole, feature maps at fixed positions and through their
per-channel means (tests/reference_data.py, tests/data/README.md).
"""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from emo_mm.models import EMOv2, authors_to_mmpretrain, set_fused_attention
from helpers import REPO, build_classifier, relative_error
from reference_data import checked_inputs, checked_random_weights, load_outputs, map_error

TOL = 1e-5  # relative to the tensor's scale (max |ref|)


def _load(arch):
    return checked_random_weights('emov2', arch), checked_inputs(), load_outputs('emov2', arch)


def _backbone_weights(weights):
    return {k: v for k, v in weights.items() if not k.startswith(('norm.', 'head.'))}


def _logits(arch, weights, inputs, fused=True):
    model = build_classifier(arch)
    model.load_state_dict(authors_to_mmpretrain(weights), strict=True)
    set_fused_attention(model, fused)
    model.eval()
    with torch.no_grad():
        return model(inputs['cls_input'], mode='tensor')


def _features(arch, weights, inputs, window=10, fused=True):
    model = EMOv2(arch, window_size=window, out_indices=(1, 2, 3, 4), fused_attn=fused)
    model.load_state_dict(_backbone_weights(weights), strict=True)
    model.eval()
    with torch.no_grad():
        return model(inputs['det_input'])


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_classifier_logits(arch, fused):
    weights, inputs, expected = _load(arch)
    err = relative_error(_logits(arch, weights, inputs, fused), expected['cls_logits'])
    assert err < TOL, f'{arch} logits: relative error {err:.2e}'


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('window', [10, 7])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_detection_backbone_features(arch, window, fused):
    """256x320 input: windows of 10 and 7 both need padding in stages 3 and 4."""
    weights, inputs, expected = _load(arch)
    outs = _features(arch, weights, inputs, window, fused)
    for i, out in enumerate(outs, 1):
        err = map_error(out, expected['maps'][f'det_ws{window}_out{i}'])
        assert err < TOL, f'{arch} window {window} out{i}: relative error {err:.2e}'


@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_segmentation_file_variant(arch):
    """The authors' seg file (LN2d+GELU depth-wise norm, weight 1 / bias 0)."""
    weights, inputs, expected = _load(arch)
    model = EMOv2(arch, window_size=10, local_norm='ln')
    own = model.state_dict()
    state = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    result = model.load_state_dict(state, strict=False)
    assert all('conv_local.norm.norm' in k for k in result.missing_keys)  # left at 1 / 0
    model.eval()
    with torch.no_grad():
        outs = model(inputs['det_input'])
    for i, out in enumerate(outs, 1):
        err = map_error(out, expected['maps'][f'seg_ws10_out{i}'])
        assert err < TOL, f'{arch} seg out{i}: relative error {err:.2e}'


def test_parity_detects_a_small_weight_change():
    """The comparison is sharp: one weight of one late block changed by 1e-3 (its scale is
    ~0.1) takes logits and the compact feature maps beyond the tolerance."""
    weights, inputs, expected = _load('1M')
    key = 'stage4.0.proj.conv.weight'
    changed = dict(weights, **{key: weights[key].clone()})
    changed[key][0, 0, 0, 0] += 1e-3
    assert relative_error(_logits('1M', changed, inputs), expected['cls_logits']) > TOL
    out4 = _features('1M', changed, inputs)[3]
    assert map_error(out4, expected['maps']['det_ws10_out4']) > TOL
    # an early change is also seen by the stride-4 map, at the sampled positions alone
    key = 'stage1.0.proj.conv.weight'
    changed = dict(weights, **{key: weights[key].clone()})
    changed[key][0, 0, 0, 0] += 1e-3
    out1 = _features('1M', changed, inputs)[0]
    sampled = dict(expected['maps']['det_ws10_out1'])
    sampled['channel_mean'] = out1.double().mean(dim=(0, 2, 3))  # positions only
    assert map_error(out1, sampled) > TOL


def test_authors_checkpoint_through_init_cfg(reference_dir):
    """The flat classifier file loads into the backbone via init_cfg; norm/head dropped."""
    _, inputs, expected = _load('1M')
    model = EMOv2('1M', window_size=10, init_cfg=dict(
        type='Pretrained', checkpoint=osp.join(reference_dir, 'emov2_1M_random.pth')))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(inputs['det_input'])
    assert map_error(outs[3], expected['maps']['det_ws10_out4']) < TOL


@pytest.mark.slow  # two tool runs in subprocesses; the key mapping itself is tested above
def test_convert_tool_round_trip(reference_dir, tmp_path):
    """tools/model_converters/convert_checkpoint.py: authors' file -> mmpretrain classifier ->
    authors'."""
    src = osp.join(reference_dir, 'emov2_1M_random.pth')
    mid, back = str(tmp_path / 'mmpretrain.pth'), str(tmp_path / 'authors.pth')
    tool = osp.join(REPO, 'tools', 'model_converters', 'convert_checkpoint.py')
    for args in ([src, mid], ['--reverse', mid, back]):
        subprocess.run([sys.executable, tool, *args], check=True, capture_output=True)
    weights, inputs, expected = _load('1M')
    model = build_classifier('1M')
    model.load_state_dict(torch.load(mid, weights_only=True)['state_dict'], strict=True)
    model.eval()
    with torch.no_grad():
        assert relative_error(model(inputs['cls_input'], mode='tensor'),
                              expected['cls_logits']) < TOL
    restored = torch.load(back, weights_only=True)
    assert list(restored) == list(weights)
    assert all(torch.equal(restored[k], weights[k]) for k in weights)
