"""The fine-tuning examples of configs/finetune/ (README "Fine-tuning on your own data")
build, aim at the user's classes and data, and pass the data check on small sets."""
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from emo_mm.apis import build_model, load_config
from emo_mm.datasets.checks import check_data
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
