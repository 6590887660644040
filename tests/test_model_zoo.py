"""The model zoo (model-index.yml, configs/metafiles/*.yml) and its tables in docs/model_zoo.md.

Every config is listed, every entry names an existing config whose model has the listed
parameter count, the files are what tools/dev/make_metafiles.py writes, they load with the
``modelindex`` package that mim and mmpretrain use, and the generated section of
docs/model_zoo.md is tools/dev/model_zoo.py's output.
"""
import glob
import json
import os.path as osp

import pytest
import torch
import yaml

from emo_mm.apis import build_model, load_config
from helpers import REPO, load_tool


def _entries():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    entries = []
    for path in index['Import']:
        with open(osp.join(REPO, path)) as f:
            data = yaml.safe_load(f)
        entries += [(path, data['Collections'], model) for model in data['Models']]
    return entries


ENTRIES = _entries()
#: Top-level configs only: configs/demo and configs/_base_ are not models of the zoo.
CONFIGS = sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '*.py')))


def test_every_config_is_listed_and_every_entry_names_a_config():
    listed = {model['Config'] for _, _, model in ENTRIES}
    assert sorted(set(CONFIGS) - listed) == [], 'configs missing from the metafiles'
    assert sorted(listed - set(CONFIGS)) == [], 'metafile entries naming no config'


def test_entries_are_well_formed():
    names = [model['Name'] for _, _, model in ENTRIES]
    assert len(names) == len(set(n.lower() for n in names)), 'model names must be unique'
    for path, collections, model in ENTRIES:
        by_name = {c['Name']: c for c in collections}
        assert model['In Collection'] in by_name, (path, model['Name'])
        collection = by_name[model['In Collection']]
        for paper in (collection['Paper'], model['Paper']):  # the model's, the backbone's
            assert paper['URL'].startswith('https://arxiv.org/abs/') and paper['Title']
        assert model['Code'].startswith('https://github.com/zhangzjn/')
        meta = model['Metadata']
        assert meta['Backbone'] in ('EMOv2', 'EMOv1')
        assert (meta['Backbone'] == 'EMOv1') == ('emov1' in model['Name'])
        assert isinstance(meta['Parameters'], int) and meta['Parameters'] > 0
        assert isinstance(meta['FLOPs'], int) and meta['FLOPs'] > meta['Parameters']
        for result in model['Results']:
            assert result['Task'] and result['Dataset'] and result['Metrics']
            assert all(0 < v < 100 for v in result['Metrics'].values()), model['Name']
        if model['Results']:
            assert model['Results Source']
        for key in ('Weights', 'Training Log'):
            if key in model:
                assert model[key].startswith('https://github.com/zhangzjn/'), model[key]


def test_files_are_what_the_tool_writes():
    """Names, configs, results, weights and logs equal tools/dev/make_metafiles.py's table."""
    tool = load_tool('dev/make_metafiles')
    expected = {}
    for filename, (collections, models) in tool.all_metafiles().items():
        for model in models:
            expected[model['Name']] = (f'{tool.METAFILE_DIR}/{filename}', model)
    assert sorted(expected) == sorted(model['Name'] for _, _, model in ENTRIES)
    keys = ('Config', 'In Collection', 'Results', 'Weights', 'Training Log', 'Notes')
    for path, _, model in ENTRIES:
        want_path, want = expected[model['Name']]
        assert path == want_path
        assert {k: model.get(k) for k in keys} == \
            json.loads(json.dumps({k: want.get(k) for k in keys})), model['Name']
        assert model['Metadata']['FLOPs Input'] == want['Metadata']['FLOPs Input']


def test_the_authors_reported_numbers():
    """A few of the authors' numbers, to catch a shifted table column."""
    metrics = {model['Name']: {k: v for r in model['Results'] for k, v in r['Metrics'].items()}
               for _, _, model in ENTRIES}
    assert metrics['emov2-5m_in1k']['Top 1 Accuracy'] == 79.4
    assert metrics['emov2-5m-kd_in1k']['Top 1 Accuracy'] == 80.9
    assert metrics['retinanet_emov2_5m_coco']['box AP'] == 41.5
    assert metrics['ssdlite_emov2_20m_512_coco']['box AP'] == 38.3
    assert metrics['mask-rcnn_emov2_20m_coco']['mask AP'] == 40.6
    assert metrics['segformer_emov2_1m_ade20k']['mIoU'] == 37.0
    assert metrics['pspnet_emov1_5m_ade20k']['mIoU'] == 38.2
    assert metrics['uemo_hrf']['mDice'] == 89.19
    assert metrics['vemo_5m_k400']['Top 1 Accuracy'] == 64.83
    assert metrics['emov2-20m_in1k'] == {}


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_listed_parameter_count(config):
    listed = {model['Metadata']['Parameters'] for _, _, model in ENTRIES
              if model['Config'] == config}
    cfg = load_config(osp.join(REPO, config))
    with torch.device('meta'):  # shapes only: no memory, no initialisation cost
        model = build_model(cfg)
    assert listed == {sum(p.numel() for p in model.parameters())}


def test_modelindex_reads_the_files():
    """The ``modelindex`` package (mim search, mmpretrain's hub) loads every entry."""
    from modelindex.load_model_index import load
    index = load(osp.join(REPO, 'model-index.yml'))
    index.build_models_with_collections()
    assert len(index.models) == len(ENTRIES)
    full = {m.name: m.full_model for m in index.models}
    retinanet = full['retinanet_emov2_5m_coco']
    assert retinanet.paper['URL'] == 'https://arxiv.org/abs/2412.06674'
    assert retinanet.config == 'configs/retinanet_emov2_5m_coco.py'


def test_model_zoo_page_tables_are_the_tool_output():
    tool = load_tool('dev/model_zoo')
    page = osp.join(REPO, 'docs', 'model_zoo.md')
    assert tool.link_root_for(page) == '../'
    assert tool.generated_section(page) == tool.render(link_root='../'), \
        ('docs/model_zoo.md out of date: run python tools/dev/model_zoo.py '
         '--update docs/model_zoo.md')


def test_readme_summary_is_the_tool_output():
    tool = load_tool('dev/model_zoo')
    readme = osp.join(REPO, 'README.md')
    assert tool.generated_section(readme, tool.SUMMARY_START, tool.SUMMARY_END) == \
        tool.render_summary(), \
        'README model-zoo summary out of date: run python tools/dev/model_zoo.py --update README.md'
    rows = tool.render_summary().splitlines()[2:]
    assert len(rows) == sum(len({m['Metadata']['Backbone'] for m in models
                                 if m['In Collection'] == col['Name']})
                            for _, collections, models in tool.load_index()
                            for col in collections)
    assert '| RetinaNet-EMOv2 | COCO | 4 | 10.60M - 29.83M | box AP 36.9 - 43.8 |' in rows


def test_model_zoo_table_lists_every_entry():
    text = load_tool('dev/model_zoo').render()
    for _, _, model in ENTRIES:
        assert f'`{model["Name"]}`' in text
    assert '| `emov2-5m_in1k` | [emov2_5m_in1k.py](configs/emov2_5m_in1k.py) | 5.13M |' in text
