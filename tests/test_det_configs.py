"""Every COCO detection config builds a model of exactly the authors' logged size."""
import glob
import json
import os.path as osp
import re

import pytest

from emo_mm.apis import build_model, load_config

CONFIGS = sorted(glob.glob(osp.join(osp.dirname(__file__), '..', 'configs', '*_coco.py')))
LOG_PREFIX = {'retinanet': 'RetinaNet', 'mask-rcnn': 'MaskRCNN', 'ssdlite': 'SSDLite'}


def _log_entry(reference, config):
    name = osp.basename(config)
    det, variant = re.match(r'([a-z-]+)_emov2_(\d+m)_', name).groups()
    prefix = f'{LOG_PREFIX[det]}_{variant.upper()}_'
    if det == 'ssdlite':  # the authors' logs call the 320 runs "300"
        prefix += {'320': '300', '512': '512'}[re.search(r'_(320|512)_', name).group(1)] + '_'
    (key, ) = [k for k in reference if k.startswith(prefix)]
    return key, reference[key]


@pytest.fixture(scope='module')
def reference(reference_dir):
    with open(osp.join(reference_dir, 'downstream_log_params.json')) as f:
        return json.load(f)


def test_all_configs_present():
    names = {osp.basename(c) for c in CONFIGS}
    for variant in ('1m', '2m', '5m', '20m'):
        assert {f'retinanet_emov2_{variant}_coco.py', f'mask-rcnn_emov2_{variant}_coco.py',
                f'ssdlite_emov2_{variant}_320_coco.py',
                f'ssdlite_emov2_{variant}_512_coco.py'} <= names


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_parameter_count_matches_log(config, reference):
    key, entry = _log_entry(reference, config)
    model = build_model(load_config(config))
    total = sum(p.numel() for p in model.parameters())
    by_top = {name: sum(p.numel() for p in module.parameters())
              for name, module in model.named_children()}
    print(f'{osp.basename(config)}: {total:,} parameters (log {key}: {entry["n_params_total"]:,})')
    assert total == entry['n_params_total']
    assert {k: v for k, v in by_top.items() if v} == entry['n_params_by_top']
    assert {k: list(p.shape) for k, p in model.backbone.named_parameters()} == entry['backbone']
