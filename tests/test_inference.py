"""Inference by name (mmpretrain's model hub) and the toolboxes' inferencers on checkpoints
that emo_mm's training writes (the Runner's CheckpointHook: weights, optimizer state,
message hub), and on a checkpoint that carries code, which must not run."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from mmengine.config import Config

from emo_mm.demo.data import make_ade20k_regions, make_coco_shapes
from helpers import REPO, build_classifier

DATA = osp.join(REPO, 'data')
V2_WEIGHTS = 'https://github.com/zhangzjn/data/raw/main/emov2_pretrained_weights/'


def _metafile_names(filename):
    with open(osp.join(REPO, 'configs', 'metafiles', filename)) as f:
        return {m['Name']: m for m in yaml.safe_load(f)['Models']}


def test_registration_waits_for_the_model_hub():
    """Applying emo_mm's fixes reads no metafile; mmpretrain's first use of its hub does."""
    code = ('import emo_mm.models, emo_mm.compat\n'
            'emo_mm.compat.apply()\n'
            'from emo_mm import inference\n'
            'from mmpretrain.apis.model import ModelHub\n'
            'print(inference._registered, len(ModelHub._models_dict))\n'
            'import mmpretrain\n'
            "names = mmpretrain.list_models('emov2-5m')\n"
            'print(inference._registered, len(names))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split('\n')
    assert out[:2] == ['False 0', 'True 2'], out


def test_list_models_names_the_classifiers():
    import mmpretrain
    expected = set(_metafile_names('emov2_in1k.yml'))
    assert set(mmpretrain.list_models('*emov2*')) == expected
    assert {'emov2-5m_in1k', 'emov2-5m-kd_in1k', 'emov2-50m_in1k'} <= expected
    assert set(mmpretrain.list_models('emov1*')) == set(_metafile_names('emov1_in1k.yml'))
    assert mmpretrain.list_models('retinanet_emov2*') == []  # mmpretrain cannot build those


def test_get_model_by_name_builds_the_config():
    import mmpretrain
    listed = _metafile_names('emov1_in1k.yml')['emov1-2m_in1k']['Metadata']['Parameters']
    model = mmpretrain.get_model('emov1-2m_in1k')
    assert type(model.backbone).__name__ == 'EMO'
    assert sum(p.numel() for p in model.parameters()) == listed


def test_get_model_with_the_authors_weights(monkeypatch):
    """``pretrained=True`` loads the authors' released file (their key layout, here with
    random values) into the mmpretrain classifier: every tensor, hence the same logits."""
    import mmpretrain

    from emo_mm import inference
    from emo_mm.models import mmpretrain_to_authors
    source = build_classifier('1M').eval()
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.1 + 0.5)
    released = mmpretrain_to_authors(source.state_dict())
    requested = []

    def fetch(url):  # stands in for the download
        requested.append(url)
        return {'net_E': released, 'epoch': 300}

    monkeypatch.setattr(inference, 'fetch', fetch)
    model = mmpretrain.get_model('emov2-1m_in1k', pretrained=True).eval()
    assert requested == [V2_WEIGHTS + 'EMOv2_1M_224.pth']
    _assert_same_state(model.state_dict(), source.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x, mode='tensor'), source(x, mode='tensor'))


def test_unknown_name_is_a_clear_error():
    from emo_mm.inference import build_inferencer
    with pytest.raises(ValueError, match='neither a config file nor a model'):
        build_inferencer('retinanet_emov3_coco')


# ---------------------------------------------------------------------------------------
# Checkpoints written by a (one-iteration) training run.
# ---------------------------------------------------------------------------------------
def _train_one_iteration(cfg: Config, work_dir: str) -> tuple:
    """Trains ``cfg`` for one iteration the way tools/train.py does (emo_mm's training set-up,
    checkpoint hook included); returns (config file, checkpoint)."""
    from mmengine.runner import Runner

    from emo_mm.engine import prepare_train_config
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.indices = 2
    # Iteration-based: the segmentation configs sample without end (InfiniteSampler).
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    cfg.param_scheduler = []
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):  # test_*: the inferencers'
        cfg[key] = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=False)
    cfg.log_level = 'WARNING'
    # Beside the work dir: the Runner writes its own (processed) copy of the config there.
    config = osp.join(work_dir, 'model_config.py')
    cfg.dump(config)
    work_dir = osp.join(work_dir, 'work')
    Runner.from_cfg(prepare_train_config(config, work_dir=work_dir)).train()
    checkpoint = osp.join(work_dir, 'iter_1.pth')
    assert 'message_hub' in torch.load(checkpoint, weights_only=False)  # a full checkpoint
    return config, checkpoint


def _assert_same_state(state, expected):
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key].cpu(), value.cpu()), key


def _assert_weights_loaded(model, checkpoint):
    # The test's own file, so it may unpickle everything.
    _assert_same_state(model.state_dict(),
                       torch.load(checkpoint, weights_only=False)['state_dict'])


@pytest.fixture(scope='module')
def detector(tmp_path_factory):
    root = make_coco_shapes(osp.join(DATA, 'demo_coco'))
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'retinanet_emov2_1m_demo.py'))
    cfg.model.backbone.init_cfg = None
    cfg.train_dataloader.dataset.data_root = root
    config, checkpoint = _train_one_iteration(cfg, str(tmp_path_factory.mktemp('det')))
    return config, checkpoint, osp.join(root, 'val', sorted_images(osp.join(root, 'val'))[0])


@pytest.fixture(scope='module')
def segmentor(tmp_path_factory):
    root = make_ade20k_regions(osp.join(DATA, 'demo_ade20k'))
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'deeplabv3_emov2_1m_demo.py'))
    cfg.train_dataloader.dataset.data_root = root
    config, checkpoint = _train_one_iteration(cfg, str(tmp_path_factory.mktemp('seg')))
    folder = osp.join(root, 'images', 'validation')
    return config, checkpoint, osp.join(folder, sorted_images(folder)[0])


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    """EMOv2-1M classifier (2 classes) trained on an image folder of the shapes set."""
    source = osp.join(make_coco_shapes(osp.join(DATA, 'demo_coco')), 'val')
    folder = tmp_path_factory.mktemp('images')
    for index, name in enumerate(sorted_images(source)[:4]):
        label_dir = folder / ('first' if index % 2 == 0 else 'second')
        label_dir.mkdir(exist_ok=True)
        shutil.copy(osp.join(source, name), label_dir / name)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'emov2_1m_in1k.py'))
    cfg.model.head.num_classes = 2
    cfg.train_dataloader.dataset = dict(
        type='CustomDataset', data_root=str(folder),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=64),
                  dict(type='PackInputs')])
    config, checkpoint = _train_one_iteration(cfg, str(tmp_path_factory.mktemp('cls')))
    image = str(next((folder / 'first').iterdir()))
    return config, checkpoint, image


def sorted_images(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(('.png', '.jpg')))


def test_det_inferencer_and_init_detector(detector):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    config, checkpoint, image = detector
    inferencer = DetInferencer(model=config, weights=checkpoint, device='cpu')
    _assert_weights_loaded(inferencer.model, checkpoint)
    prediction = inferencer(image, return_datasamples=False)['predictions'][0]
    assert len(prediction['labels']) == len(prediction['scores']) == len(prediction['bboxes'])
    assert set(prediction['labels']) <= set(range(4))
    model = init_detector(config, checkpoint, device='cpu')
    _assert_weights_loaded(model, checkpoint)
    assert model.dataset_meta['classes'] == ('circle', 'square', 'triangle', 'star')
    assert len(inference_detector(model, image).pred_instances) == len(prediction['labels'])


def test_seg_inferencer(segmentor):
    from mmseg.apis import MMSegInferencer
    config, checkpoint, image = segmentor
    inferencer = MMSegInferencer(model=config, weights=checkpoint, device='cpu')
    _assert_weights_loaded(inferencer.model, checkpoint)
    result = inferencer(image, return_datasamples=True)
    labels = result.pred_sem_seg.data
    assert labels.shape[-2:] == (160, 200) and int(labels.max()) < 5


def test_image_classification_inferencer(classifier):
    from mmpretrain import ImageClassificationInferencer
    config, checkpoint, image = classifier
    inferencer = ImageClassificationInferencer(model=config, pretrained=checkpoint,
                                               device='cpu')
    _assert_weights_loaded(inferencer.model, checkpoint)
    (prediction, ) = inferencer(image)
    assert prediction['pred_class'] in ('first', 'second')
    assert 0 <= prediction['pred_score'] <= 1


def test_build_inferencer_picks_the_toolbox(detector, classifier):
    from mmdet.apis import DetInferencer
    from mmpretrain import ImageClassificationInferencer

    from emo_mm.inference import build_inferencer
    assert isinstance(build_inferencer(detector[0], detector[1], 'cpu'), DetInferencer)
    assert isinstance(build_inferencer(classifier[0], classifier[1], 'cpu'),
                      ImageClassificationInferencer)


class _Payload:
    """Unpickling this creates a file: proof that code in a checkpoint ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('loader', ['DetInferencer', 'init_detector', 'MMSegInferencer',
                                    'ImageClassificationInferencer'])
def test_checkpoint_with_code_does_not_run(loader, detector, segmentor, classifier, tmp_path):
    marker = tmp_path / 'code_ran'
    config, checkpoint, _ = {'MMSegInferencer': segmentor,
                             'ImageClassificationInferencer': classifier}.get(loader, detector)
    state = torch.load(checkpoint, weights_only=False)
    state['meta']['note'] = _Payload(str(marker))
    bad = tmp_path / 'bad.pth'
    torch.save(state, bad)
    with pytest.raises(Exception):
        if loader == 'DetInferencer':
            from mmdet.apis import DetInferencer
            DetInferencer(model=config, weights=str(bad), device='cpu')
        elif loader == 'init_detector':
            from mmdet.apis import init_detector
            init_detector(config, str(bad), device='cpu')
        elif loader == 'MMSegInferencer':
            from mmseg.apis import MMSegInferencer
            MMSegInferencer(model=config, weights=str(bad), device='cpu')
        else:
            from mmpretrain import ImageClassificationInferencer
            ImageClassificationInferencer(model=config, pretrained=str(bad), device='cpu')
    assert not marker.exists()
