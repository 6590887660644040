"""A wheel of emo_mm works installed outside the repository, the OpenMMLab way.

The wheel is built from a copy of the sources, installed into a temporary folder, and
used from another temporary folder with only that install on PYTHONPATH: a tool runs,
configs are found by name, and another project's config inherits one through
``_base_ = ['emo_mm::...']`` (MMEngine's lookup in the installed package's ``.mim``).
"""
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

pytestmark = pytest.mark.slow  # builds and installs a wheel (~1 min)

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


def _python(code, installed):
    _, site, env, project = installed
    return _run([sys.executable, '-c', textwrap.dedent(code)], cwd=project, env=env)


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
    assert {f'emo_mm/.mim/configs/{c}' for c in configs} <= names
    assert {'emo_mm/.mim/tools/train.py', 'emo_mm/.mim/tools/test.py',
            'emo_mm/.mim/tools/get_flops.py', 'emo_mm/version.py'} <= names
    if osp.isfile(osp.join(REPO, 'model-index.yml')):
        assert 'emo_mm/.mim/model-index.yml' in names
    assert not any(n.startswith(('configs/', 'tests/', 'tools/')) for n in names)


def test_installed_copy_is_used_and_finds_configs_by_name(installed):
    out = _python('''
        import json, emo_mm
        from emo_mm.apis import find_config, list_configs, load_config
        cfg = load_config('emov2_5m_in1k')
        print(json.dumps(dict(package=emo_mm.__file__, version=emo_mm.__version__,
                              config=find_config('retinanet_emov2_1m_coco'),
                              arch=cfg.model.backbone.arch, names=list_configs())))
        ''', installed)
    import json
    result = json.loads(out.strip().splitlines()[-1])
    site = installed[1]
    assert result['package'].startswith(site)
    assert result['config'] == osp.join(site, 'emo_mm', '.mim', 'configs',
                                        'retinanet_emov2_1m_coco.py')
    assert result['arch'] == '5M'
    assert {'emov2_1m_in1k', 'vemo_5m_k400', 'demo/uemo_demo'} <= set(result['names'])


def test_installed_tool_runs(installed):
    _, site, env, project = installed
    tool = osp.join(site, 'emo_mm', '.mim', 'tools', 'get_flops.py')
    out = _run([sys.executable, tool, '1M'], cwd=project, env=env)
    expected = load_json('params_flops.json')['1M']
    row = [line for line in out.splitlines() if line.startswith('EMOv2-1M')]
    assert row, out
    assert f'{expected["params_cls_total"]:,}' in row[0]
    assert f'{expected["flops_fvcore_equivalent_224"]:,}' in row[0]


def test_other_project_inherits_a_packaged_config(installed):
    project = installed[3]
    with open(osp.join(project, 'my_classifier.py'), 'w') as f:
        f.write(textwrap.dedent('''
            _base_ = ['emo_mm::emov2_5m_in1k.py']
            model = dict(head=dict(num_classes=10))
            '''))
    out = _python('''
        from mmengine.config import Config
        from emo_mm.apis import build_model  # also makes MMEngine resolve emo_mm::
        cfg = Config.fromfile('my_classifier.py')
        model = build_model(cfg)
        print(cfg.model.backbone.arch, cfg.model.head.num_classes, cfg.model.head.in_channels,
              sum(p.numel() for p in model.parameters()))
        ''', installed)
    arch, classes, channels, params = out.split()[-4:]
    expected = load_json('params_flops.json')['5M']
    # the base's chain (_base_/emov2_in1k.py) resolved inside the package; 10-way head
    assert (arch, classes, channels) == ('5M', '10', '288')
    assert int(params) == expected['params_cls_without_head'] + 288 * 10 + 10
