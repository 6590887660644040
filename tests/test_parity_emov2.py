"""Exact parity with the authors' EMOv2 release (../shared/reference, see its README).

The reference outputs were produced by the authors' unmodified model files from
randomised weights in which every branch matters (LayerScale gamma ~0.5).
"""
import os.path as osp

import pytest
import torch

from emo_mm.models import EMOv2, authors_to_mmpretrain, set_fused_attention
from helpers import build_classifier, relative_error

TOL = 1e-5  # relative to the tensor's scale (max |ref|)


def _load(reference_dir, arch):
    weights = torch.load(osp.join(reference_dir, f'emov2_{arch}_random.pth'), weights_only=True)
    io = torch.load(osp.join(reference_dir, f'emov2_{arch}_io.pth'), weights_only=True)
    return weights, io


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_classifier_logits(arch, fused, reference_dir):
    weights, io = _load(reference_dir, arch)
    model = build_classifier(arch)
    model.load_state_dict(authors_to_mmpretrain(weights), strict=True)
    set_fused_attention(model, fused)
    model.eval()
    with torch.no_grad():
        logits = model(io['cls_input'], mode='tensor')
    err = relative_error(logits, io['cls_logits'])
    assert err < TOL, f'{arch} logits: relative error {err:.2e}'


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('window', [10, 7])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_detection_backbone_features(arch, window, fused, reference_dir):
    """256x320 input: windows of 10 and 7 both need padding in stages 3 and 4."""
    weights, io = _load(reference_dir, arch)
    model = EMOv2(arch, window_size=window, out_indices=(1, 2, 3, 4), fused_attn=fused)
    backbone_weights = {k: v for k, v in weights.items() if not k.startswith(('norm.', 'head.'))}
    model.load_state_dict(backbone_weights, strict=True)
    model.eval()
    with torch.no_grad():
        outs = model(io['det_input'])
    for i, out in enumerate(outs, 1):
        err = relative_error(out, io[f'det_ws{window}_out{i}'])
        assert err < TOL, f'{arch} window {window} out{i}: relative error {err:.2e}'


@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_segmentation_file_variant(arch, reference_dir):
    """The authors' seg file (LN2d+GELU depth-wise norm, weight 1 / bias 0)."""
    weights, io = _load(reference_dir, arch)
    model = EMOv2(arch, window_size=10, local_norm='ln')
    own = model.state_dict()
    state = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    result = model.load_state_dict(state, strict=False)
    assert all('conv_local.norm.norm' in k for k in result.missing_keys)  # left at 1 / 0
    model.eval()
    with torch.no_grad():
        outs = model(io['det_input'])
    for i, out in enumerate(outs, 1):
        err = relative_error(out, io[f'seg_ws10_out{i}'])
        assert err < TOL, f'{arch} seg out{i}: relative error {err:.2e}'


def test_authors_checkpoint_through_init_cfg(reference_dir, tmp_path):
    """The flat classifier file loads into the backbone via init_cfg; norm/head dropped."""
    weights, io = _load(reference_dir, '1M')
    model = EMOv2('1M', window_size=10, init_cfg=dict(
        type='Pretrained', checkpoint=osp.join(reference_dir, 'emov2_1M_random.pth')))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(io['det_input'])
    assert relative_error(outs[3], io['det_ws10_out4']) < TOL


def test_convert_tool_round_trip(reference_dir, tmp_path):
    """tools/convert_checkpoint.py: authors' file -> mmpretrain classifier -> authors'."""
    import subprocess
    import sys
    src = osp.join(reference_dir, 'emov2_1M_random.pth')
    mid, back = str(tmp_path / 'mmpretrain.pth'), str(tmp_path / 'authors.pth')
    tool = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools',
                    'convert_checkpoint.py')
    for args in ([src, mid], ['--reverse', mid, back]):
        subprocess.run([sys.executable, tool, *args], check=True, capture_output=True)
    weights, io = _load(reference_dir, '1M')
    model = build_classifier('1M')
    model.load_state_dict(torch.load(mid, weights_only=True)['state_dict'], strict=True)
    model.eval()
    with torch.no_grad():
        assert relative_error(model(io['cls_input'], mode='tensor'), io['cls_logits']) < TOL
    restored = torch.load(back, weights_only=True)
    assert list(restored) == list(weights)
    assert all(torch.equal(restored[k], weights[k]) for k in weights)
