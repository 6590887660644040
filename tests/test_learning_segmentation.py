"""Short CPU trainings of the segmentation configs on the generated sets learn."""
import os.path as osp

import pytest

from emo_mm.datasets.demo_data import make_ade20k_regions, make_hrf_vessels
from helpers import REPO, train_and_test


@pytest.fixture(scope='module', autouse=True)
def demo_data(monkeypatch_module):
    make_ade20k_regions(osp.join(REPO, 'data', 'demo_ade20k'))
    make_hrf_vessels(osp.join(REPO, 'data', 'demo_hrf'))
    monkeypatch_module.chdir(REPO)


@pytest.mark.parametrize('config', ['deeplabv3_emov2_1m_demo.py', 'deeplabv3_emov1_1m_demo.py'])
def test_ade20k_format_learns(config, tmp_path):
    """5 classes: chance mIoU is about 1/9 (a constant prediction), measured below."""
    before, after = train_and_test(osp.join(REPO, 'configs', 'demo', config), str(tmp_path),
                                   dict(max_iters=100))
    print(f'\n{config}: mIoU {before["mIoU"]:.1f} -> {after["mIoU"]:.1f}, '
          f'aAcc {before["aAcc"]:.1f} -> {after["aAcc"]:.1f}')
    assert before['mIoU'] < 15
    assert after['mIoU'] > 40


def test_uemo_hrf_format_learns(tmp_path):
    """Vessels vs background, slide inference on images that are not multiples of the window."""
    before, after = train_and_test(osp.join(REPO, 'configs', 'demo', 'uemo_demo.py'),
                                   str(tmp_path), dict(max_iters=60))
    print(f'\nU-EMO: mDice {before["mDice"]:.1f} -> {after["mDice"]:.1f}')
    assert after['mDice'] > 70
    assert after['mDice'] > before['mDice'] + 20
