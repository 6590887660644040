"""A wheel of emo_mm works installed outside the repository, the OpenMMLab way.

The wheel is built from a copy of the sources, installed into a temporary folder, and
used from another temporary folder with only that install on PYTHONPATH: a tool runs
through MIM (``mim run emo_mm get_flops``), configs are found by name in the package's
``.mim/configs``, and another project's config inherits one with
``_base_ = ['emo_mm::emov2_5m_in1k.py']``.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from helpers import REPO
from reference_data import load_json

slow = pytest.mark.slow  # builds and installs a wheel, then runs it (~1 min)

#: Repository paths that are not sources (environments, outputs, caches, build trees).
NOT_SOURCES = {'.venv', '.git', 'data', 'work_dirs', 'outputs', 'build', 'dist', '.mim',
               '__pycache__', '.pytest_cache', '.ruff_cache', '.dist_test'}


def _copy_sources(target: str) -> str:
    def ignore(folder, names):
        skip = {n for n in names if n in NOT_SOURCES or n.endswith(('.egg-info', '.pyc'))}
        if osp.realpath(folder) == osp.realpath(REPO):
            return skip
        return {n for n in skip if n not in ('data', )}  # tests/data is a source

    shutil.copytree(REPO, target, ignore=ignore, symlinks=True)
    return target


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f'{args}\n{result.stdout}\n{result.stderr}'
    return result.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(wheel path, site folder holding the installed copy, environment using only it)."""
    tmp = tmp_path_factory.mktemp('packaging')
    source = _copy_sources(str(tmp / 'src'))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    _run([*pip, 'wheel', source, '--no-deps', '--no-build-isolation', '-w', str(tmp / 'dist')])
    (wheel, ) = [str(p) for p in (tmp / 'dist').iterdir() if p.suffix == '.whl']
    site = str(tmp / 'site')
    _run([*pip, 'install', '--no-deps', '--target', site, wheel])
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'EMO_MM_REFERENCE')}
    env['PYTHONPATH'] = site
    project = tmp / 'other_project'
    project.mkdir()
    return wheel, site, env, str(project)


@slow
def test_wheel_carries_configs_tools_and_version(installed):
    wheel = installed[0]
    with open(osp.join(REPO, 'emo_mm', 'version.py')) as f:
        version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)
    assert osp.basename(wheel).startswith(f'emo_mm-{version}-')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    configs = {osp.relpath(osp.join(root, n), osp.join(REPO, 'configs'))
               for root, _, files in os.walk(osp.join(REPO, 'configs')) for n in files
               if n.endswith(('.py', '.yml'))}
    assert configs and {f'emo_mm/.mim/configs/{c}' for c in configs} <= names
    assert {'emo_mm/.mim/tools/train.py', 'emo_mm/.mim/tools/test.py',
            'emo_mm/.mim/tools/analysis_tools/get_flops.py', 'emo_mm/version.py'} <= names
    if osp.isfile(osp.join(REPO, 'model-index.yml')):
        assert 'emo_mm/.mim/model-index.yml' in names
    assert not any(n.startswith(('configs/', 'tests/', 'tools/')) for n in names)


@pytest.fixture(scope='module')
def probe(installed):
    """What an installed copy does in another project (one interpreter run for all)."""
    _, site, env, project = installed
    with open(osp.join(project, 'my_classifier.py'), 'w') as f:
        f.write(textwrap.dedent('''
            _base_ = ['emo_mm::emov2_5m_in1k.py']
            model = dict(head=dict(num_classes=10))
            '''))
    script = textwrap.dedent('''
        import json
        from mmengine.config import Config
        import emo_mm
        from emo_mm.apis import build_model, find_config, list_configs, load_config
        own = load_config('emov2_5m_in1k')
        inherited = Config.fromfile('my_classifier.py')  # load_config applied the fixes
        model = build_model(inherited)
        print(json.dumps(dict(
            package=emo_mm.__file__, version=emo_mm.__version__,
            config=find_config('retinanet_emov2_1m_coco'), names=list_configs(),
            own=[own.model.backbone.arch, own.model.head.num_classes],
            inherited=[inherited.model.backbone.arch, inherited.model.head.num_classes,
                       inherited.model.head.in_channels, inherited.default_scope],
            params=sum(p.numel() for p in model.parameters()))))
        ''')
    out = _run([sys.executable, '-c', script], cwd=project, env=env)
    return json.loads(out.strip().splitlines()[-1])


@slow
def test_installed_copy_is_used_and_finds_configs_by_name(installed, probe):
    site = installed[1]
    assert probe['package'].startswith(site)
    assert probe['config'] == osp.join(site, 'emo_mm', '.mim', 'configs',
                                       'retinanet_emov2_1m_coco.py')
    assert probe['own'] == ['5M', 1000]
    assert {'emov2_1m_in1k', 'vemo_5m_k400', 'demo/uemo_demo'} <= set(probe['names'])


@slow
def test_other_project_inherits_a_packaged_config(probe):
    # the chain (_base_/emov2_in1k.py, mmpretrain's bases) resolved; the base's own scope
    assert probe['inherited'] == ['5M', 10, 288, 'mmpretrain']
    expected = load_json('params_flops.json')['5M']
    assert probe['params'] == expected['params_cls_without_head'] + 288 * 10 + 10


@slow
def test_installed_tool_runs_through_mim(installed):
    """``mim run emo_mm get_flops 1M`` runs the packaged
    emo_mm/.mim/tools/analysis_tools/get_flops.py (mim searches the tools' subfolders)."""
    _, site, env, project = installed
    out = _run([sys.executable, '-m', 'mim', 'run', 'emo_mm', 'get_flops', '1M'],
               cwd=project, env=env)
    assert osp.join(site, 'emo_mm', '.mim', 'tools', 'analysis_tools', 'get_flops.py') in out
    expected = load_json('params_flops.json')['1M']
    row = [line for line in out.splitlines() if line.startswith('EMOv2-1M')]
    assert row, out
    assert f'{expected["params_cls_total"]:,}' in row[0]
    assert f'{expected["flops_fvcore_equivalent_224"]:,}' in row[0]


def test_version_is_written_once():
    import emo_mm
    from emo_mm.version import __version__, version_info
    assert emo_mm.__version__ == __version__
    assert '.'.join(map(str, version_info[:3])) == __version__.split('rc')[0]
    for name in ('setup.py', osp.join('emo_mm', '__init__.py')):
        with open(osp.join(REPO, name)) as f:
            assert __version__ not in f.read(), f'{name} repeats the version'


def test_unknown_config_name_is_explained():
    from emo_mm.apis import load_config
    with pytest.raises(FileNotFoundError, match=r"No config 'emov2_1m_in1kk'.*emov2_1m_in1k"):
        load_config('emov2_1m_in1kk')


def test_package_prefix_inherits_with_the_base_scope(tmp_path):
    """``_base_ = ['emo_mm::NAME']`` from a file outside the repository (checkout configs)."""
    from mmengine.config import Config

    from emo_mm.apis import build_model
    config = tmp_path / 'my_detector.py'
    config.write_text("_base_ = ['emo_mm::retinanet_emov2_1m_coco.py']\n"
                      "model = dict(bbox_head=dict(num_classes=3))\n")
    cfg = Config.fromfile(str(config))
    # not tagged with the scope emo_mm (the model's types are mmdet's)
    assert cfg.default_scope == 'mmdet' and cfg.model.get('_scope_') != 'emo_mm'
    model = build_model(cfg)
    assert type(model).__name__ == 'RetinaNet' and model.bbox_head.num_classes == 3
