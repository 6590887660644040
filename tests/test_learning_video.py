"""V-EMO learns motion classes that no single frame reveals."""
import os.path as osp

import pytest

from emo_mm.datasets.demo_data import MOTION_CLASSES, make_motion_videos
from helpers import REPO, train_and_test

CONFIG = osp.join(REPO, 'configs', 'demo', 'vemo_5m_demo.py')
CHANCE = 1 / len(MOTION_CLASSES)


@pytest.fixture(scope='module', autouse=True)
def demo_data(monkeypatch_module):
    make_motion_videos(osp.join(REPO, 'data', 'demo_kinetics'))
    monkeypatch_module.chdir(REPO)


def _single_frame(pipeline):
    return [dict(t, clip_len=1) if t['type'] == 'UniformSample' else t for t in pipeline]


def test_motion_is_learned_from_clips_not_frames(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    _, clips = train_and_test(CONFIG, str(tmp_path / 'clips'), dict(max_epochs=8))
    frames_options = {
        'model.backbone.num_frames': 1,
        'train_dataloader.dataset.pipeline': _single_frame(cfg.train_dataloader.dataset.pipeline),
        'test_dataloader.dataset.pipeline': _single_frame(cfg.test_dataloader.dataset.pipeline)}
    _, frames = train_and_test(CONFIG, str(tmp_path / 'frames'), dict(max_epochs=8),
                               frames_options)
    print(f'\nV-EMO top-1: 4-frame clips {clips["acc/top1"]:.3f}, single frames '
          f'{frames["acc/top1"]:.3f} (chance {CHANCE:.3f})')
    assert clips['acc/top1'] > 0.6
    assert frames['acc/top1'] < CHANCE + 0.15
