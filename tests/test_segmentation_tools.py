"""tools/train.py / tools/test.py on the generated segmentation sets, and the data errors."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from emo_mm.checks.data import DataError
from emo_mm.demo.data import ADE_DEMO_CLASSES, DEMO_SETTINGS, make_ade20k_regions, make_hrf_vessels
from emo_mm.engine import prepare_train_config
from helpers import REPO

# Some tests build configs with the default work dir (work_dirs/<config name> of the
# repository), which prepare_train_config locks: under pytest-xdist they share a worker.
pytestmark = pytest.mark.xdist_group('default_work_dirs')

ENV = dict(os.environ, OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def ade():
    return make_ade20k_regions(osp.join(REPO, DEMO_SETTINGS.demo_ade20k_root))


@pytest.fixture(scope='module')
def hrf():
    return make_hrf_vessels(osp.join(REPO, DEMO_SETTINGS.demo_hrf_root))


def _run(args):
    result = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _config(tmp_path, base, data_root, **extra):
    path = tmp_path / 'cfg.py'
    lines = [f"_base_ = [{osp.join(REPO, 'configs', 'demo', base)!r}]",
             f"data_root = {data_root!r}",
             "train_dataloader = dict(dataset=dict(data_root=data_root))",
             "val_dataloader = dict(dataset=dict(data_root=data_root))",
             "test_dataloader = val_dataloader"]
    lines += [f'{k} = {v}' for k, v in extra.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.mark.slow  # trains through the tools in subprocesses
def test_train_test_and_overlays(ade, tmp_path):
    cfg = _config(tmp_path, 'deeplabv3_emov2_1m_demo.py', ade,
                  train_cfg='dict(max_iters=4, val_interval=100)',
                  default_hooks='dict(checkpoint=dict(interval=4))')
    work = str(tmp_path / 'work')
    _run([sys.executable, 'tools/train.py', cfg, '--work-dir', work])
    log = _run([sys.executable, 'tools/test.py', cfg, osp.join(work, 'iter_4.pth'),
                '--work-dir', work, '--show-dir', 'overlays'])
    for name in ADE_DEMO_CLASSES:
        assert name in log  # the per-class IoU table
    assert 'mIoU' in log
    # a relative --show-dir is a folder of the run's log folder (work_dir/<timestamp>/)
    (show, ) = glob.glob(osp.join(work, '2*', 'overlays'))
    assert f'Images with the predictions drawn: {show}' in log
    overlays = glob.glob(osp.join(show, '*.png'))
    assert len(overlays) == 24, overlays[:3]
    assert not osp.exists(osp.join(REPO, 'overlays'))


@pytest.mark.slow  # trains through the tools in subprocesses
@pytest.mark.extended
def test_slide_inference_on_sizes_not_multiple_of_crop(hrf):
    """Windows overlap and hang over the image edge: 100x140 with crop 64, stride 42."""
    import torch

    from emo_mm.apis import build_model, load_config
    model = build_model(load_config(osp.join(REPO, 'configs', 'demo', 'uemo_demo.py'))).eval()
    assert model.test_cfg.mode == 'slide' and tuple(model.test_cfg.crop_size) == (64, 64)
    real = load_config(osp.join(REPO, 'configs', 'uemo_hrf.py')).model.test_cfg
    assert real.mode == 'slide' and tuple(real.crop_size) == (256, 256)
    meta = dict(img_shape=(100, 140), ori_shape=(100, 140), pad_shape=(100, 140))
    with torch.no_grad():
        logits = model.inference(torch.rand(1, 3, 100, 140), [meta])
    assert logits.shape == (1, 2, 100, 140) and torch.isfinite(logits).all()


def _copy_subset(src, dst, count=4):
    for sub in ('images', 'annotations'):
        for split in ('training', 'validation'):
            os.makedirs(osp.join(dst, sub, split))
            for name in sorted(os.listdir(osp.join(src, sub, split)))[:count]:
                shutil.copy(osp.join(src, sub, split, name), osp.join(dst, sub, split, name))


def test_missing_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data_root 'data/ade/ADEChallengeData2016' does not "
                       r"exist\. Expected ADEChallengeData2016: images/"):
        prepare_train_config(osp.join(REPO, 'configs', 'deeplabv3_emov2_5m_ade20k.py'))
    with pytest.raises(DataError, match="data_root 'data/HRF' does not exist"):
        prepare_train_config(osp.join(REPO, 'configs', 'uemo_hrf.py'))


def test_label_map_size_and_values(ade, tmp_path):
    root = str(tmp_path / 'ade')
    _copy_subset(ade, root)
    cfg = _config(tmp_path, 'deeplabv3_emov2_1m_demo.py', root)
    prepare_train_config(cfg)  # the copy is fine
    seg_dir = osp.join(root, 'annotations', 'training')
    first = osp.join(seg_dir, sorted(os.listdir(seg_dir))[0])
    label = cv2.imread(first, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(first, label[:-8])
    with pytest.raises(DataError, match=r'is 200x152 but its image is 200x160'):
        prepare_train_config(cfg)
    label[0, 0] = 9  # 5 classes, reduce_zero_label: stored values 0..5 (and 255)
    cv2.imwrite(first, label)
    with pytest.raises(DataError, match=r'holds values \[9\], outside the 5 classes'):
        prepare_train_config(cfg)
    label[0, 0] = 255  # the ignore value is fine
    cv2.imwrite(first, label)
    prepare_train_config(cfg)
    os.remove(first)
    with pytest.raises(DataError, match='has no label map'):
        prepare_train_config(cfg)


def test_hrf_label_values(hrf, tmp_path):
    root = str(tmp_path / 'hrf')
    _copy_subset(hrf, root, 2)
    cfg = _config(tmp_path, 'uemo_demo.py', root,
                  train_dataloader=f"dict(dataset=dict(dataset=dict(data_root={root!r})))")
    prepare_train_config(cfg)
    seg = osp.join(root, 'annotations', 'validation')
    path = osp.join(seg, sorted(os.listdir(seg))[0])
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    label[0, :3] = np.array([2, 3, 4])
    cv2.imwrite(path, label)
    with pytest.raises(DataError, match=r'holds values \[2, 3, 4\], outside the 2 classes'):
        prepare_train_config(cfg)
