"""emo_mm.timm_models: the EMOv2 / EMOv1 classifiers as timm models.

Parity is checked twice: against the authors' reference outputs (tests/data, as in
test_parity_emov2.py / test_parity_emov1.py) and against emo_mm's own models (the mmpretrain
classifier of configs/emov2_*_in1k.py and the EMOv2 / EMO backbones) on the same weights.
"""
import os.path as osp
import subprocess
import sys

import pytest
import timm
import torch

import emo_mm.timm_models  # noqa: F401  (registers the models)
from emo_mm.apis import build_model, load_config
from emo_mm.models import EMO, EMOv2, authors_to_mmpretrain
from emo_mm.models.weights import CheckpointError
from helpers import REPO, relative_error
from reference_data import checked_inputs, checked_random_weights, load_outputs, map_error

V2 = ('emov2_1m', 'emov2_2m', 'emov2_5m', 'emov2_20m', 'emov2_50m')
V1 = ('emov1_1m', 'emov1_2m', 'emov1_5m', 'emov1_6m')
#: The authors' tolerance of the parity tests (relative to the reference's scale).
REFERENCE_TOL = 1e-5
#: timm model vs emo_mm's model on the same weights (same computation).
SAME_TOL = 1e-6


def _family(name):
    return ('emov2', EMOv2) if name.startswith('emov2') else ('emov1', EMO)


def _weights_file(reference_dir, name):
    family, arch = name.split('_')
    folder = reference_dir if family == 'emov2' else osp.join(reference_dir, 'emov1')
    return osp.join(folder, f'{family}_{arch.upper()}_random.pth')


def _classifier_config(name):
    family, arch = name.split('_')
    return load_config(f'{family}_{arch}_in1k')


def test_registered_names_and_pretrained_tags():
    assert set(timm.list_models('emov2_*')) == set(V2)
    assert set(timm.list_models('emov1_*')) == set(V1)
    tagged = set(timm.list_pretrained('emov*'))
    assert {'emov2_5m.in1k', 'emov2_5m.kd_in1k', 'emov1_6m.in1k'} <= tagged
    assert not any(name.startswith(('emov2_20m', 'emov2_50m')) for name in tagged)


@pytest.mark.parametrize('name', V2 + V1)
def test_features_only_feature_info(name):
    """Channels and strides of every output, named by the authors' module names."""
    family, backbone_cls = _family(name)
    arch = name.split('_')[1].upper()
    model = timm.create_model(name, pretrained=False, features_only=True).eval()
    info = model.feature_info
    expected_channels = backbone_cls(arch).stage_channels
    assert info.channels() == expected_channels
    assert info.reduction() == [2, 4, 8, 16, 32]
    assert info.module_name() == ['stage0', 'stage1', 'stage2', 'stage3', 'stage4']
    if name in ('emov2_1m', 'emov1_1m'):
        with torch.no_grad():
            outs = model(torch.rand(1, 3, 64, 96))
        assert [tuple(o.shape) for o in outs] == [
            (1, c, 64 // s, 96 // s) for c, s in zip(expected_channels, info.reduction())]


def test_features_only_out_indices_and_classifier_interface():
    model = timm.create_model('emov2_5m', features_only=True, out_indices=(1, 2, 3, 4))
    assert model.feature_info.channels() == [48, 72, 160, 288]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    # stages past the last requested output are pruned, with the norm and head
    partial = timm.create_model('emov2_1m', features_only=True, out_indices=(1, 2))
    assert not any(k.startswith(('model.stage3', 'model.stage4', 'model.norm', 'model.head'))
                   for k in partial.state_dict())
    classifier = timm.create_model('emov2_1m', num_classes=7)
    assert classifier.get_classifier().out_features == 7
    assert classifier(torch.rand(2, 3, 64, 64)).shape == (2, 7)
    classifier.reset_classifier(0)
    assert classifier(torch.rand(2, 3, 64, 64)).shape == (2, 180)  # pooled features
    assert classifier.num_features == 180


def test_pretrained_cfg_is_the_configs_evaluation():
    """Input size, crop, interpolation, mean and std equal configs/emov2_*_in1k.py's."""
    cfg = load_config('emov2_5m_in1k')
    steps = {s['type']: s for s in cfg.test_dataloader.dataset.pipeline}
    crop, resize = steps['CenterCrop']['crop_size'], steps['ResizeEdge']['scale']
    pretrained = timm.create_model('emov2_5m').pretrained_cfg
    assert pretrained['input_size'] == (3, crop, crop)
    assert pretrained['crop_pct'] == crop / resize
    assert pretrained['interpolation'] == steps['ResizeEdge']['interpolation']
    mean = [round(v * 255, 3) for v in pretrained['mean']]
    std = [round(v * 255, 3) for v in pretrained['std']]
    assert mean == cfg.model.get('data_preprocessor', cfg.data_preprocessor)['mean']
    assert std == cfg.model.get('data_preprocessor', cfg.data_preprocessor)['std']


@pytest.mark.parametrize('name', ['emov2_1m', 'emov2_2m', 'emov1_1m'])
def test_authors_checkpoint_parity(name, reference_dir):
    """The authors' file through pretrained_cfg_overlay(file=...) and the converter:
    logits equal the authors' and emo_mm's mmpretrain classifier's; features equal the
    authors' and emo_mm's backbone's."""
    family, backbone_cls = _family(name)
    arch = name.split('_')[1].upper()
    path = _weights_file(reference_dir, name)
    weights = checked_random_weights(family, arch)
    inputs, expected = checked_inputs(), load_outputs(family, arch)

    model = timm.create_model(name, pretrained=True,
                              pretrained_cfg_overlay=dict(file=path)).eval()
    classifier = build_model(_classifier_config(name)).eval()
    classifier.load_state_dict(authors_to_mmpretrain(weights), strict=True)
    with torch.no_grad():
        logits = model(inputs['cls_input'])
        reference = classifier(inputs['cls_input'], mode='tensor')
    assert relative_error(logits, expected['cls_logits']) < REFERENCE_TOL
    assert relative_error(logits, reference) < SAME_TOL

    window = 10 if family == 'emov2' else 7  # the windows of the reference feature maps
    features = timm.create_model(name, pretrained=True, features_only=True,
                                 out_indices=(1, 2, 3, 4), window_size=window,
                                 pretrained_cfg_overlay=dict(file=path)).eval()
    backbone = backbone_cls(arch, window_size=window).eval()
    backbone.load_state_dict({k: v for k, v in weights.items()
                              if not k.startswith(('norm.', 'head.'))}, strict=True)
    with torch.no_grad():
        outs = features(inputs['det_input'])
        own = backbone(inputs['det_input'])
    keys = [f'det_ws10_out{i}' for i in range(1, 5)] if family == 'emov2' else \
        [f'det_out{i}' for i in range(1, 5)]
    for out, mine, key in zip(outs, own, keys):
        assert map_error(out, expected['maps'][key]) < REFERENCE_TOL, key
        assert relative_error(out, mine) < SAME_TOL, key


def test_emo_mm_checkpoints_and_new_heads(reference_dir, tmp_path):
    """emo_mm's mmpretrain checkpoints load too; another num_classes keeps the backbone
    and starts the head afresh; another variant's file is refused in one line."""
    weights = checked_random_weights('emov2', '1M')
    inputs = checked_inputs()
    mmpretrain_file = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=authors_to_mmpretrain(weights)),
               mmpretrain_file)
    authors = _weights_file(reference_dir, 'emov2_1m')
    a = timm.create_model('emov2_1m', pretrained=True,
                          pretrained_cfg_overlay=dict(file=authors)).eval()
    b = timm.create_model('emov2_1m', pretrained=True,
                          pretrained_cfg_overlay=dict(file=mmpretrain_file)).eval()
    c = timm.create_model('emov2_1m', pretrained=True, num_classes=3,
                          pretrained_cfg_overlay=dict(file=authors)).eval()
    with torch.no_grad():
        x = inputs['cls_input']
        assert torch.equal(a(x), b(x))
        assert torch.equal(a.forward_features(x), c.forward_features(x))
        assert c(x).shape == (2, 3)
    with pytest.raises(CheckpointError, match='does not fit emov2_2m'):
        timm.create_model('emov2_2m', pretrained=True, pretrained_cfg_overlay=dict(file=authors))


def test_gradient_checkpointing_gives_the_same_gradients():
    model = timm.create_model('emov2_1m', num_classes=4)
    x = torch.rand(2, 3, 32, 32)
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enabled)
        model(x).sum().backward()
        grads.append(model.stage1[0].proj.conv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert {n for n in model.no_weight_decay()} == {
        n for n, _ in model.named_parameters() if n.endswith('.gamma')}


def test_module_imports_no_toolbox():
    """timm users get the models without mmpretrain / mmdet / mmseg / mmaction2."""
    code = ('import sys, emo_mm.timm_models, timm; timm.create_model("emov2_1m"); '
            'print(sorted(m for m in ("mmpretrain", "mmdet", "mmseg", "mmaction") '
            'if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == '[]'
