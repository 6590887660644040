import os
import os.path as osp

import pytest
import torch

from helpers import REPO


def _find_reference() -> str:
    candidates = [os.environ.get('EMO_MM_REFERENCE', ''),
                  osp.join(REPO, '..', 'shared', 'reference'), '/work/shared/reference']
    for path in candidates:
        if path and osp.isfile(osp.join(path, 'params_flops.json')):
            return osp.abspath(path)
    raise RuntimeError(
        'The authors\' reference data (shared/reference: emov2_*_random.pth, *_io.pth, '
        'params_flops.json, ...) was not found; parity cannot be checked. Point '
        f'EMO_MM_REFERENCE at it. Looked in: {candidates}')


@pytest.fixture(scope='session')
def reference_dir() -> str:
    return _find_reference()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch
