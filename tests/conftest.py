import importlib.util
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

# Under pytest-xdist (make test runs one worker per core) every worker computes on one
# thread: two workers with a core's worth of threads each would oversubscribe the cores.
# OMP_NUM_THREADS carries the limit into the tools the tests start, and into onnxruntime
# sessions (emo_mm.deploy.predictor.create_session).
if os.environ.get('PYTEST_XDIST_WORKER'):
    _workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    _threads = max(1, (os.cpu_count() or 1) // _workers)
    os.environ['OMP_NUM_THREADS'] = str(_threads)
    torch.set_num_threads(_threads)

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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # A selected mobile test fails without its runtime: a missing extra is never a pass.
    if item.get_closest_marker('mobile') and importlib.util.find_spec('executorch') is None:
        pytest.fail('ExecuTorch is not installed: run `make setup-mobile` (the mobile extra, '
                    'requirements/mobile.txt) for the tests marked mobile.', pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    if _READ_OUTSIDE:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _READ_OUTSIDE:
        terminalreporter.write_line(
            f'error: tests read files outside the repository: {sorted(set(_READ_OUTSIDE))}; '
            'test data must come from tests/data (session failed).', red=True, bold=True)


#: Fixtures that train or export a demo training (tests/trained_models.py).
_TRAINING_FIXTURES = ('demo_training', 'bundles')


def _training_family(item):
    """The demo training a test uses: its ``name`` parameter or its ``demo_family`` mark."""
    mark = item.get_closest_marker('demo_family')
    if mark is not None:
        return mark.args[0]
    params = getattr(item, 'callspec', None)
    if params is not None and 'name' in params.params:
        return params.params['name']
    raise pytest.UsageError(
        f'{item.nodeid} uses a demo training: name it with a `name` parameter or '
        "@pytest.mark.demo_family('<recipe>') so that pytest-xdist keeps its users together")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keeps the users of one demo training on one xdist worker (``--dist loadgroup``), so
    that it trains once, and orders the run so that the longest tests do not start last:
    first the tests that declare a timeout above the default, then the modules with slow
    tests (kept whole), then the rest (make test keeps this order: --no-loadscope-reorder)."""
    default_timeout = float(config.getini('timeout') or 0)
    slow_modules = set()
    for item in items:
        if any(name in item.fixturenames for name in _TRAINING_FIXTURES):
            item.add_marker(pytest.mark.xdist_group(_training_family(item)))
        if item.get_closest_marker('slow') is not None:
            slow_modules.add(item.module.__name__)

    def rank(item):
        timeout = item.get_closest_marker('timeout')
        if timeout is not None and timeout.args and timeout.args[0] > default_timeout:
            return 0
        return 1 if item.module.__name__ in slow_modules else 2

    items.sort(key=rank)


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
def _release_work_dir_locks():
    """``prepare_train_config`` locks a work dir for the rest of the process (one run per
    work dir); a test's locks end with the test, so that another worker's tests can use the
    same default work dir (work_dirs/<config name> of the repository) after it."""
    from emo_mm.engine import worklock
    before = set(worklock._held)
    yield
    for work_dir in set(worklock._held) - before:
        worklock.release_work_dir(work_dir)


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
