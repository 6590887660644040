"""Short CPU trainings of the ADE20K configs on the generated region set learn.

Measured on 2 CPU cores (150 iterations, batch 4, from scratch; seeds 0 / 1 / 2): EMOv2-1M
mIoU 5.7 -> 41.2, 4.5 -> 42.2, 4.5 -> 45.5 (5 classes; the untrained models predict
near-constant maps); EMOv1-1M 5.3 -> 32.7 (seed 0). 100 iterations were not enough on every machine (12.6 once in CI)."""
import os.path as osp

import pytest

from emo_mm.datasets.demo_data import make_ade20k_regions
from helpers import REPO, train_and_test


@pytest.fixture(scope='module', autouse=True)
def demo_data(monkeypatch_module):
    make_ade20k_regions(osp.join(REPO, 'data', 'demo_ade20k'))
    monkeypatch_module.chdir(REPO)


@pytest.mark.parametrize('config', ['deeplabv3_emov2_1m_demo.py', 'deeplabv3_emov1_1m_demo.py'])
def test_ade20k_format_learns(config, tmp_path):
    """5 classes: chance mIoU is about 1/9 (a constant prediction), measured below."""
    before, after = train_and_test(osp.join(REPO, 'configs', 'demo', config), str(tmp_path),
                                   dict(max_iters=150))
    print(f'\n{config}: mIoU {before["mIoU"]:.1f} -> {after["mIoU"]:.1f}, '
          f'aAcc {before["aAcc"]:.1f} -> {after["aAcc"]:.1f}')
    assert before['mIoU'] < 10
    assert after['mIoU'] > 20
    assert after['mIoU'] > 2.5 * before['mIoU']

