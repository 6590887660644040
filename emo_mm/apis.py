"""Loading emo_mm's configs and building their models from Python.

>>> from emo_mm.apis import build_model, load_config
>>> model = build_model(load_config('emov2_1m_in1k'))
"""
import os.path as osp
from typing import Union

from mmengine.config import Config

#: The repository's config folder (emo_mm is installed editable from the repository).
CONFIG_ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')


def load_config(name_or_path: str) -> Config:
    """Loads a config by path, or by name from ``configs/`` (``.py`` optional)."""
    if osp.isfile(name_or_path):
        return Config.fromfile(name_or_path)
    name = name_or_path if name_or_path.endswith('.py') else name_or_path + '.py'
    path = osp.join(CONFIG_ROOT, name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'No config {name_or_path!r}: not a file and not in {CONFIG_ROOT}.')
    return Config.fromfile(path)


def build_model(cfg: Union[Config, str]):
    """Builds ``cfg.model`` in the config's ``default_scope`` (its toolbox's registry)."""
    from mmengine.registry import MODELS, init_default_scope
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)
