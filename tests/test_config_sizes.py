"""Every downstream config builds a model of exactly the authors' logged size.

The authors' log summaries (tests/data/downstream_log_params.json, emov1/...) hold, for
each run they logged, the total parameter count, per-part counts and every backbone
parameter's name and shape.
"""
import glob
import os.path as osp
import re

import pytest

from emo_mm.apis import build_model, load_config
from helpers import REPO
from reference_data import downstream_logs

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*_coco.py')) +
                 glob.glob(osp.join(REPO, 'configs', '*_ade20k.py')) +
                 [osp.join(REPO, 'configs', 'uemo_hrf.py')])
# config name prefix -> the authors' log name prefix (their typos included)
LOG_NAMES = {'retinanet': 'RetinaNet', 'mask-rcnn': 'MaskRCNN', 'ssdlite': 'SSDLite',
             'deeplabv3': 'DeeLabv3', 'pspnet': 'PSPNet', 'fpn': 'FPN', 'segformer': 'SegFormer'}
V1_LOG_NAMES = {'retinanet': 'RetinaNet', 'ssdlite': 'SSDLite', 'deeplabv3': 'DeepLabv3',
                'pspnet': 'PSPNet'}


@pytest.fixture(scope='module')
def logs():
    return downstream_logs('emov2'), downstream_logs('emov1')


def _expected(name, logs):
    v2, v1 = logs
    if name == 'uemo_hrf.py':
        return v2['UNet_5M_20240629_164429.log']
    model, family, variant = re.match(r'([a-z0-9-]+)_(emov[12])_(\d+m)_', name).groups()
    if family == 'emov1':
        entry = v1[f'{V1_LOG_NAMES[model]}_EMO_{variant.upper()}']
        return dict(n_params_total=entry['total_params'],
                    n_params_backbone=entry['backbone_params'])
    prefix = f'{LOG_NAMES[model]}_{variant.upper()}_'
    if model == 'ssdlite':  # the authors' logs call the 320 runs "300"
        prefix += {'320': '300', '512': '512'}[re.search(r'_(320|512)_', name).group(1)] + '_'
    (key, ) = [k for k in v2 if k.startswith(prefix)]
    return v2[key]


def test_all_configs_present():
    names = {osp.basename(c) for c in CONFIGS}
    for variant in ('1m', '2m', '5m', '20m'):
        for model in ('retinanet', 'mask-rcnn'):
            assert f'{model}_emov2_{variant}_coco.py' in names
        for size in (320, 512):
            assert f'ssdlite_emov2_{variant}_{size}_coco.py' in names
        for model in ('deeplabv3', 'pspnet', 'fpn', 'segformer'):
            assert f'{model}_emov2_{variant}_ade20k.py' in names
    for variant in ('1m', '2m', '5m'):
        assert {f'retinanet_emov1_{variant}_coco.py', f'ssdlite_emov1_{variant}_320_coco.py',
                f'deeplabv3_emov1_{variant}_ade20k.py',
                f'pspnet_emov1_{variant}_ade20k.py'} <= names


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_parameter_count_matches_log(config, logs):
    name = osp.basename(config)
    expected = _expected(name, logs)
    model = build_model(load_config(config))
    total = sum(p.numel() for p in model.parameters())
    print(f'{name}: {total:,} parameters (authors\' log: {expected["n_params_total"]:,})')
    assert total == expected['n_params_total']
    assert sum(p.numel() for p in model.backbone.parameters()) == expected['n_params_backbone']
    if 'n_params_by_top' in expected:
        by_top = {n: sum(p.numel() for p in m.parameters()) for n, m in model.named_children()}
        assert {k: v for k, v in by_top.items() if v} == expected['n_params_by_top']
    if 'backbone' in expected:
        assert {k: list(p.shape) for k, p in model.backbone.named_parameters()} == \
            expected['backbone']
