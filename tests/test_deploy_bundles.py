"""Deploy bundles (tools/deploy.py, emo_mm.deploy) reproduce the PyTorch models.

For each task family a demo-trained checkpoint (the session's shared training,
tests/trained_models.py) is exported with tools/deploy.py; then

* the toolbox's metric of the bundle, run by its test loop (tools/test.py's path, in this
  process), equals the PyTorch model's (the same test loop right after training, whose
  predictions the training run keeps) within 0.1 point, and the predictions agree
  (every PyTorch box matched by a bundle box of its label at IoU >= 0.99 with a score
  within 1e-3, apart from boxes tied at the thresholds; label maps equal on >= 99.9% of
  the pixels; class scores within 1e-4 relative);
* ``Predictor`` on image / video files equals the PyTorch model run through the toolbox's
  test pipeline, on the test files and on sizes the test set does not have;
* one bundle is evaluated through the real ``tools/test.py`` command line, and one runs in
  a process where torch and the OpenMMLab packages cannot be imported.

The numpy preprocessing is checked against the toolboxes' pipelines and data
preprocessors (exact tensors) without any model; bad bundles and inputs get one-line errors.
"""
import glob
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

from emo_mm.deploy import BundleError, Predictor
from emo_mm.deploy.compare import (PIXEL_AGREEMENT, SCORE_RELATIVE, label_agreement,
                                   match_detections, relative_error)
from helpers import REPO, load_tool

pytest.importorskip('onnxruntime', reason='onnxruntime is a test dependency (requirements)')

#: Per family: the shared training, its task, the metric compared (scale: points).
FAMILIES = {
    'retinanet_emov2': ('detection', 'coco/bbox_mAP', 100),
    'ssdlite_emov2': ('detection', 'coco/bbox_mAP', 100),
    'deeplabv3_emov2': ('segmentation', 'mIoU', 1),
    'uemo': ('segmentation', 'mDice', 1),
    'classifier_emov2': ('classification', 'accuracy/top1', 1),
    'vemo': ('video', 'acc/top1', 100),
}
#: The shapes classifier trains 40 epochs: its family runs in make test-all.
FAMILY_PARAMS = [pytest.param(name, marks=pytest.mark.extended) if name == 'classifier_emov2'
                 else name for name in FAMILIES]


# ---------------------------------------------------------------------------------------
# Shared: one bundle per family (tools/deploy.py), the in-process test loop.
# ---------------------------------------------------------------------------------------
class Bundles:
    """Exports each family once per module (through tools/deploy.py's main)."""

    def __init__(self, root, demo_training):
        self.root = root
        self.demo_training = demo_training
        self.made = {}

    def __call__(self, name):
        if name not in self.made:
            run = self.demo_training(name)
            out = osp.join(self.root, name)
            cwd = os.getcwd()
            os.chdir(REPO)
            try:
                status = load_tool('deploy').main([run.config, run.checkpoint, '--out', out])
            finally:
                os.chdir(cwd)
            assert status == 0, f'tools/deploy.py reported a mismatch for {name}'
            self.made[name] = (run, out)
        return self.made[name]


@pytest.fixture(scope='module')
def bundles(tmp_path_factory, demo_training):
    return Bundles(str(tmp_path_factory.mktemp('bundles')), demo_training)


def evaluate(config, weights, work_dir, bundle=False):
    """tools/test.py's evaluation in this process: (metrics, dumped data samples)."""
    from mmengine.runner import Runner

    from emo_mm.deploy.runner import prepare_bundle_test_config
    from emo_mm.engine import prepare_test_config
    out = osp.join(work_dir, 'predictions.pkl')
    cfg = prepare_test_config(config, None if bundle else weights, work_dir=work_dir, out=out)
    if bundle:
        prepare_bundle_test_config(cfg, config, weights)
    cfg.log_level = 'WARNING'
    metrics = Runner.from_cfg(cfg).test()
    with open(out, 'rb') as f:
        return metrics, pickle.load(f)


def compare_samples(task, reference, deployed, post):
    """Per-sample agreement of two dumped prediction lists; returns a summary."""
    assert len(reference) == len(deployed)
    summary = dict(boxes=0, matched=0, exempt=0, unmatched=0, pixels=0, equal=0, score_error=0.)
    for ref, dep in zip(reference, deployed):
        source = ref.get('img_path', ref.get('filename'))
        assert source == dep.get('img_path', dep.get('filename'))
        if task == 'detection':
            as_dict = lambda s: {k: s['pred_instances'][b].numpy() for k, b in  # noqa: E731
                                 (('boxes', 'bboxes'), ('scores', 'scores'),
                                  ('labels', 'labels'))}
            match = match_detections(as_dict(ref), as_dict(dep), post['score_thr'],
                                     post['iou_threshold'])
            summary['boxes'] += match['total']
            summary['matched'] += match['matched']
            summary['exempt'] += match['exempt']
            summary['unmatched'] += len(match['unmatched'])
        elif task == 'segmentation':
            a, b = ref['pred_sem_seg']['data'].numpy(), dep['pred_sem_seg']['data'].numpy()
            summary['pixels'] += a.size
            summary['equal'] += int((a == b).sum())
        else:
            error = relative_error(ref['pred_score'].numpy(), dep['pred_score'].numpy())
            summary['score_error'] = max(summary['score_error'], error)
    return summary


# ---------------------------------------------------------------------------------------
# Parity on the demo test sets, with the toolboxes' own metrics.
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('name', FAMILY_PARAMS)
def test_bundle_metric_and_predictions_match_pytorch(name, bundles, tmp_path, monkeypatch):
    task, key, points = FAMILIES[name]
    run, bundle = bundles(name)
    monkeypatch.chdir(REPO)
    torch_metrics = run.after
    with open(run.predictions, 'rb') as f:
        torch_samples = pickle.load(f)
    bundle_metrics, bundle_samples = evaluate(run.config, bundle, str(tmp_path / 'onnx'),
                                              bundle=True)
    post = json.load(open(osp.join(bundle, 'deploy.json')))['postprocess']
    summary = compare_samples(task, torch_samples, bundle_samples, post)
    pt, dep = torch_metrics.get(key, 0.) * points, bundle_metrics.get(key, 0.) * points
    print(f'\n{name}: {key} PyTorch {pt:.2f}, bundle {dep:.2f} (points); {summary}')
    assert abs(pt - dep) <= 0.1
    # The learning tests' criterion (SSDLite's 6 demo epochs reach a few mAP@0.5 points
    # and under one mAP point with some pretrained backbones).
    learned = (torch_metrics['coco/bbox_mAP_50'] * points if task == 'detection' else pt)
    assert learned > {'detection': 1., 'segmentation': 20., 'classification': 40.,
                      'video': 40.}[task], 'the trained model must have learned for the test'
    if task == 'detection':
        assert summary['boxes'] > 0 and summary['unmatched'] == 0, summary
        assert summary['matched'] >= 0.98 * summary['boxes'], summary
    elif task == 'segmentation':
        assert summary['equal'] >= PIXEL_AGREEMENT * summary['pixels'], summary
    else:
        assert summary['score_error'] <= SCORE_RELATIVE, summary


def _resized_copy(path, folder, size):
    """A test image at another size (w, h), written as PNG."""
    image = cv2.resize(cv2.imread(path), size, interpolation=cv2.INTER_AREA)
    out = osp.join(folder, f'{osp.splitext(osp.basename(path))[0]}_{size[0]}x{size[1]}.png')
    cv2.imwrite(out, image)
    return out


#: Test files per family (relative to the repository) and extra sizes (w, h) to try.
FILES = {
    'retinanet_emov2': ('data/demo_coco/val/*.png', [(210, 150), (97, 131)]),
    'ssdlite_emov2': ('data/demo_coco/val/*.png', [(210, 150)]),
    'deeplabv3_emov2': ('data/demo_ade20k/images/validation/*.jpg', [(150, 111)]),
    'uemo': ('data/demo_hrf/images/validation/*.png', [(131, 97)]),
    'classifier_emov2': ('data/demo_shapes_cls/val/*.png', [(97, 80)]),
    'vemo': ('data/demo_kinetics/videos_val/*.mp4', []),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', FAMILY_PARAMS)
def test_predictor_matches_pytorch_pipeline(name, bundles, tmp_path, monkeypatch):
    """Predictor(DIR)(file) equals the PyTorch model run by the toolbox's test pipeline."""
    from mmengine.config import Config

    from emo_mm.deploy.export import build_model
    from emo_mm.deploy.reference import inference_pipeline, torch_predict
    from emo_mm.models import switch_to_deploy
    task = FAMILIES[name][0]
    run, bundle = bundles(name)
    monkeypatch.chdir(REPO)
    pattern, sizes = FILES[name]
    files = sorted(glob.glob(pattern))[:3]
    files += [_resized_copy(files[0], str(tmp_path), size) for size in sizes]
    cfg = Config.fromfile(run.config)
    model = build_model(cfg, run.checkpoint)
    switch_to_deploy(model, fold_batch_norm=True)
    pipeline = inference_pipeline(cfg)
    predictor = Predictor(bundle)
    post = predictor.manifest['postprocess']
    for path in files:
        deployed = predictor(path, topk=None)
        reference = torch_predict(model, cfg, path, task, predictor.classes, pipeline=pipeline)
        if task == 'detection':
            match = match_detections(reference, deployed, post['score_thr'],
                                     post['iou_threshold'])
            assert not match['unmatched'], (path, match)
            assert deployed['classes'] == [predictor.classes[i] for i in deployed['labels']]
        elif task == 'segmentation':
            assert deployed['label_map'].shape == cv2.imread(path).shape[:2]
            assert label_agreement(reference['label_map'],
                                   deployed['label_map']) >= PIXEL_AGREEMENT, path
        else:
            order = np.argsort(deployed['labels'])
            assert relative_error(reference['all_scores'],
                                  deployed['scores'][order]) <= SCORE_RELATIVE, path
            assert deployed['classes'][0] == reference['classes'][0]


# ---------------------------------------------------------------------------------------
# The real command line, and a process without torch.
# ---------------------------------------------------------------------------------------
def _metric_line(text, key):
    for line in text.splitlines():
        if key in line:
            return line
    return None


@pytest.mark.slow
@pytest.mark.demo_family('retinanet_emov2')
def test_test_tool_command_line_evaluates_a_bundle(bundles, tmp_path):
    run, bundle = bundles('retinanet_emov2')
    result = subprocess.run(
        [sys.executable, 'tools/test.py', run.config, bundle, '--work-dir', str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Evaluating the bundle' in result.stdout
    line = _metric_line(result.stdout + result.stderr, 'coco/bbox_mAP:')
    assert line is not None, result.stdout[-2000:]
    value = float(line.split('coco/bbox_mAP:')[1].split()[0])
    assert value > 0.01


#: Makes `import torch` (and the OpenMMLab packages) fail, as on a device without them.
BLOCKER = textwrap.dedent('''
    import importlib.abc, sys
    BLOCKED = ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain',
               'mmaction')
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ImportError(f'{name} is blocked: this process has no torch')
    sys.meta_path.insert(0, Blocker())
''')

NO_TORCH_SCRIPT = BLOCKER + textwrap.dedent('''
    import json, sys
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit('the blocker failed: torch imported')
    from emo_mm.deploy import Predictor
    predictor = Predictor(sys.argv[1])
    out = {}
    for path in sys.argv[2:]:
        result = predictor(path, topk=None)
        out[path] = {k: (v.tolist() if hasattr(v, 'tolist') else v) for k, v in result.items()}
    blocked = [m for m in sys.modules if m.split('.')[0] in ('torch', 'mmengine', 'mmcv')]
    print(json.dumps(dict(results=out, modules=blocked)))
''')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['retinanet_emov2', 'deeplabv3_emov2'])
def test_predictor_runs_without_torch(name, bundles, tmp_path):
    run, bundle = bundles(name)
    pattern = FILES[name][0]
    files = sorted(glob.glob(osp.join(REPO, pattern)))[:2]
    script = tmp_path / 'device.py'
    script.write_text(NO_TORCH_SCRIPT)
    result = subprocess.run([sys.executable, str(script), bundle, *files], cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['modules'] == []
    predictor = Predictor(bundle)  # the same bundle in this process (with torch around)
    for path in files:
        device, here = report['results'][path], predictor(path, topk=None)
        if 'boxes' in here:
            assert len(device['boxes']) == len(here['boxes']) > 0
            np.testing.assert_allclose(device['boxes'], here['boxes'], rtol=0, atol=1e-4)
            assert device['classes'] == here['classes']
        else:
            np.testing.assert_array_equal(device['label_map'], here['label_map'])
            assert len(np.unique(here['label_map'])) > 1


# ---------------------------------------------------------------------------------------
# Preprocessing: the numpy replay equals the toolboxes' pipelines (no model needed).
# ---------------------------------------------------------------------------------------
PIPELINE_CONFIGS = {
    'configs/demo/retinanet_emov2_1m_demo.py': ('data/demo_coco/val/*.png', 'coco'),
    'configs/demo/ssdlite_emov2_1m_demo.py': ('data/demo_coco/val/*.png', 'coco'),
    'configs/demo/deeplabv3_emov2_1m_demo.py': ('data/demo_ade20k/images/validation/*.jpg',
                                                'ade20k'),
    'configs/demo/emov2_1m_shapes-cls_demo.py': ('data/demo_shapes_cls/val/*.png',
                                                 'shapes_cls'),
    'configs/emov2_1m_in1k.py': (None, None),  # Pillow bicubic ResizeEdge + CenterCrop
    'configs/retinanet_emov2_1m_coco.py': (None, None),  # keep_ratio (1333, 800), pad 32
}


def _make_data(kind):
    from emo_mm.demo import data
    make = dict(coco=data.make_coco_shapes, ade20k=data.make_ade20k_regions,
                shapes_cls=data.make_shapes_classification, kinetics=data.make_motion_videos)
    if kind:
        make[kind]()


@pytest.mark.parametrize('config', list(PIPELINE_CONFIGS))
def test_preprocessing_equals_the_toolbox_pipeline(config, tmp_path, monkeypatch):
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import MODELS

    from emo_mm.deploy.export import model_config, normalization_spec, task_of, test_pipeline
    from emo_mm.deploy.preprocess import ImagePreprocessor, pipeline_spec
    from emo_mm.deploy.reference import inference_pipeline
    monkeypatch.chdir(REPO)
    pattern, kind = PIPELINE_CONFIGS[config]
    _make_data(kind)
    files = sorted(glob.glob(pattern))[:2] if pattern else []
    rng = np.random.RandomState(0)
    for size in ((131, 97), (480, 333)):  # odd sizes: rescale rounding, padding
        path = str(tmp_path / f'random_{size[0]}x{size[1]}.png')
        cv2.imwrite(path, rng.randint(0, 256, (size[1], size[0], 3)).astype(np.uint8))
        files.append(path)
    cfg = Config.fromfile(config)
    task = task_of(cfg)
    pipeline = inference_pipeline(cfg)
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    preprocessor_cfg = dict(model_config(cfg)['data_preprocessor'])
    preprocessor_cfg.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
    preprocessor = MODELS.build(preprocessor_cfg)

    class Holder(torch.nn.Module):
        data_preprocessor = preprocessor

    spec = dict(steps=pipeline_spec(test_pipeline(cfg), task),
                **normalization_spec(Holder(), task))
    replay = ImagePreprocessor(spec)
    for path in files:
        data = preprocessor(pseudo_collate([pipeline(dict(img_path=path))]), False)
        sample = data['data_samples'][0]
        mine = replay(cv2.imread(path))
        np.testing.assert_array_equal(mine['inputs'], data['inputs'].numpy(), err_msg=path)
        assert tuple(mine['img_shape']) == tuple(sample.img_shape), path
        if 'scale_factor' in sample:
            assert tuple(mine['scale_factor']) == tuple(sample.scale_factor), path


def test_clip_preprocessing_equals_mmaction(tmp_path, monkeypatch):
    """V-EMO's test pipeline (UniformSample, Resize, ThreeCrop, NCTHW) and the single-frame
    control's (SampleFrames), on decord-decoded frames."""
    import decord
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import MODELS, init_default_scope

    from emo_mm.deploy.export import normalization_spec, test_pipeline
    from emo_mm.deploy.preprocess import ClipPreprocessor, pipeline_spec
    from emo_mm.deploy.reference import inference_pipeline
    monkeypatch.chdir(REPO)
    _make_data('kinetics')
    video = sorted(glob.glob('data/demo_kinetics/videos_val/*.mp4'))[0]
    frames = list(decord.VideoReader(video).get_batch(list(range(16))).asnumpy())
    for config in ('configs/demo/vemo_demo.py', 'configs/demo/vemo_demo_single_frame.py'):
        cfg = Config.fromfile(config)
        init_default_scope('mmaction')
        preprocessor = MODELS.build(cfg.model.data_preprocessor)

        class Holder(torch.nn.Module):
            data_preprocessor = preprocessor

        spec = dict(steps=pipeline_spec(test_pipeline(cfg), 'video'),
                    **normalization_spec(Holder(), 'video'))
        pipeline = inference_pipeline(cfg)
        data = preprocessor(pseudo_collate([pipeline(dict(
            filename=video, label=-1, start_index=0, modality='RGB'))]), False)
        mine = ClipPreprocessor(spec)(frames)
        np.testing.assert_array_equal(mine['inputs'], data['inputs'][0].numpy(),
                                      err_msg=config)
    # many frames and clips: mmaction2's index arithmetic
    from mmaction.datasets.transforms import SampleFrames, UniformSample

    from emo_mm.deploy.preprocess import sample_frames_indices, uniform_sample_indices
    for total in (3, 16, 37, 300):
        for clips in (1, 2, 5):
            expected = UniformSample(4, clips, test_mode=True)(dict(total_frames=total,
                                                                    start_index=0))
            np.testing.assert_array_equal(uniform_sample_indices(total, 4, clips),
                                          expected['frame_inds'])
            for interval in (0, 1, 3):
                expected = SampleFrames(4, interval, clips, test_mode=True)(dict(
                    total_frames=total, start_index=0))
                np.testing.assert_array_equal(
                    sample_frames_indices(total, 4, interval, clips), expected['frame_inds'])


# ---------------------------------------------------------------------------------------
# Graph pieces against their PyTorch / mmcv originals (random data, no training).
# ---------------------------------------------------------------------------------------
def test_adaptive_pooling_replacement_is_exact_enough():
    from emo_mm.deploy.graphs import ExportableAdaptiveAvgPool2d
    torch.manual_seed(0)
    for size in ((64, 64), (65, 97), (7, 13), (3, 2)):
        x = torch.randn(2, 5, *size)
        for bins in (1, 2, 3, 6):
            expected = torch.nn.functional.adaptive_avg_pool2d(x, bins)
            actual = ExportableAdaptiveAvgPool2d(bins)(x)
            assert torch.allclose(actual, expected, atol=1e-5), (size, bins)


def test_onnx_nms_is_mmcv_batched_nms(tmp_path):
    """ONNX NonMaxSuppression on class-offset boxes (the detector graphs' NMS) keeps what
    mmcv's batched_nms keeps, including scores at the threshold (score > thr)."""
    import onnxruntime as ort
    from mmcv.ops import batched_nms

    from emo_mm.deploy.graphs import nms
    torch.manual_seed(0)
    boxes = torch.rand(300, 2) * 100
    boxes = torch.cat([boxes, boxes + torch.rand(300, 2) * 40 + 1], dim=1)
    scores = torch.rand(300)
    scores[:20] = 0.05  # exactly at the threshold: dropped by both
    labels = torch.randint(0, 3, (300, ))

    class Graph(torch.nn.Module):
        def forward(self, boxes, scores, labels):
            max_coordinate = boxes.max()
            shifted = boxes + (labels.to(boxes) * (max_coordinate + 1))[:, None]
            return nms(shifted[None], scores[None, None], 100, 0.5, 0.05)[:, 2]

    path = str(tmp_path / 'nms.onnx')
    torch.onnx.export(Graph(), (boxes, scores, labels), path, opset_version=17, dynamo=False,
                      input_names=['boxes', 'scores', 'labels'], output_names=['keep'],
                      dynamic_axes={'boxes': {0: 'n'}, 'scores': {0: 'n'}, 'labels': {0: 'n'},
                                    'keep': {0: 'k'}})
    keep = ort.InferenceSession(path).run(None, dict(boxes=boxes.numpy(), scores=scores.numpy(),
                                                     labels=labels.numpy()))[0]
    valid = scores > 0.05
    _, expected = batched_nms(boxes[valid], scores[valid], labels[valid],
                              dict(type='nms', iou_threshold=0.5))
    expected = torch.nonzero(valid)[:, 0][expected][:100]
    assert keep.tolist() == expected.tolist()


# ---------------------------------------------------------------------------------------
# Bad input: one clear line each.
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_bundle(tmp_path_factory):
    """The shapes classifier with its initial weights: the fastest bundle to export."""
    from emo_mm.demo.data import make_shapes_classification
    from emo_mm.deploy.export import export_bundle
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        make_shapes_classification()
        out = str(tmp_path_factory.mktemp('small') / 'bundle')
        export_bundle('configs/demo/emov2_1m_shapes-cls_demo.py', None, out)
    finally:
        os.chdir(cwd)
    return out


def _copy(bundle, tmp_path):
    import shutil
    target = str(tmp_path / 'copy')
    shutil.copytree(bundle, target)
    return target


def test_bundle_folder_errors(small_bundle, tmp_path):
    broken = _copy(small_bundle, tmp_path)
    os.remove(osp.join(broken, 'end2end.onnx'))
    with pytest.raises(BundleError, match='is missing end2end.onnx'):
        Predictor(broken)
    changed = _copy(small_bundle, tmp_path / 'b')
    with open(osp.join(changed, 'end2end.onnx'), 'r+b') as f:
        f.seek(200)
        f.write(b'\x00\x01')
    with pytest.raises(BundleError, match='does not match its checksum'):
        Predictor(changed)
    with pytest.raises(BundleError, match='has no deploy.json'):
        Predictor(str(tmp_path))
    with pytest.raises(BundleError, match='not a folder'):
        Predictor(str(tmp_path / 'nowhere'))


def test_image_errors(small_bundle, tmp_path):
    predictor = Predictor(small_bundle)
    grey = np.zeros((40, 50), np.uint8)
    with pytest.raises(ValueError, match='3-channel colour images'):
        predictor(grey)
    with pytest.raises(ValueError, match='has shape 40x50x4'):
        predictor(np.zeros((40, 50, 4), np.uint8))
    with pytest.raises(ValueError, match='dtype float32'):
        predictor(np.zeros((40, 50, 3), np.float32))
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    with pytest.raises(ValueError, match='is not an image OpenCV can decode'):
        predictor(str(text))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        predictor(str(tmp_path / 'missing.png'))
    result = predictor(cv2.imread(sorted(glob.glob(osp.join(
        REPO, 'data/demo_shapes_cls/val/*.png')))[0]), topk=2)
    assert len(result['scores']) == 2 and result['scores'][0] >= result['scores'][1]
    assert result['classes'][0] in ('circle', 'square', 'triangle', 'star')


def _deploy_cli(args, capsys):
    """tools/deploy.py's main through run_cli: (exit status, stderr)."""
    from emo_mm.engine import run_cli
    tool = load_tool('deploy')
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: tool.main(args))
    return exit_info.value.code, capsys.readouterr().err


def test_deploy_tool_refusals(small_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    config = 'configs/demo/emov2_1m_shapes-cls_demo.py'
    code, err = _deploy_cli(['configs/demo/mask-rcnn_emov2_1m_demo.py', '--out',
                             str(tmp_path / 'm')], capsys)
    assert code == 2 and 'Mask R-CNN' in err and 'no deploy path' in err
    assert len(err.strip().splitlines()) == 1
    code, err = _deploy_cli([config, '--out', str(tmp_path / 'p'), '--precision', 'bf16'],
                            capsys)
    assert code == 2 and '--precision bf16 is not offered' in err
    code, err = _deploy_cli([config, str(tmp_path / 'missing.pth'), '--out',
                             str(tmp_path / 'c')], capsys)
    assert code == 2 and 'does not exist' in err
    wrong = tmp_path / 'wrong.pth'
    torch.save({'state_dict': {'backbone.x': torch.zeros(1)}}, str(wrong))
    code, err = _deploy_cli([config, str(wrong), '--out', str(tmp_path / 'w')], capsys)
    assert code == 2 and 'does not match the model' in err
    occupied = tmp_path / 'occupied'
    occupied.mkdir()
    (occupied / 'mine.txt').write_text('keep me')
    code, err = _deploy_cli([config, '--out', str(occupied)], capsys)
    assert code == 2 and 'not a bundle' in err
    assert (occupied / 'mine.txt').read_text() == 'keep me'
    extra = _copy(small_bundle, tmp_path / 'x')
    open(osp.join(extra, 'notes.txt'), 'w').close()
    code, err = _deploy_cli([config, '--out', extra], capsys)
    assert code == 2 and 'holds a bundle and other files (notes.txt)' in err


@pytest.mark.slow
def test_deploy_tool_replaces_a_bundle_and_test_tool_checks_the_config(
        small_bundle, tmp_path, capsys, monkeypatch):
    from emo_mm.deploy.runner import prepare_bundle_test_config
    from emo_mm.engine import prepare_test_config
    monkeypatch.chdir(REPO)
    target = _copy(small_bundle, tmp_path)
    before = json.load(open(osp.join(target, 'deploy.json')))
    tool = load_tool('deploy')
    assert tool.main(['configs/demo/emov2_1m_shapes-cls_demo.py', '--out', target]) == 0
    printed = capsys.readouterr().out
    assert f'Replaced the bundle in {target}' in printed and 'OK: the bundle matches' in printed
    assert json.load(open(osp.join(target, 'deploy.json')))['task'] == before['task']
    cfg = prepare_test_config('configs/demo/deeplabv3_emov2_1m_demo.py', None,
                              work_dir=str(tmp_path / 'w'))
    with pytest.raises(BundleError, match='exported from config emov2_1m_shapes-cls_demo'):
        prepare_bundle_test_config(cfg, 'configs/demo/deeplabv3_emov2_1m_demo.py', target)


# ---------------------------------------------------------------------------------------
# The other segmentors of the model zoo (random weights, the demo's test resize).
# ---------------------------------------------------------------------------------------
def _calibrate_batchnorm(model, path):
    """BatchNorm statistics of one image (random weights otherwise give near-constant
    class maps: the features' mean swamps their variation over the image)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    image = cv2.imread(path)[..., ::-1].astype(np.float32)
    image = (image - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    x = torch.from_numpy(image.transpose(2, 0, 1).copy()).float()[None]
    x = torch.cat([x, x.flip(-1)])  # two samples: pooled 1x1 maps need more than one value
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            module.momentum = None
            module.train()
    with torch.no_grad():
        model.decode_head(model.extract_feat(x))
    model.eval()


@pytest.mark.slow
@pytest.mark.parametrize('config', ['fpn_emov2_1m_ade20k', 'segformer_emov2_1m_ade20k',
                                    'pspnet_emov2_1m_ade20k'])
@pytest.mark.extended
def test_segmentor_bundles_match_pytorch(config, tmp_path, monkeypatch):
    """Semantic FPN, SegFormer and PSPNet (its adaptive pooling replaced by pooling
    matrices in the graph): label maps of randomised models on images of two sizes."""
    from test_deploy import randomize

    from emo_mm.apis import find_config, load_config
    from emo_mm.deploy.export import build_model, export_bundle
    from emo_mm.deploy.reference import torch_predict
    from emo_mm.models import switch_to_deploy
    monkeypatch.chdir(REPO)
    _make_data('ade20k')
    cfg = load_config(config)
    demo = load_config('configs/demo/deeplabv3_emov2_1m_demo.py')
    cfg.test_dataloader.dataset.pipeline = demo.test_pipeline
    cfg.model.backbone.init_cfg = None
    model = randomize(build_model(cfg))
    files = sorted(glob.glob('data/demo_ade20k/images/validation/*.jpg'))[:1]
    _calibrate_batchnorm(model, files[0])
    checkpoint = str(tmp_path / 'random.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    bundle = str(tmp_path / 'bundle')
    manifest, _ = export_bundle(find_config(config), checkpoint, bundle, cfg=cfg)
    reference_model = build_model(cfg, checkpoint)
    switch_to_deploy(reference_model, fold_batch_norm=True)
    files.append(_resized_copy(files[0], str(tmp_path), (173, 131)))
    predictor = Predictor(bundle)
    for path in files:
        deployed = predictor(path)['label_map']
        reference = torch_predict(reference_model, cfg, path, 'segmentation')['label_map']
        assert len(np.unique(reference)) > 1, 'a constant map would prove nothing'
        assert label_agreement(reference, deployed) >= PIXEL_AGREEMENT, path
    if config.startswith('pspnet'):
        assert manifest['postprocess']['adaptive_pooling_replaced']


def test_deploy_package_imports_no_torch():
    """``emo_mm.deploy`` (Predictor, bundle reader) imports neither torch nor OpenMMLab."""
    code = ('import sys, emo_mm.deploy; from emo_mm.deploy import Predictor; '
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'mmengine', 'mmcv', 'onnx')))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


@pytest.mark.slow
@pytest.mark.parametrize('config', ['configs/demo/retinanet_emov2_1m_demo.py',
                                    'configs/demo/ssdlite_emov2_1m_demo.py'])
@pytest.mark.extended
def test_detector_bundles_match_pytorch_with_random_weights(config, tmp_path, monkeypatch):
    """Randomised weights fill every image with max_per_img boxes of spread-out scores,
    which exercises the graph's top-k, decoding, rescaling and NMS far more than the
    trained demo models' few boxes."""
    from mmengine.config import Config
    from test_deploy import randomize

    from emo_mm.deploy.export import build_model, export_bundle
    from emo_mm.deploy.reference import torch_predict
    from emo_mm.models import switch_to_deploy
    monkeypatch.chdir(REPO)
    _make_data('coco')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    checkpoint = str(tmp_path / 'random.pth')
    torch.save({'state_dict': randomize(build_model(cfg), seed=1).state_dict()}, checkpoint)
    bundle = str(tmp_path / 'bundle')
    manifest, _ = export_bundle(config, checkpoint, bundle, cfg=cfg)
    reference_model = build_model(cfg, checkpoint)
    switch_to_deploy(reference_model, fold_batch_norm=True)
    post = manifest['postprocess']
    files = sorted(glob.glob('data/demo_coco/val/*.png'))[:2]
    files.append(_resized_copy(files[0], str(tmp_path), (210, 150)))
    predictor = Predictor(bundle)
    for path in files:
        deployed = predictor(path)
        reference = torch_predict(reference_model, cfg, path, 'detection')
        match = match_detections(reference, deployed, post['score_thr'], post['iou_threshold'])
        print(f'\n{osp.basename(config)} {osp.basename(path)}: {match}')
        assert match['total'] == post['max_per_img'], match  # a full image of boxes
        assert match['matched'] == match['total'], (path, match)


def test_end_to_end_benchmark_times_every_stage(small_bundle, tmp_path):
    """``tools/analysis_tools/benchmark.py --end-to-end BUNDLE ...``: one row per bundle, the
    Predictor's stages timed (they add up to the total), ratios over the first bundle."""
    import shutil
    other = str(tmp_path / 'other')
    shutil.copytree(small_bundle, other)
    result = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark.py', '--end-to-end', small_bundle, other,
         '--threads', '1', '--min-time', '0', '--warmup', '1', '--repeat', '2',
         '--json', str(tmp_path / 'rows.json')],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.load(open(tmp_path / 'rows.json'))
    assert [row['model'] for row in rows] == ['bundle', 'other']
    for row in rows:
        assert len(row['runs']) == 2 and row['baseline'] == 'bundle'
        seconds = row['seconds']
        assert min(seconds.values()) > 0
        parts = seconds['preprocess'] + seconds['infer'] + seconds['postprocess']
        assert parts == pytest.approx(seconds['total'], rel=0.5)  # medians of each stage
        assert row['images_per_s'] == pytest.approx(1 / seconds['total'])
        assert row['results'].startswith('top-1 ')
    assert rows[0]['ratio'] == 1.0
    assert rows[1]['ratio'] == pytest.approx(rows[1]['images_per_s'] / rows[0]['images_per_s'])
    table = result.stdout[result.stdout.index('model '):]
    assert 'graph ms' in table and 'ratios: img/s over bundle (classification)' in table


def test_end_to_end_peers_are_the_toolboxes_configs(tmp_path):
    """The benchmark's peers are the toolboxes' own configs, inherited unchanged."""
    from mmengine.config import Config

    from emo_mm.deploy.speed import E2E_MODELS, peer_config
    for task, peer in (('detection', 'SSDLite-MobileNetV2'),
                       ('segmentation', 'DeepLabv3-MobileNetV2')):
        path = peer_config(E2E_MODELS[task][peer].config, str(tmp_path))
        cfg = Config.fromfile(path)
        assert cfg.model.backbone.type == 'MobileNetV2'
        assert list(E2E_MODELS[task])[-1] == peer  # the default baseline
    assert peer_config('ssdlite_emov2_1m_320_coco', str(tmp_path)) == 'ssdlite_emov2_1m_320_coco'
