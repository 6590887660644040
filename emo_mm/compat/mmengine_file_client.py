"""Drops the two ``FileClient`` deprecation notices mmengine's own hooks print.

Upstream: mmengine 0.10.x deprecates ``FileClient``, yet its ``CheckpointHook`` creates one
at the start of every training run (``LoggerHook`` does too when given ``out_dir``), which
prints two WARNING lines through the run's logger: ``"FileClient" will be deprecated in
future`` and ``"HardDiskBackend" is the alias of "LocalBackend"``. The user has nothing to
change. Only these two notices of ``mmengine.fileio.file_client`` are dropped; a
``FileClient`` created elsewhere works as before. Applies to mmengine 0.8 .. 0.10.7.
"""
import importlib

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmengine.fileio.file_client'

_NOTICES = ('"FileClient" will be deprecated', '"HardDiskBackend" is the alias')


def apply() -> None:
    """Wraps the module's ``print_log`` (idempotent)."""
    file_client = importlib.import_module(TARGET)
    original = file_client.print_log
    if getattr(original, 'drops_deprecation_notices', False):
        return

    def print_log(msg, *args, **kwargs):
        if isinstance(msg, str) and msg.startswith(_NOTICES):
            return None
        return original(msg, *args, **kwargs)

    print_log.drops_deprecation_notices = True
    file_client.print_log = print_log
