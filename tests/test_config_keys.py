"""Every paramwise ``custom_keys`` entry of every config applies to a parameter of its model.

MMEngine's DefaultOptimWrapperConstructor gives a parameter the settings of the first
custom key, longest first (then alphabetical), that is a substring of its full name
(``<module path>.<parameter name>``); parameters that do not require gradients are left
out. A key that applies to no parameter (a name copied from another backbone's config,
such as Swin's ``relative_position_bias_table``) silently does nothing, so each is checked
here against the model its config builds. The models are built on the meta device: names
and shapes without allocating or initialising weights.
"""
import glob
import os.path as osp

import pytest
import torch

from emo_mm.apis import build_model, load_config
from helpers import REPO

CONFIG_ROOT = osp.join(REPO, 'configs')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_ROOT, '*.py')) +
                 glob.glob(osp.join(CONFIG_ROOT, 'demo', '*.py')))
# The V-EMO recipe sets its no-decay rules with norm_decay_mult / bias_decay_mult only; the
# EMOv1 classifiers drop the EMOv2 recipe's `.gamma` (LayerScale) key: EMOv1 has none.
WITHOUT_CUSTOM_KEYS = {'vemo_5m_k400.py', 'demo/vemo_demo.py', 'demo/vemo_demo_single_frame.py',
                       *(f'emov1_{size}_in1k.py' for size in ('1m', '2m', '5m', '6m'))}


def _name(config: str) -> str:
    return osp.relpath(config, CONFIG_ROOT)


def custom_key_matches(model: torch.nn.Module, custom_keys) -> dict:
    """Maps each custom key to the parameters it sets, as MMEngine's constructor assigns them."""
    keys = sorted(sorted(custom_keys), key=len, reverse=True)
    matches = {key: [] for key in keys}
    for prefix, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full_name = f'{prefix}.{name}'  # as the constructor forms it ('.name' at the top)
            for key in keys:
                if key in full_name:
                    matches[key].append(full_name.lstrip('.'))
                    break
    return matches


def _model_and_keys(config: str):
    cfg = load_config(config)
    custom_keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
    with torch.device('meta'):
        model = build_model(cfg)
    return model, custom_keys


def test_every_config_is_checked():
    names = {_name(c) for c in CONFIGS}
    assert len(names) >= 60 and WITHOUT_CUSTOM_KEYS <= names
    assert {'retinanet_emov2_5m_coco.py', 'segformer_emov2_20m_ade20k.py', 'emov1_6m_in1k.py',
            'uemo_hrf.py', 'demo/retinanet_emov2_1m_demo.py'} <= names


@pytest.mark.parametrize('config', CONFIGS, ids=_name)
def test_every_custom_key_applies(config):
    model, custom_keys = _model_and_keys(config)
    assert bool(custom_keys) == (_name(config) not in WITHOUT_CUSTOM_KEYS), dict(custom_keys)
    unused = [key for key, params in custom_key_matches(model, custom_keys).items() if not params]
    assert not unused, f'custom_keys {unused} match no trainable parameter of the model'


def test_a_key_that_matches_nothing_is_found():
    """The check itself: Swin's key on an EMOv2 detector, and a key always shadowed."""
    model, custom_keys = _model_and_keys(osp.join(CONFIG_ROOT, 'retinanet_emov2_1m_coco.py'))
    matches = custom_key_matches(model, {**custom_keys,
                                         'relative_position_bias_table': dict(decay_mult=0.),
                                         'orm': dict(decay_mult=0.)})
    assert matches['norm'] and not matches['relative_position_bias_table']
    assert not matches['orm']  # every name containing 'orm' here contains 'norm', tried first
