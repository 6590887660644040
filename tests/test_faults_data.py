"""Data faults: what the toolboxes' loaders would silently drop or change is seen up front.

Each case builds the toolbox's own data set or transform next to the check, to show that
the check reads the data the way the toolbox does (mmdet's ``CocoDataset``, mmseg's
``LoadAnnotations``, mmaction2's ``VideoDataset``, mmpretrain's ``CustomDataset``). All
in-process, on copies of the generated demo sets.
"""
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image

from emo_mm.apis import load_config
from emo_mm.checks.data import DataError, check_data
from emo_mm.demo.data import make_ade20k_regions, make_coco_shapes, make_motion_videos
from emo_mm.engine import prepare_train_config, run_cli
from fault_helpers import DEMO, config_with
from helpers import REPO, load_tool


@pytest.fixture(autouse=True)
def stamps(tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_MM_CACHE_DIR', str(tmp_path / 'stamps'))


@pytest.fixture
def coco(tmp_path):
    root = tmp_path / 'coco'
    shutil.copytree(make_coco_shapes(osp.join(REPO, 'data', 'demo_coco')), root)
    return root


def _coco_config(tmp_path, root):
    return config_with(tmp_path, DEMO, data_root=repr(str(root) + '/'),
                       train_dataloader='dict(dataset=dict(data_root=data_root))',
                       val_dataloader='dict(dataset=dict(data_root=data_root))',
                       val_evaluator="dict(ann_file=data_root + 'annotations/instances_val.json')",
                       model='dict(backbone=dict(init_cfg=None))')


def _edit_json(path, edit):
    with open(path) as f:
        content = json.load(f)
    edit(content)
    with open(path, 'w') as f:
        json.dump(content, f)


def _mmdet_train_set(config):
    """mmdet's CocoDataset of the config's training split, built by mmdet itself."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope('mmdet')
    dataset = load_config(config).train_dataloader.dataset
    return DATASETS.build(dict(dataset, pipeline=[], filter_cfg=None))


# ---------------------------------------------------------------------------------------
# COCO.
# ---------------------------------------------------------------------------------------
def test_duplicate_coco_image_ids(coco, tmp_path):
    ann_file = coco / 'annotations' / 'instances_train.json'

    def duplicate(content):  # a 97th record: another image under image 1's id
        content['images'].append(dict(content['images'][1], id=content['images'][0]['id']))

    _edit_json(ann_file, duplicate)
    config = _coco_config(tmp_path, coco)
    assert len(_mmdet_train_set(config)) == 96  # of 97 records: mmdet drops one silently
    with pytest.raises(DataError) as err:
        check_data(load_config(config), ('train', ))
    assert str(err.value) == (
        f"'{ann_file}': 1 image ids are used by more than one image (id 1: '00000.png', "
        "'00001.png'). mmdet would keep one image per id, drop the other 1 and give their boxes "
        "to the one it keeps. Give every image its own id (and point each annotation's "
        'image_id at its image).')


def test_coco_boxes_mmdet_drops_or_keeps_unclipped(coco, tmp_path, capsys, monkeypatch):
    ann_file = coco / 'annotations' / 'instances_train.json'

    def damage(content):
        boxes = {0: [10, 10, 0, 5], 1: [10, 10, 30, -3], 2: [10, 10, 0.5, 20],
                 3: [200, 10, 20, 20], 4: [-10, 100, 40, 40], 5: [100, 110, 40, 40]}
        for index, box in boxes.items():
            content['annotations'][index]['bbox'] = box

    _edit_json(ann_file, damage)
    config = _coco_config(tmp_path, coco)
    dataset = _mmdet_train_set(config)
    kept = sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))
    assert kept == 253 - 4  # what mmdet keeps, to compare with the counts below
    warnings = []
    check_data(load_config(config), ('train', ), warn=warnings.append)
    drop = (f"'{ann_file}': mmdet drops 4 of its 253 boxes without a word: 2 degenerate (width "
            "or height <= 0), e.g. annotations[0] (id 1, '00000.png', bbox [10, 10, 0, 5]), "
            "annotations[1] (id 2, '00000.png', bbox [10, 10, 30, -3]); 1 narrower or lower "
            "than 1 pixel, e.g. annotations[2] (id 3, '00000.png', bbox [10, 10, 0.5, 20]); 1 "
            "entirely outside their image, e.g. annotations[3] (id 4, '00001.png', bbox [200, "
            "10, 20, 20]). Fix or remove them to train on what you annotated.")
    outside = (f"'{ann_file}': 2 of its 253 boxes reach outside their image and are used "
               "unclipped (box targets beyond the image border), e.g. annotations[4] (id 5, "
               "'00001.png', bbox [-10, 100, 40, 40]), annotations[5] (id 6, '00002.png', bbox "
               "[100, 110, 40, 40]). Clip them to the image.")
    assert warnings == [drop, outside]
    again = []
    check_data(load_config(config), ('train', ), warn=again.append)  # skipped: stamp
    assert again == warnings  # ... and the warnings are repeated
    monkeypatch.setattr('sys.argv', ['check_data.py', config, '--splits', 'train'])
    run_cli(load_tool('analysis_tools/check_data').main)
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == [f'warning: {drop}', f'warning: {outside}',
                        f'{config}: train data checked (every sample decoded); 2 warnings '
                        '(above).']


# ---------------------------------------------------------------------------------------
# Images: decoded in full.
# ---------------------------------------------------------------------------------------
def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_truncated_images_are_found_and_listed(coco, tmp_path, capsys, monkeypatch):
    config = _coco_config(tmp_path, coco)
    images = sorted((coco / 'train').iterdir())
    for path in images[-2:]:
        _truncate(path)
    check_data(load_config(config), ('train', ), decode=False)  # headers only: unnoticed
    with pytest.raises(DataError) as err:
        check_data(load_config(config), ('train', ))
    assert str(err.value).startswith(f"image '{images[-2]}' cannot be decoded (")
    assert str(err.value).endswith('(2 of the 96 train COCO images have problems, python '
                                   'tools/analysis_tools/check_data.py CONFIG lists them all)')
    monkeypatch.setattr('sys.argv', ['check_data.py', config, '--splits', 'train'])
    with pytest.raises(SystemExit) as exit_code:
        run_cli(load_tool('analysis_tools/check_data').main)
    assert exit_code.value.code == 2
    captured = capsys.readouterr()
    listed = [line for line in captured.out.splitlines() if line.startswith('problem: ')]
    assert [line.split("'")[1] for line in listed] == [str(p) for p in images[-2:]]
    assert captured.err.strip().endswith('listed above)')
    images[-1].write_bytes((coco / 'train' / images[0].name).read_bytes())
    images[-2].write_bytes(images[-1].read_bytes())
    lines = []
    check_data(load_config(config), ('train', ), report=lines.append)
    assert lines[-1].startswith('CocoDataset (train): 96 samples decoded in ')
    check_data(load_config(config), ('train', ), report=lines.append)
    assert 'unchanged since it last passed, skipped' in lines[-1]


def test_truncated_jpeg_in_an_image_folder(tmp_path):
    root = tmp_path / 'flowers'
    rng = np.random.default_rng(0)
    for name in ('daisy', 'rose'):
        (root / 'train' / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                root / 'train' / name / f'{i}.jpg', quality=95)
    bad = root / 'train' / 'rose' / '2.jpg'
    _truncate(bad, keep=0.5)
    from mmengine.config import Config
    cfg = Config(dict(default_scope='mmpretrain', model=dict(head=dict(num_classes=2)),
                      train_dataloader=dict(batch_size=2, dataset=dict(
                          type='CustomDataset', data_root=str(root), data_prefix='train'))))
    check_data(cfg, ('train', ), decode=False)
    with pytest.raises(DataError, match=rf"^image '{bad}' cannot be decoded \(image file is "
                       r'truncated'):
        check_data(cfg, ('train', ))


# ---------------------------------------------------------------------------------------
# Label maps, as mmseg reads them.
# ---------------------------------------------------------------------------------------
@pytest.fixture
def ade(tmp_path):
    root = tmp_path / 'ade'
    shutil.copytree(make_ade20k_regions(osp.join(REPO, 'data', 'demo_ade20k')), root)
    return root


def test_palette_label_maps(ade, tmp_path):
    config = config_with(tmp_path, osp.join(REPO, 'configs', 'demo', 'deeplabv3_emov2_1m_demo.py'),
                         data_root=repr(str(ade)),
                         train_dataloader='dict(dataset=dict(data_root=data_root))',
                         val_dataloader='dict(dataset=dict(data_root=data_root))',
                         model='dict(backbone=dict(init_cfg=None))')
    label = sorted((ade / 'annotations' / 'training').iterdir())[-1]
    values = np.array(Image.open(label))
    palette = Image.fromarray(values, mode='P')
    palette.putpalette(list(np.random.default_rng(0).integers(0, 256, 768)))
    palette.save(label)
    from mmengine.registry import TRANSFORMS, init_default_scope
    init_default_scope('mmseg')
    loaded = TRANSFORMS.build(dict(type='LoadAnnotations'))(
        dict(seg_map_path=str(label), reduce_zero_label=True, seg_fields=[]))['gt_seg_map']
    expected = values.astype(np.int64) - 1
    expected[values == 0] = 255
    assert (loaded == expected).all()  # mmseg reads the indices, not the colours
    check_data(load_config(config), ('train', ))  # so the check passes it
    deep = values.astype(np.uint16)
    deep[0, 0] = 300
    Image.fromarray(deep).save(label)  # 16 bits: mmseg casts to 8, 300 becomes 44
    with pytest.raises(DataError, match=rf"label map '{label}' holds values up to 300 "
                       r'\(uint16\); mmseg casts label maps to 8 bits'):
        check_data(load_config(config), ('train', ))


# ---------------------------------------------------------------------------------------
# Video lists, as mmaction2 parses them.
# ---------------------------------------------------------------------------------------
@pytest.fixture
def kinetics(tmp_path):
    root = tmp_path / 'kinetics'
    shutil.copytree(make_motion_videos(osp.join(REPO, 'data', 'demo_kinetics')), root)
    return root


def _video_config(root):
    from emo_mm.checks.data import set_data_root
    cfg = load_config(osp.join(REPO, 'configs', 'demo', 'vemo_demo.py'))
    set_data_root(cfg, str(root))
    return cfg


@pytest.mark.parametrize('extra,detail', [
    (' 1', "it has 3 fields, not 2 (mmaction2 would fail with \"too many values to unpack\"; a "
           'doubled delimiter counts as an empty field). For several labels per video set '
           'multi_class=True and num_classes. Expected "<video> <label>".'),
    (' 99', 'it has 3 fields, not 2'),
    ('\n', 'it is blank'),
])
def test_video_list_lines(kinetics, extra, detail):
    listing = kinetics / 'kinetics_train_list_videos.txt'
    lines = listing.read_text().splitlines()
    lines[3] += extra
    listing.write_text('\n'.join(lines) + '\n')
    number = 4 if extra != '\n' else 5
    with pytest.raises(DataError) as err:
        check_data(_video_config(kinetics), ('train', ))
    assert str(err.value).startswith(f"'{listing}' line {number} (")
    assert detail in str(err.value)
    assert 'label 99' not in str(err.value)
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope('mmaction')
    with pytest.raises(ValueError if extra != '\n' else AssertionError):
        dataset = DATASETS.build(dict(type='VideoDataset', ann_file=str(listing), pipeline=[],
                                      data_prefix=dict(video=str(kinetics / 'videos_train'))))
        assert all(osp.isfile(dataset.get_data_info(i)['filename'])
                   for i in range(len(dataset)))


# ---------------------------------------------------------------------------------------
# Image folders: classes and batches.
# ---------------------------------------------------------------------------------------
def _image_folders(root, classes, per_class):
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label in range(classes):
            folder = root / split / f'class{label}'
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                    folder / f'{i}.jpg')


def _finetune(tmp_path, root, **entries):
    return config_with(tmp_path, osp.join(REPO, 'configs', 'finetune', 'emov2_5m_custom-cls.py'),
                       data_root=repr(str(root)), model='dict(backbone=dict(init_cfg=None))',
                       **entries)


def test_image_folders_against_num_classes(tmp_path):
    root = tmp_path / 'images'
    _image_folders(root, classes=3, per_class=2)
    config = _finetune(tmp_path, root,
                       train_dataloader='dict(batch_size=2, dataset=dict(data_root=data_root))',
                       val_dataloader='dict(batch_size=2, dataset=dict(data_root=data_root))')
    with pytest.raises(DataError) as err:
        check_data(load_config(config), ('train', ))
    assert str(err.value) == (
        f"CustomDataset for train ({root / 'train'}) has 3 class folders (class0, class1, class2) "
        'but model.head.num_classes=10. Set model.head.num_classes=3 (or --cfg-options), or add '
        'the missing class folders.')
    cfg = load_config(config)
    cfg.model.head.num_classes = 3
    check_data(cfg, ('train', 'val'))


def test_split_smaller_than_one_batch(tmp_path, capsys):
    root = tmp_path / 'images'
    _image_folders(root, classes=10, per_class=1)
    config = _finetune(tmp_path, root, train_dataloader='dict(batch_size=32, drop_last=True, '
                       'dataset=dict(data_root=data_root))',
                       val_dataloader='dict(batch_size=2, dataset=dict(data_root=data_root))')
    message = ('train_dataloader: the train set has 10 samples, fewer than one batch of 32, and '
               'drop_last=True drops that incomplete batch, so there would be no iteration at '
               'all. Lower train_dataloader.batch_size to 10 or less, set '
               'train_dataloader.drop_last=False, or add data.')
    with pytest.raises(SystemExit) as exit_code:
        run_cli(lambda: prepare_train_config(config, work_dir=str(tmp_path / 'w')))
    assert exit_code.value.code == 2
    assert capsys.readouterr().err == f'error: {message}\n'
    from emo_mm.engine.worklock import release_work_dir
    release_work_dir(str(tmp_path / 'w'))
    with pytest.raises(DataError, match='Lower train_dataloader.batch_size to 5 or less'):
        os.environ['WORLD_SIZE'] = '2'  # two processes: 5 samples each
        try:
            check_data(load_config(config), ('train', ))
        finally:
            del os.environ['WORLD_SIZE']
    cfg = load_config(config)
    cfg.train_dataloader.drop_last = False
    check_data(cfg, ('train', ))
    cfg.train_dataloader.drop_last = True
    cfg.train_dataloader.dataset = dict(type='RepeatDataset', times=4,
                                        dataset=cfg.train_dataloader.dataset)
    check_data(cfg, ('train', ))  # 40 samples
