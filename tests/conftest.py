import logging
import os
import os.path as osp
import sys

import pytest
import torch

import reference_data
from emo_mm import compat
from helpers import REPO
from trained_models import TrainedModels

# The suite runs with emo_mm's upstream fixes applied, as emo_mm's tools and configs do.
compat.apply()

# The suite must run from a clone alone: the authors' reference folder, which sits beside
# the repository on the development machines (../shared/reference), must never be read.
# Every file the test process opens is checked; the session fails if one lies there.
_OUTSIDE = osp.realpath(osp.join(REPO, '..', 'shared')) + osp.sep
_READ_OUTSIDE = []


def _audit(event, args):
    if event == 'open' and isinstance(args[0], (str, bytes)):
        path = osp.realpath(os.fsdecode(args[0]))
        if path.startswith(_OUTSIDE):
            _READ_OUTSIDE.append(path)


sys.addaudithook(_audit)


def pytest_sessionfinish(session, exitstatus):
    if _READ_OUTSIDE:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _READ_OUTSIDE:
        terminalreporter.write_line(
            f'error: tests read files outside the repository: {sorted(set(_READ_OUTSIDE))}; '
            'test data must come from tests/data (session failed).', red=True, bold=True)


@pytest.fixture(scope='session')
def reference_dir(tmp_path_factory) -> str:
    """The authors' reference folder, rebuilt from tests/data (weights regenerated and
    checked against the authors' checksums; outputs via reference_data.load_outputs)."""
    return reference_data.materialise(str(tmp_path_factory.mktemp('reference')))


@pytest.fixture(scope='session')
def demo_training(tmp_path_factory):
    """``demo_training(name)`` -> the :class:`trained_models.Run` of that demo recipe,
    trained on first request and shared by the whole session (tests/trained_models.py)."""
    return TrainedModels(str(tmp_path_factory.mktemp('trained')),
                         os.environ.get('EMO_MM_TEST_TRAINED_CACHE'))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def _stream_handlers():
    from mmengine.logging import MMLogger
    loggers = [logging.getLogger()] + list(MMLogger._instance_dict.values()) + [
        value for value in logging.Logger.manager.loggerDict.values()
        if isinstance(value, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if (isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler)):
                yield handler


@pytest.fixture(autouse=True)
def _no_closed_log_streams():
    """Loggers outlive tests: an MMLogger built while a test captured output keeps that
    test's (then closed) stream, and its next message prints '--- Logging error ---' into a
    later test's captured stderr. Point such handlers at the session's stdout."""
    for handler in _stream_handlers():
        if getattr(handler.stream, 'closed', False):
            handler.stream = sys.stdout  # (setStream would flush the closed one)
    yield


@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch
