"""Loading emo_mm's configs and building their models from Python.

>>> from emo_mm.apis import build_model, load_config
>>> model = build_model(load_config('emov2_1m_in1k'))

Configs are found by name in a repository checkout (``configs/``) and in an installed
package (``emo_mm/.mim/configs``, the OpenMMLab place, filled by setup.py), so the tools
work from a clone, an editable install and a wheel alike. Other projects' configs inherit
emo_mm's by name, ``_base_ = ['emo_mm::emov2_5m_in1k.py']``, once the upstream fixes are
applied (:mod:`emo_mm.compat.mmengine_config_prefix`; :func:`load_config` applies them).
"""
import ast
import difflib
import glob
import os.path as osp
from typing import List, Optional, Union

from mmengine.config import Config

from . import compat
from .compat.mmengine_config_prefix import PACKAGE_PREFIX

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
#: The configs of an installed package (copies in a wheel, links in an editable install).
PACKAGED_CONFIG_ROOT = osp.join(PACKAGE_DIR, '.mim', 'configs')
#: The configs of the repository checkout the package sits in, if it sits in one.
CONFIG_ROOT = osp.join(osp.dirname(PACKAGE_DIR), 'configs')


def config_roots() -> List[str]:
    """The folders configs are looked up in, first match wins: the checkout's ``configs/``
    (the files being edited), then the packaged ones."""
    in_checkout = osp.isfile(osp.join(osp.dirname(PACKAGE_DIR), 'setup.py'))
    roots = [CONFIG_ROOT] if in_checkout and osp.isdir(CONFIG_ROOT) else []
    if osp.isdir(PACKAGED_CONFIG_ROOT) and not any(
            osp.samefile(PACKAGED_CONFIG_ROOT, root) for root in roots):
        roots.append(PACKAGED_CONFIG_ROOT)
    return roots


def list_configs() -> List[str]:
    """Names of all configs (``emov2_1m_in1k``, ``demo/uemo_demo``, ...); the bases (files
    in any ``_base_`` folder) are left out."""
    names = set()
    for root in config_roots():
        for path in glob.glob(osp.join(root, '**', '*.py'), recursive=True):
            parts = osp.relpath(path, root)[:-len('.py')].split(osp.sep)
            if '_base_' not in parts[:-1]:  # bases (of any folder) are no configs to run
                names.add('/'.join(parts))
    return sorted(names)


def find_config(name_or_path: str) -> str:
    """The file of a config given by path, by name (``.py`` optional; ``emo_mm::`` prefix
    allowed), e.g. ``'retinanet_emov2_5m_coco'`` or ``'demo/uemo_demo.py'``."""
    if osp.isfile(name_or_path):
        return name_or_path
    name = name_or_path[len(PACKAGE_PREFIX):] if name_or_path.startswith(
        PACKAGE_PREFIX) else name_or_path
    name = name if name.endswith('.py') else name + '.py'
    roots = config_roots()
    for root in roots:
        path = osp.join(root, name)
        if osp.isfile(path):
            return path
    close = difflib.get_close_matches(name[:-len('.py')], list_configs(), n=3)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    where = ', '.join(roots) if roots else 'none found (emo_mm installed without its configs)'
    raise FileNotFoundError(
        f'No config {name_or_path!r}: not a file, and not a config name in {where}.{hint} '
        'Pass a config file path, or a name from emo_mm.apis.list_configs().')


class ConfigSyntaxError(ValueError):
    """A config file (or one of its bases) that is not valid Python."""


def _syntax_error(path: str) -> Optional[ConfigSyntaxError]:
    """The error of a config file that does not parse, with its file and line."""
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
        compile(source, path, 'exec', ast.PyCF_ONLY_AST)
    except SyntaxError as err:
        where = f'{err.filename or path}, line {err.lineno}'
        text = f': {err.text.strip()!r}' if err.text and err.text.strip() else ''
        return ConfigSyntaxError(f'The config {where} is not valid Python: {err.msg}{text}.')
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _base_files(path: str) -> List[str]:
    """The ``_base_`` files a (parseable) config names, resolved as MMEngine resolves them
    (relative to the config; ``emo_mm::`` names through :func:`find_config`)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            names = [value] if isinstance(value, str) else list(value)
            found = []
            for name in names:
                if not isinstance(name, str):
                    continue
                if name.startswith(PACKAGE_PREFIX):
                    try:
                        found.append(find_config(name))
                    except FileNotFoundError:
                        pass
                else:
                    found.append(osp.normpath(osp.join(osp.dirname(path), name)))
            return found
    return []


def find_syntax_error(path: str, seen: Optional[set] = None) -> Optional[ConfigSyntaxError]:
    """The first syntax error in a config or, depth first, in its ``_base_`` files."""
    seen = set() if seen is None else seen
    if path in seen or not osp.isfile(path) or not path.endswith('.py'):
        return None
    seen.add(path)
    error = _syntax_error(path)
    if error is not None:
        return error
    for base in _base_files(path):
        error = find_syntax_error(base, seen)
        if error is not None:
            return error
    return None


def load_config(name_or_path: str) -> Config:
    """Loads a config by path, or by name from emo_mm's configs (``.py`` optional).

    A file that is not valid Python (the config or one of its ``_base_`` files) raises
    :class:`ConfigSyntaxError` naming the file and the line (MMEngine names neither for a
    base file). Applies emo_mm's upstream fixes first (:func:`emo_mm.compat.apply`).
    """
    compat.apply()
    path = find_config(name_or_path)
    try:
        return Config.fromfile(path)
    except SyntaxError:
        error = find_syntax_error(path)
        if error is None:
            raise
        raise error from None


def build_model(cfg: Union[Config, str]):
    """Builds ``cfg.model`` in the config's ``default_scope`` (its toolbox's registry), with
    emo_mm's upstream fixes applied (:func:`emo_mm.compat.apply`)."""
    from mmengine.registry import MODELS, init_default_scope
    compat.apply()
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)
