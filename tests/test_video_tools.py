"""The V-EMO config through emo_mm's and mmaction2's own train/test tools; video errors."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest

from emo_mm.checks.data import DataError
from emo_mm.demo.data import DEMO_SETTINGS, make_motion_videos
from emo_mm.engine import prepare_train_config
from helpers import REPO

# Some tests build configs with the default work dir (work_dirs/<config name> of the
# repository), which prepare_train_config locks: under pytest-xdist they share a worker.
pytestmark = pytest.mark.xdist_group('default_work_dirs')

ENV = dict(os.environ, OMP_NUM_THREADS='1')
DEMO = osp.join(REPO, 'configs', 'demo', 'vemo_demo.py')


@pytest.fixture(scope='module')
def videos():
    return make_motion_videos(osp.join(REPO, DEMO_SETTINGS.demo_kinetics_root))


def _tiny(tmp_path, ann_train=None, extra=''):
    root = osp.join(REPO, DEMO_SETTINGS.demo_kinetics_root)
    ann_train = ann_train or osp.join(root, 'kinetics_train_list_videos.txt')
    path = tmp_path / 'tiny.py'
    path.write_text(
        f"_base_ = [{DEMO!r}]\n"
        f"train_dataloader = dict(batch_size=4, dataset=dict(ann_file={ann_train!r}, "
        f"data_prefix=dict(video={osp.join(root, 'videos_train')!r}), indices=8))\n"
        f"val_dataloader = dict(dataset=dict(ann_file="
        f"{osp.join(root, 'kinetics_val_list_videos.txt')!r}, "
        f"data_prefix=dict(video={osp.join(root, 'videos_val')!r}), indices=8))\n"
        f"test_dataloader = dict(dataset=dict(ann_file="
        f"{osp.join(root, 'kinetics_val_list_videos.txt')!r}, "
        f"data_prefix=dict(video={osp.join(root, 'videos_val')!r}), indices=8))\n"
        f"train_cfg = dict(max_epochs=1, val_interval=1)\n{extra}")
    return str(path)


def _run(args):
    result = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow  # trains through the tools in subprocesses
@pytest.mark.extended
def test_train_and_test_tools(videos, tmp_path):
    cfg = _tiny(tmp_path)
    work = str(tmp_path / 'work')
    _run([sys.executable, 'tools/train.py', cfg, '--work-dir', work])
    log = _run([sys.executable, 'tools/test.py', cfg, osp.join(work, 'epoch_1.pth'),
                '--work-dir', work, '--show-dir', 'clips'])
    assert 'acc/top1' in log and 'acc/top5' in log
    # mmaction2's runtime has no visualisation hook: --show-dir adds its own, which writes
    # each clip's frames (PNG) under the run's folder
    (show, ) = glob.glob(osp.join(work, '2*', 'clips'))
    assert f'Images with the predictions drawn: {show}' in log
    frames = glob.glob(osp.join(show, '**', '*.png'), recursive=True)
    assert len(frames) >= 8, frames[:3]


@pytest.mark.slow  # trains through the tools in subprocesses
def test_mmaction_own_train_script(videos, tmp_path):
    import mmaction
    script = osp.join(osp.dirname(mmaction.__file__), '.mim', 'tools', 'train.py')
    log = _run([sys.executable, script, _tiny(tmp_path), '--work-dir', str(tmp_path / 'm')])
    assert 'acc/top1' in log


def test_video_errors(videos, tmp_path):
    broken = tmp_path / 'broken.txt'
    broken.write_text('missing_video.mp4 0\n')
    with pytest.raises(DataError, match="missing_video.mp4.*does not exist"):
        prepare_train_config(_tiny(tmp_path, str(broken)))
    bad_label = tmp_path / 'bad_label.txt'
    bad_label.write_text(sorted(os.listdir(osp.join(videos, 'videos_train')))[0] + ' 9\n')
    with pytest.raises(DataError, match='label 9.*6 classes'):
        prepare_train_config(_tiny(tmp_path, str(bad_label)))
    corrupt = tmp_path / 'videos'
    corrupt.mkdir()
    (corrupt / 'clip.mp4').write_bytes(b'not a video at all' * 10)
    listing = tmp_path / 'corrupt.txt'
    listing.write_text('clip.mp4 0\n')
    cfg = _tiny(tmp_path, str(listing), extra=(
        f"train_dataloader.update(dataset=dict(ann_file={str(listing)!r}, "
        f"data_prefix=dict(video={str(corrupt)!r})))\n"))
    with pytest.raises(DataError, match='clip.mp4.*cannot be decoded'):
        prepare_train_config(cfg)
