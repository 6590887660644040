"""The package layout stays walkable: models import downwards only, and importing the
models does not drag in the toolboxes."""
import ast
import glob
import os
import os.path as osp
import subprocess
import sys

from helpers import REPO

MODELS = osp.join(REPO, 'emo_mm', 'models')

#: What each model file may import from inside emo_mm.models (module names relative to
#: emo_mm.models). Lower layers never import higher ones; backbone files import the
#: shared base, never each other.
ALLOWED = {
    'layers': set(),
    'arch': set(),
    'weights': set(),
    'attention': {'layers'},
    'blocks': {'layers', 'attention'},
    'dit': {'layers', 'attention', 'blocks', 'arch'},
    'backbones.base': {'layers', 'attention', 'blocks', 'weights', 'arch'},
    'backbones.emov1': {'layers', 'attention', 'blocks', 'backbones.base'},
    'backbones.emov2': {'backbones.base'},
    'backbones.vemo': {'backbones.base'},
    'backbones.uemo': {'layers', 'blocks'},
}


def _internal_imports(path: str, module: str):
    """emo_mm.models modules imported by a file, as names relative to emo_mm.models."""
    tree = ast.parse(open(path).read())
    package = module.rsplit('.', 1)[0] if '.' in module else ''
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                name = node.module or ''
                if name.startswith('emo_mm.models.'):
                    found.add(name[len('emo_mm.models.'):])
                continue
            base = package.split('.') if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = '.'.join(base + ([node.module] if node.module else []))
            if target.startswith('...') or node.level > len(package.split('.')) + 1:
                continue  # outside emo_mm.models (registry)
            if target:
                found.add(target)
    return found


def test_model_files_import_downwards_only():
    checked = []
    for module, allowed in ALLOWED.items():
        path = osp.join(MODELS, *module.split('.')) + '.py'
        if not osp.isfile(path):
            continue
        imports = _internal_imports(path, module)
        imports = {i for i in imports if i.split('.')[0] in
                   {'layers', 'weights', 'attention', 'blocks', 'dit', 'backbones'}}
        assert imports <= allowed, f'{module} imports {sorted(imports - allowed)}'
        checked.append(module)
    assert {'layers', 'attention', 'blocks', 'backbones.base', 'backbones.emov2'} <= set(checked)


def test_importing_models_needs_no_toolbox():
    code = ('import sys, emo_mm.models; '
            'print(sorted(m for m in ("mmdet", "mmseg", "mmaction", "mmpretrain") '
            'if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == '[]', out.stdout


def test_uemo_is_registered_without_mmseg_imported():
    code = ('import sys, emo_mm.models; from emo_mm.registry import MODELS; '
            'print(MODELS.get("UEMO") is not None, "mmseg" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.split() == ['True', 'False'], out.stdout


_UPSTREAM_STATE = '''
import sys, warnings
import mmengine.config.config as config_module
import mmengine.runner.checkpoint as checkpoint_module
import mmpretrain.apis.model as hub_module
import mmdet.models.dense_heads.ssd_head as ssd_module
import mmseg.visualization.local_visualizer as seg_vis_module
from mmcv.ops import RoIAlign
from mmseg.models.backbones import UNet

def state():
    """The upstream objects emo_mm's fixes replace, and the interpreter-wide hooks."""
    return dict(
        get_cfg_path=config_module.Config.__dict__['_get_cfg_path'],
        schemes=checkpoint_module.CheckpointLoader._schemes,
        local_loader=checkpoint_module.CheckpointLoader._schemes[''],
        hub_register=hub_module.ModelHub.__dict__['_register_mmpretrain_models'],
        hub_models=dict(hub_module.ModelHub._models_dict),
        ssd_init=ssd_module.SSDHead.__init__,
        seg_draw=seg_vis_module.SegLocalVisualizer._draw_sem_seg,
        roi_align_forward=RoIAlign.forward,
        unet_train=UNet.train,
        meta_path=list(sys.meta_path),
        warning_filters=list(warnings.filters),
        drn='mmaction.models.localizers.drn' in sys.modules,
    )

before = state()
{action}
after = state()
print('changed:', sorted(k for k in before if before[k] is not after[k] and before[k] != after[k]))
'''


def _changed_upstream(action: str) -> str:
    code = _UPSTREAM_STATE.format(action=action)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_importing_emo_mm_changes_nothing_upstream():
    """``import emo_mm.models`` (and building an emo_mm model in a toolbox's registry) leaves
    every upstream function emo_mm's fixes replace as it was: the fixes are applied only by
    emo_mm.compat.apply() (the control below shows the check sees them)."""
    unchanged = _changed_upstream(
        'import emo_mm, emo_mm.models, emo_mm.apis, emo_mm.inference, emo_mm.engine\n'
        'from mmdet.registry import MODELS\n'
        'MODELS.build(dict(type="emo_mm.EMOv2", arch="1M"))')
    assert unchanged == 'changed: []'
    applied = _changed_upstream('import emo_mm.compat\nemo_mm.compat.apply()')
    assert applied == ("changed: ['drn', 'get_cfg_path', 'hub_register', 'local_loader', "
                       "'meta_path', 'seg_draw', 'ssd_init', 'warning_filters']"), applied


_RENAMED = '''
import importlib, warnings
from mmengine.registry import TRANSFORMS
warnings.simplefilter('error', DeprecationWarning)
import emo_mm.checks.guard, emo_mm.checks.data, emo_mm.models.weights
import emo_mm.generation.class_shapes, emo_mm.utils.onnx, emo_mm.models
from emo_mm.models import dit
from emo_mm.models.backbones import emov1
modules = {'emo_mm.datasets.checks': emo_mm.checks.data,
           'emo_mm.datasets.guard': emo_mm.checks.guard,
           'emo_mm.models.checkpoint': emo_mm.models.weights,
           'emo_mm.generation.demo_data': emo_mm.generation.class_shapes}
try:
    import emo_mm.datasets
    raise SystemExit('emo_mm.datasets imported without a warning')
except DeprecationWarning as warning:
    assert 'emo_mm.checks' in str(warning), warning
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    import emo_mm.datasets
    assert emo_mm.datasets.check_data is emo_mm.checks.data.check_data
for old, new in modules.items():
    try:
        importlib.import_module(old)
        raise SystemExit(old + ' imported without a warning')
    except DeprecationWarning as warning:
        assert new.__name__ in str(warning), warning
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert importlib.import_module(old) is new, old
for module, new in ((emov1, emov1.ConvStem), (dit, dit.Patchify)):
    try:
        module.PatchEmbed
        raise SystemExit(module.__name__ + '.PatchEmbed without a warning')
    except DeprecationWarning as warning:
        assert new.__name__ in str(warning), warning
assert emo_mm.utils.onnx.switch_to_deploy is emo_mm.models.switch_to_deploy
print(TRANSFORMS.build(dict(type='emo_mm.SampleGuard', transforms=[])).__module__)
'''


def test_renamed_modules_and_classes_are_deprecated_aliases():
    """The old names of renamed modules and classes warn and give the very same objects
    (nothing executed or registered twice); one switch_to_deploy."""
    out = subprocess.run([sys.executable, '-c', _RENAMED], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['emo_mm.checks.guard'], out.stdout


#: The top of tools/: the user entry points (and the launchers' shared shell code).
TOOL_ENTRY_POINTS = {'train.py', 'test.py', 'infer.py', 'deploy.py', 'demo.py',
                     'dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh',
                     'dist_common.sh', 'slurm_common.sh'}
#: tools/ subfolders, grouped as mmdet and mmpretrain group theirs; dev/ is for maintainers.
TOOL_GROUPS = {'analysis_tools', 'model_converters', 'dataset_converters', 'misc', 'dev'}

_TOOLS_HELP = '''
import contextlib, glob, importlib.util, io, os.path as osp, sys
for path in sorted(glob.glob(osp.join('tools', '*', '*.py'))):
    spec = importlib.util.spec_from_file_location('tool_' + osp.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # import-safe: the work is under __main__
    sys.argv, out = [path, '--help'], io.StringIO()
    code = 'returned'
    try:
        with contextlib.redirect_stdout(out):
            module.main()
    except SystemExit as exit:
        code = exit.code
    print(path, code, 'usage:' in out.getvalue())
'''


def test_tools_top_level_holds_the_user_entry_points_only():
    tools = osp.join(REPO, 'tools')
    entries = {e for e in os.listdir(tools) if e != '__pycache__'}
    files = {e for e in entries if osp.isfile(osp.join(tools, e))}
    assert files == TOOL_ENTRY_POINTS
    assert entries - files == TOOL_GROUPS
    for group in TOOL_GROUPS:  # no nesting below the groups
        assert not [e for e in os.listdir(osp.join(tools, group))
                    if osp.isdir(osp.join(tools, group, e)) and e != '__pycache__'], group


def test_every_grouped_tool_imports_and_prints_its_help():
    """One interpreter imports every tools/<group>/*.py and runs its main() with --help."""
    out = subprocess.run([sys.executable, '-c', _TOOLS_HELP], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [line.split() for line in out.stdout.splitlines()]
    expected = sorted(osp.relpath(p, REPO) for p in
                      glob.glob(osp.join(REPO, 'tools', '*', '*.py')))
    assert [r[0] for r in results] == expected and len(expected) >= 16
    assert [r for r in results if r[1:] != ['0', 'True']] == []
