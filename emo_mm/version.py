"""The version of emo_mm, written here only: setup.py reads it, ``emo_mm.__version__``
re-exports it, and CHANGELOG.md lists what each version changed."""
import re

__version__ = '0.1.0'


def parse_version_info(version: str) -> tuple:
    """'0.1.0' -> (0, 1, 0); a pre-release suffix stays a string: '0.2.0rc1' -> (0, 2, 0, 'rc1')."""
    info = []
    for part in version.split('.'):
        number = re.match(r'\d*', part).group()
        if number:
            info.append(int(number))
        if part[len(number):]:
            info.append(part[len(number):])
    return tuple(info)


version_info = parse_version_info(__version__)
