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
    'checkpoint': set(),
    'attention': {'layers'},
    'blocks': {'layers', 'attention'},
    'dit': {'layers', 'attention', 'blocks'},
    'backbones.base': {'layers', 'attention', 'blocks', 'checkpoint'},
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
