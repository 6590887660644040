"""Arch settings: a variant's name or a user's dict -> the complete setting dict.

Every network with named variants (the EMO backbones, DiT / D-EMO) resolves its ``arch``
argument here; each then checks the values of its own keys.
"""
import copy
from typing import Mapping, Sequence, Union


def resolve_arch(owner: str, arch: Union[str, dict], settings: Mapping[str, dict],
                 defaults: Mapping = None, required: Sequence[str] = (),
                 optional: Sequence[str] = ()) -> dict:
    """``defaults`` updated with the named setting or the given dict (copies).

    Args:
        owner (str): The class name, for the messages.
        arch (str | dict): A name of ``settings``, or a dict with every ``required`` key
            and any of ``defaults`` / ``optional``.
        settings (Mapping[str, dict]): The named variants.
        defaults (Mapping): Keys every variant shares unless it sets them.
        required (Sequence[str]): Keys an arch dict must give.
        optional (Sequence[str]): Further keys an arch dict may give.

    Raises:
        KeyError: An unknown name. TypeError: neither a name nor a dict. ValueError: a dict
            with missing or unknown keys.
    """
    defaults = dict(defaults or {})
    if isinstance(arch, str):
        if arch not in settings:
            raise KeyError(f'Unknown {owner} arch {arch!r}; choose one of {list(settings)} '
                           'or pass a dict.')
        return copy.deepcopy({**defaults, **settings[arch]})
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}.')
    allowed = set(required) | set(defaults) | set(optional)
    missing = [k for k in required if k not in arch]
    unknown = sorted(set(arch) - allowed)
    if missing or unknown:
        raise ValueError(f'Malformed {owner} arch dict: missing keys {missing}, unknown keys '
                         f'{unknown}; required {list(required)}, optional '
                         f'{sorted(allowed - set(required))}.')
    return copy.deepcopy({**defaults, **arch})
