"""EMOv1 (iRMB): exact parity with the authors' release.

Weights and inputs are regenerated from the authors' seeded recipe and checked against
their checksums; outputs come from tests/data (see tests/reference_data.py).
"""
import os.path as osp

import pytest
import torch

from emo_mm.models import EMO, set_fused_attention
from emo_mm.utils.flops import count_flops
from helpers import relative_error
from reference_data import (checked_inputs, checked_random_weights, load_json, load_outputs,
                            map_error, state_dict_manifest)

TOL = 1e-5
VARIANTS = ['1M', '2M', '5M', '6M']


def _classifier(arch):
    from mmpretrain.models import ImageClassifier  # noqa: F401  (registers mmpretrain)

    from emo_mm.apis import build_model, load_config
    return build_model(load_config(f'emov1_{arch.lower()}_in1k'))


def _load(arch):
    return checked_random_weights('emov1', arch), checked_inputs(), load_outputs('emov1', arch)


@pytest.mark.parametrize('arch', VARIANTS)
def test_state_dict_layout(arch):
    manifest = state_dict_manifest('emov1', arch)
    backbone = EMO(arch)
    assert list(backbone.state_dict()) == list(manifest['backbone_det_seg'])
    assert {k: list(v.shape) for k, v in backbone.state_dict().items()} == \
        manifest['backbone_det_seg']
    classifier = EMO(arch, out_indices=-1, final_norm=True)
    expected = {k: v for k, v in manifest['classification'].items() if not k.startswith('head.')}
    assert {k: list(v.shape) for k, v in classifier.state_dict().items()} == expected


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_classifier_logits(arch, fused):
    from emo_mm.models import authors_to_mmpretrain
    weights, inputs, expected = _load(arch)
    model = _classifier(arch)
    model.load_state_dict(authors_to_mmpretrain(weights), strict=True)
    set_fused_attention(model, fused)
    model.eval()
    with torch.no_grad():
        logits = model(inputs['cls_input'], mode='tensor')
    assert relative_error(logits, expected['cls_logits']) < TOL


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_backbone_features(arch, fused, reference_dir):
    """Window 7 on a 256x320 input: stage 3 is padded 16x20 -> 21x21, stage 4 8x10 -> 14x14.
    Loaded through init_cfg (norm/head of the classifier file dropped)."""
    _, inputs, expected = _load(arch)
    model = EMO(arch, window_size=7, fused_attn=fused, init_cfg=dict(
        type='Pretrained',
        checkpoint=osp.join(reference_dir, 'emov1', f'emov1_{arch}_random.pth')))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(inputs['det_input'])
    for i, out in enumerate(outs, 1):
        err = map_error(out, expected['maps'][f'det_out{i}'])
        assert err < TOL, f'{arch} out{i}: {err:.2e}'


@pytest.mark.parametrize('arch', VARIANTS)
def test_params_and_flops(arch):
    ref = load_json(osp.join('emov1', 'params_flops.json'))[arch]
    counts = count_flops(_classifier(arch), torch.rand(1, 3, 224, 224), mode='tensor')
    print(arch, counts)
    assert counts['params'] == ref['params_cls_total']
    assert counts['flops'] == ref['flops_fvcore_equivalent_224']
