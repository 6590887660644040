"""The fine-tuning examples of configs/finetune/ (docs/training.md, "Fine-tuning on your own data")
build, aim at the user's classes and data, and pass the data check on small sets."""
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image

from emo_mm.apis import build_model, load_config
from emo_mm.checks.data import check_data
from emo_mm.demo.data import (COCO_SHAPES_CLASSES, MOTION_CLASSES, make_ade20k_regions,
                              make_coco_shapes, make_motion_videos)
from emo_mm.engine import prepare_train_config
from helpers import REPO


def _load(name):
    return load_config(osp.join(REPO, 'configs', 'finetune', name))


def _heads(cfg):
    model = cfg.model
    return {key: model[key].get('num_classes') for key in
            ('head', 'bbox_head', 'decode_head', 'auxiliary_head', 'cls_head') if key in model}


@pytest.mark.parametrize('name,classes', [
    ('emov2_5m_custom-cls.py', 10), ('retinanet_emov2_5m_custom-coco.py', 2),
    ('deeplabv3_emov2_5m_custom-seg.py', 3), ('vemo_5m_custom-video.py', 5)])
def test_examples_build_for_the_users_classes(name, classes):
    cfg = _load(name)
    assert set(_heads(cfg).values()) == {classes}
    cfg.model.get('backbone', {}).pop('init_cfg', None)  # no pretrained file here
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_classification_example_checks_an_image_folder(tmp_path):
    """mmpretrain's CustomDataset with a string data_prefix (class folders)."""
    root = tmp_path / 'my_images'
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label in range(10):
            folder = root / split / f'class{label}'
            os.makedirs(folder)
            for i in range(4):  # 40 training images: one batch of 32 (drop_last=True)
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                    folder / f'{i}.jpg')
    cfg = _load('emov2_5m_custom-cls.py')
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root)
    assert cfg.train_dataloader.dataset.type == 'CustomDataset'
    assert cfg.train_dataloader.dataset.data_prefix == 'train'
    check_data(cfg, ('train', 'val'))


# ---------------------------------------------------------------------------------------
# Fine-tuning each example on a tiny set of its kind.
# ---------------------------------------------------------------------------------------
def _image_folders(root, classes=3, per_class=10, val_per_class=2):
    """3 classes x 10 training images (and 2 validation ones): the size of a first try."""
    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for split, count in (('train', per_class), ('val', val_per_class)):
        for label in range(classes):
            folder = root / split / f'class{label}'
            os.makedirs(folder)
            for i in range(count):
                img = np.clip(rng.normal(colours[label], 30, (48, 64, 3)), 0, 255)
                Image.fromarray(img.astype(np.uint8)).save(folder / f'{i}.jpg')
    return str(root)


def _coco_folders(root):
    """The demo shape generator's COCO set, laid out as the example expects
    (annotations/{train,val}.json, images in {train,val}/)."""
    # 5 images, batch 4: the last batch holds one image
    make_coco_shapes(str(root), num_train=5, num_val=2, image_size=(96, 96))
    for split in ('train', 'val'):
        shutil.copyfile(root / 'annotations' / f'instances_{split}.json',
                        root / 'annotations' / f'{split}.json')
    return str(root)


def _seg_folders(root):
    """ADE20K-layout regions of two classes: label 0 is "other" (the example's background)."""
    return make_ade20k_regions(str(root), num_train=6, num_val=2, image_size=(64, 80),
                               classes=('road', 'car'))


def _video_folders(root):
    """The motion-video generator's set, laid out as the example expects."""
    kinetics = make_motion_videos(str(root / 'generated'), num_train=6, num_val=2,
                                  num_frames=8)
    for split in ('train', 'val'):
        os.symlink(osp.join(kinetics, f'videos_{split}'), root / split)
        shutil.copyfile(osp.join(kinetics, f'kinetics_{split}_list_videos.txt'),
                        root / f'{split}.txt')
    return str(root)


#: The tests have no pretrained/EMOv2_5M_224.pth: the backbones start from random weights.
NO_PRETRAINED = 'backbone=dict(init_cfg=None)'
#: Per example: the tiny set, and what the test changes besides the data root and the
#: initialisation, to keep the run short.
TINY = {
    'emov2_5m_custom-cls.py': (_image_folders, [
        f'model = dict({NO_PRETRAINED}, head=dict(num_classes=3))',
        'train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict('
        'pipeline=[dict(type="LoadImageFromFile"), dict(type="RandomResizedCrop", scale=64), '
        'dict(type="PackInputs")]))',
        'val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict('
        'pipeline=[dict(type="LoadImageFromFile"), dict(type="ResizeEdge", scale=72), '
        'dict(type="CenterCrop", crop_size=64), dict(type="PackInputs")]))',
        'test_dataloader = val_dataloader',
        'train_cfg = dict(max_epochs=1)']),
    'retinanet_emov2_5m_custom-coco.py': (_coco_folders, [
        f'metainfo = dict(classes={COCO_SHAPES_CLASSES!r})',
        # a random head scores below the config's 0.05: keep every box for the metric
        f'model = dict({NO_PRETRAINED}, bbox_head=dict(num_classes=4), '
        'test_cfg=dict(score_thr=0.))',
        '_pipeline = [dict(type="LoadImageFromFile"), '
        'dict(type="LoadAnnotations", with_bbox=True), '
        'dict(type="Resize", scale=(96, 96), keep_ratio=True), dict(type="PackDetInputs")]',
        'train_dataloader = dict(num_workers=0, persistent_workers=False, '
        'dataset=dict(metainfo=metainfo, pipeline=_pipeline))',
        'val_dataloader = dict(num_workers=0, persistent_workers=False, '
        'dataset=dict(metainfo=metainfo, pipeline=_pipeline))',
        'test_dataloader = val_dataloader',
        'train_cfg = dict(max_epochs=1)']),
    'deeplabv3_emov2_5m_custom-seg.py': (_seg_folders, [
        f'model = dict({NO_PRETRAINED}, data_preprocessor=dict(size=(64, 64)))',
        'train_dataloader = dict(num_workers=0, persistent_workers=False, '
        'dataset=dict(pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), '
        'dict(type="RandomCrop", crop_size=(64, 64)), dict(type="PackSegInputs")]))',
        'val_dataloader = dict(num_workers=0, persistent_workers=False, '
        'dataset=dict(pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), '
        'dict(type="PackSegInputs")]))',
        'test_dataloader = val_dataloader',
        'train_cfg = dict(max_iters=2, val_interval=2)']),
    'vemo_5m_custom-video.py': (_video_folders, [
        f'model = dict({NO_PRETRAINED}, cls_head=dict(num_classes={len(MOTION_CLASSES)}))',
        'train_dataloader = dict(num_workers=0, persistent_workers=False)',
        'val_dataloader = dict(num_workers=0, persistent_workers=False)',
        'test_dataloader = dict(num_workers=0, persistent_workers=False)',
        'train_cfg = dict(max_epochs=1)']),
}


@pytest.mark.slow  # trains each example for an epoch (two iterations) on a CPU
@pytest.mark.parametrize('name', [
    name if name == 'emov2_5m_custom-cls.py' else pytest.param(name, marks=pytest.mark.extended)
    for name in sorted(TINY)])  # make test fine-tunes the classifier; test-all every example
def test_fine_tunes_on_a_tiny_set(name, tmp_path):
    """The example as shipped (batch size, drop_last, sampler, schedule type) trains and
    evaluates on a set smaller than one batch; only sizes and lengths are cut (TINY)."""
    from mmengine.runner import EpochBasedTrainLoop, Runner
    make, overrides = TINY[name]
    root = make(tmp_path / 'data')
    config = tmp_path / f'tiny_{name}'
    config.write_text('\n'.join([
        f"_base_ = [{osp.join(REPO, 'configs', 'finetune', name)!r}]",
        'default_hooks = dict(logger=dict(interval=1))',
        *overrides]) + '\n')
    cfg = prepare_train_config(str(config), work_dir=str(tmp_path / 'work'), data_root=root)
    shipped = _load(name).train_dataloader
    assert cfg.train_dataloader.batch_size == shipped.batch_size
    assert cfg.train_dataloader.get('drop_last') == shipped.get('drop_last')
    runner = Runner.from_cfg(cfg)
    runner.train()
    loop = runner.train_loop
    assert runner.iter == loop.max_iters > 0
    if isinstance(loop, EpochBasedTrainLoop):  # every sample used, a last smaller batch too
        samples = len(runner.train_dataloader.dataset)
        assert samples < shipped.batch_size or samples % shipped.batch_size
        per_epoch = -(-samples // shipped.batch_size)
        assert runner.iter == loop.max_epochs * per_epoch
    # validated at the end of training, with the example's evaluator
    key = {'cls': 'accuracy/top1', 'coco': 'coco/bbox_mAP', 'seg': 'mIoU',
           'video': 'acc/top1'}[name.split('custom-')[1][:-3]]
    metric = runner.message_hub.get_scalar(f'val/{key}').current()
    assert 0 <= metric <= 100, (key, metric)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) > 0 and np.isfinite(losses).all()
    if name == 'emov2_5m_custom-cls.py':
        _check_timm_loads_the_fine_tuned_classifier(runner)


def _check_timm_loads_the_fine_tuned_classifier(runner):
    """The fine-tuned checkpoint (3 classes) loads into timm's emov2_5m, head included."""
    import timm
    import torch

    import emo_mm.timm_models  # noqa: F401
    checkpoint = osp.join(runner.work_dir, 'epoch_1.pth')
    model = timm.create_model('emov2_5m', pretrained=True, pretrained_cfg_overlay=dict(
        file=checkpoint, num_classes=3), num_classes=3).eval()
    classifier = runner.model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), classifier(x, mode='tensor'), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize('name', ['emov2_5m_custom-cls.py', 'vemo_5m_custom-video.py'])
def test_a_last_batch_of_one_sample_trains(name):
    """A set of N x batch_size + 1 samples ends an epoch with a batch of one: no BatchNorm of
    these models sees a 1x1 map (the detection example's batch of one runs in
    test_fine_tunes_on_a_tiny_set)."""
    import torch
    cfg = _load(name)
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    model = build_model(cfg).train()
    if name.startswith('emov2'):
        from mmpretrain.structures import DataSample
        inputs, sample = torch.rand(1, 3, 64, 64), DataSample().set_gt_label(1)
    else:
        from mmaction.structures import ActionDataSample

        # (N, views, C, T, H, W), as the data preprocessor gives it
        inputs, sample = torch.rand(1, 1, 3, 4, 64, 64), ActionDataSample().set_gt_label(1)
    losses = model(inputs, [sample], mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    loss.backward()
    assert torch.isfinite(loss)


def test_classification_example_uses_every_image_and_no_ema():
    """drop_last off (the ImageNet recipe's drop_last=True gives no iteration on a set
    smaller than a batch); no EMA (its average would hold the starting weights after a
    short run); --auto-scale-lr scales from the example's own batch."""
    cfg = _load('emov2_5m_custom-cls.py')
    assert cfg.train_dataloader.drop_last is False
    assert _load('../emov2_5m_in1k.py').train_dataloader.drop_last is True
    assert not [h for h in cfg.custom_hooks if 'EMA' in h['type']]
    assert cfg.auto_scale_lr.base_batch_size == cfg.train_dataloader.batch_size
