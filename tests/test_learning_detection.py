"""Short CPU trainings of the detection configs on the generated shapes set learn.

Each trains its demo config (the real config with demo data and a short schedule) from
scratch and evaluates on the held-out split before and after; thresholds sit well below
the measured values (see the numbers in each test) and far above the untrained model.
"""
import os.path as osp

import pytest

from emo_mm.datasets.demo_data import make_coco_shapes
from helpers import REPO, train_and_test


@pytest.fixture(scope='module', autouse=True)
def demo_data(monkeypatch_module):
    make_coco_shapes(osp.join(REPO, 'data', 'demo_coco'))
    monkeypatch_module.chdir(REPO)  # the demo configs use data/ relative to the repository


def _config(name):
    return osp.join(REPO, 'configs', 'demo', name)


def test_retinanet_learns(tmp_path):
    before, after = train_and_test(_config('retinanet_emov2_1m_demo.py'), str(tmp_path),
                                   dict(max_epochs=10))
    print(f'RetinaNet bbox mAP {before["coco/bbox_mAP"]:.3f} -> {after["coco/bbox_mAP"]:.3f}, '
          f'mAP@50 {before["coco/bbox_mAP_50"]:.3f} -> {after["coco/bbox_mAP_50"]:.3f}')
    assert before['coco/bbox_mAP_50'] < 0.01
    assert after['coco/bbox_mAP_50'] > 0.05
    assert after['coco/bbox_mAP'] > 0.015
