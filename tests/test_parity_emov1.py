"""EMOv1 (iRMB): exact parity with the authors' release (../shared/reference/emov1)."""
import json
import os.path as osp

import pytest
import torch

from emo_mm.models import EMO, set_fused_attention
from emo_mm.utils.flops import count_flops
from helpers import relative_error

TOL = 1e-5
VARIANTS = ['1M', '2M', '5M', '6M']


def _ref(reference_dir, *names):
    return osp.join(reference_dir, 'emov1', *names)


def _classifier(arch):
    from mmpretrain.models import ImageClassifier  # noqa: F401  (registers mmpretrain)
    from emo_mm.apis import build_model, load_config
    return build_model(load_config(f'emov1_{arch.lower()}_in1k'))


def _load(reference_dir, arch):
    weights = torch.load(_ref(reference_dir, f'emov1_{arch}_random.pth'), weights_only=True)
    io = torch.load(_ref(reference_dir, f'emov1_{arch}_io.pth'), weights_only=True)
    return weights, io


@pytest.mark.parametrize('arch', VARIANTS)
def test_state_dict_layout(arch, reference_dir):
    with open(_ref(reference_dir, f'emov1_{arch}_state_dict.json')) as f:
        manifest = json.load(f)
    backbone = EMO(arch)
    assert list(backbone.state_dict()) == list(manifest['backbone_det_seg'])
    assert {k: list(v.shape) for k, v in backbone.state_dict().items()} == \
        manifest['backbone_det_seg']
    classifier = EMO(arch, out_indices=-1, final_norm=True)
    expected = {k: v for k, v in manifest['classification'].items() if not k.startswith('head.')}
    assert {k: list(v.shape) for k, v in classifier.state_dict().items()} == expected


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_classifier_logits(arch, fused, reference_dir):
    from emo_mm.models import authors_to_mmpretrain
    weights, io = _load(reference_dir, arch)
    model = _classifier(arch)
    model.load_state_dict(authors_to_mmpretrain(weights), strict=True)
    set_fused_attention(model, fused)
    model.eval()
    with torch.no_grad():
        logits = model(io['cls_input'], mode='tensor')
    assert relative_error(logits, io['cls_logits']) < TOL


@pytest.mark.parametrize('fused', [True, False], ids=['fused', 'eager'])
@pytest.mark.parametrize('arch', ['1M', '2M'])
def test_backbone_features(arch, fused, reference_dir, tmp_path):
    """Window 7 on a 256x320 input: stage 3 is padded 16x20 -> 21x21, stage 4 8x10 -> 14x14.
    Loaded through init_cfg (norm/head of the classifier file dropped)."""
    weights, io = _load(reference_dir, arch)
    model = EMO(arch, window_size=7, fused_attn=fused, init_cfg=dict(
        type='Pretrained', checkpoint=_ref(reference_dir, f'emov1_{arch}_random.pth')))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(io['det_input'])
    for i, out in enumerate(outs, 1):
        err = relative_error(out, io[f'det_out{i}'])
        assert err < TOL, f'{arch} out{i}: {err:.2e}'


@pytest.mark.parametrize('arch', VARIANTS)
def test_params_and_flops(arch, reference_dir):
    with open(_ref(reference_dir, 'params_flops.json')) as f:
        ref = json.load(f)[arch]
    counts = count_flops(_classifier(arch), torch.rand(1, 3, 224, 224), mode='tensor')
    print(arch, counts)
    assert counts['params'] == ref['params_cls_total']
    assert counts['flops'] == ref['flops_fvcore_equivalent_224']
