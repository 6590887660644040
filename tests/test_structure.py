"""The package layout stays walkable: models import downwards only, and importing the
models does not drag in the toolboxes."""
import ast
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
    'checkpoint': set(),
    'attention': {'layers'},
    'blocks': {'layers', 'attention'},
    'dit': {'layers', 'attention', 'blocks', 'arch'},
    'backbones.base': {'layers', 'attention', 'blocks', 'checkpoint', 'arch'},
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
                   {'layers', 'checkpoint', 'attention', 'blocks', 'dit', 'backbones'}}
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
