"""Mobile runtime: ExecuTorch programs lowered to XNNPACK, run by ExecuTorch's Python runtime.

The mobile forms of the window attention and the channel LayerNorm are checked in PyTorch
(always); the programs against PyTorch and, on demo-trained models, with the toolbox metric
(tests marked mobile: they need ExecuTorch, the mobile extra; `make setup-mobile`).
LayerScale and BatchNorm statistics are randomised, so every branch weighs in the outputs.
"""
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm.deploy.mobile import (XNNPACK_MAX_RANK, ConvChannelLayerNorm, ExecuTorchProgram,
                                  LowRankWindowAttention, attach_program, export_executorch,
                                  prepare_for_mobile, unshare_level_heads, verify_executorch)
from emo_mm.models import EMOv2
from emo_mm.models.attention import MIXERS, WindowAttention, attention_path
from emo_mm.models.layers import ChannelLayerNorm
from helpers import REPO, build_classifier, load_tool, relative_error

#: A classifier input whose stride-16 and stride-32 maps (10x14, 5x7) pad to windows of 7,
#: with two windows on one axis (both partitions) and one window (their shared case).
CLASSIFIER_SIZE = (160, 224)
#: A detector input whose maps pad to windows of 10 at strides 16 and 32 (16x20, 8x10).
DETECTOR_SIZE = (256, 320)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """LayerScale far from its 1e-6 start and BatchNorm statistics far from identity."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith('gamma'):
            param.copy_(torch.rand(param.shape, generator=gen) * 0.5 + 0.5)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def flat(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for item in outputs for t in flat(item)]


# ---------------------------------------------------------------------------------------
# The mobile forms, in PyTorch.
# ---------------------------------------------------------------------------------------
def test_per_level_head_copies_compute_the_shared_head():
    """RetinaNet's head applies one set of convolutions to every level; the int8 export
    gives each level its own copy (XNNPACK needs each convolution's bias at its own input
    scale). Same outputs; SSDLite's head has per-level layers already and stays."""
    from emo_mm.apis import build_model, load_config
    torch.manual_seed(0)
    model = randomize(build_model(load_config('retinanet_emov2_1m_coco')))
    wrapper = prepare_for_mobile(model)
    images = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        shared = flat(wrapper(images))
        assert unshare_level_heads(wrapper.model) == 5
        copied = flat(wrapper(images))
    assert len(copied) == len(shared) == 10
    assert all(torch.equal(a, b) for a, b in zip(copied, shared))
    assert unshare_level_heads(wrapper.model) == 0  # already per level
    ssdlite = build_model(load_config('ssdlite_emov2_1m_320_coco'))
    assert unshare_level_heads(ssdlite) == 0


@pytest.mark.parametrize('mixer', ['spanning', 'strided', 'contiguous'])
@pytest.mark.parametrize('window,size', [((7, 7), (14, 21)), ((7, 7), (10, 13)),
                                         ((4, 6), (9, 11)), ((0, 5), (6, 10)),
                                         ((10, 10), (8, 8))])
def test_low_rank_attention_equals_window_attention(mixer, window, size):
    torch.manual_seed(0)
    attention = WindowAttention(40, 96, dim_head=10, window_size=window,
                                partitions=MIXERS[mixer], act='gelu').eval()
    mobile = LowRankWindowAttention(attention)
    x = torch.randn(2, 40, *size)
    with torch.no_grad():
        expected = attention(x)
        actual = mobile(x)
        with attention_path(attention, False):  # the authors' order (pad first)
            reference = attention(x)
    assert actual.shape == expected.shape == (2, 96, *size)
    assert relative_error(actual, expected) < 1e-5
    assert relative_error(actual, reference) < 1e-5
    # The attention branch matters: a different q/k gives a different output.
    with torch.no_grad():
        mobile.qk.conv.weight.mul_(3.0)
        assert relative_error(mobile(x), expected) > 1e-3


def test_low_rank_attention_refuses_3d():
    attention = WindowAttention(32, 64, dim_head=16, window_size=(2, 4, 4),
                                partitions=MIXERS['spanning'], act='gelu', spatial_dims=3)
    with pytest.raises(ValueError, match='2-D'):
        LowRankWindowAttention(attention)


def test_conv_channel_layer_norm_equals_layer_norm():
    torch.manual_seed(0)
    norm = ChannelLayerNorm(48)
    with torch.no_grad():
        norm.norm.weight.uniform_(0.5, 1.5)
        norm.norm.bias.uniform_(-0.5, 0.5)
    mobile = ConvChannelLayerNorm(norm)
    x = torch.randn(2, 48, 7, 9) * 3 + 1
    assert relative_error(mobile(x), norm(x)) < 1e-5
    video = torch.randn(1, 48, 2, 3, 4)  # 3-D maps use the layer norm itself
    assert relative_error(mobile(video), norm(video)) < 1e-6


def _max_rank(exported) -> int:
    ranks = [node.meta['val'].dim() for node in exported.graph.nodes
             if isinstance(node.meta.get('val'), torch.Tensor)]
    return max(ranks)


def test_prepared_backbone_has_rank_6_and_same_outputs():
    model = randomize(EMOv2('1M', window_size=7))
    mobile = prepare_for_mobile(model)
    # Stages 3 and 4: 7 + 2 attention blocks (first blocks mix with a 1x1 conv), 8 + 3
    # LayerNorm pre-norms.
    assert sum(isinstance(m, LowRankWindowAttention) for m in mobile.modules()) == 9
    assert sum(isinstance(m, ConvChannelLayerNorm) for m in mobile.modules()) == 11
    assert not any(isinstance(m, (WindowAttention, ChannelLayerNorm)) for m in mobile.modules())
    x = torch.rand(1, 3, *CLASSIFIER_SIZE)
    with torch.no_grad():
        for actual, expected in zip(mobile(x), model(x)):
            assert relative_error(actual, expected) < 1e-5
        original = torch.export.export(model, (x, ))
        exported = torch.export.export(mobile, (x, ))
    # The model as built holds the rank-7/8 window views XNNPACK cannot define.
    assert _max_rank(original) > XNNPACK_MAX_RANK
    assert _max_rank(exported) <= XNNPACK_MAX_RANK
    # The model itself is left as it was: channels-last, not deployed.
    assert not model.deployed and model.channels_last
    assert any(isinstance(m, WindowAttention) for m in model.modules())
    assert all(p.is_contiguous() for p in mobile.parameters())


# ---------------------------------------------------------------------------------------
# Programs, run by ExecuTorch.
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def classifier_program(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize(build_classifier('1M'))
    path = str(tmp_path_factory.mktemp('mobile') / 'emov2_1m.pte')
    info = export_executorch(model, path, input_size=CLASSIFIER_SIZE)
    return model, path, info


@pytest.mark.mobile
def test_classifier_program_matches_pytorch(classifier_program):
    model, path, info = classifier_program
    images = torch.rand(1, 3, *CLASSIFIER_SIZE)
    errors = verify_executorch(path, model, [images], tolerance=1e-4)
    print(f'\nEMOv2-1M classifier at {CLASSIFIER_SIZE[0]}x{CLASSIFIER_SIZE[1]}, ExecuTorch fp32 '
          f'against PyTorch: relative errors {", ".join(f"{e:.2e}" for e in errors)}')
    assert len(errors) == 3 and max(errors) < 1e-4
    program = ExecuTorchProgram(path)
    scores = program(images)
    assert len(scores) == 1 and scores[0].shape == (1, 1000)
    # Every convolution, product and softmax runs inside XNNPACK.
    for op in ('convolution', 'bmm', '_softmax', 'linear', 'permute_copy'):
        assert any(op in name for name in info['delegated']), (op, info['delegated'])
        assert not any(op in name for name in info['outside']), (op, info['outside'])
    with pytest.raises(ValueError, match='one input shape'):
        program(torch.rand(1, 3, 224, 224))


@pytest.mark.mobile
def test_verify_detects_another_model(classifier_program):
    _, path, _ = classifier_program
    other = randomize(build_classifier('1M'), seed=1)
    with pytest.raises(AssertionError, match='relative error'):
        verify_executorch(path, other, tolerance=1e-4)


@pytest.mark.mobile
@pytest.mark.slow
def test_detector_network_program_matches_pytorch(tmp_path):
    from mmdet.structures import DetDataSample

    from emo_mm.apis import build_model, load_config
    torch.manual_seed(0)
    model = randomize(build_model(load_config('retinanet_emov2_1m_coco')))
    path = str(tmp_path / 'retinanet.pte')
    export_executorch(model, path, input_size=DETECTOR_SIZE)
    images = torch.rand(1, 3, *DETECTOR_SIZE)
    errors = verify_executorch(path, model, [images], tolerance=1e-4)
    print(f'\nRetinaNet-EMOv2-1M network at {DETECTOR_SIZE[0]}x{DETECTOR_SIZE[1]}, ExecuTorch '
          f'fp32 against PyTorch: relative errors {", ".join(f"{e:.2e}" for e in errors)}')
    outputs = ExecuTorchProgram(path)(images)
    with torch.no_grad():
        expected = flat(model(images, mode='tensor'))
    # Class scores and box deltas of the five pyramid levels (NMS stays outside).
    assert [tuple(o.shape) for o in outputs] == [tuple(e.shape) for e in expected]
    assert len(outputs) == 10
    # mmdet's own decoding and NMS on the program's outputs give the model's detections.
    meta = dict(img_shape=DETECTOR_SIZE, ori_shape=DETECTOR_SIZE, scale_factor=(1., 1.),
                pad_shape=DETECTOR_SIZE, batch_input_shape=DETECTOR_SIZE)
    model.test_cfg.score_thr = 0.0
    with torch.no_grad():
        reference = model.predict(images, [DetDataSample(metainfo=meta)])[0].pred_instances
        attach_program(model, ExecuTorchProgram(path))
        deployed = model.predict(images, [DetDataSample(metainfo=meta)])[0].pred_instances
    assert len(reference) > 10 and len(deployed) == len(reference)
    assert torch.equal(deployed.labels, reference.labels)
    assert relative_error(deployed.bboxes, reference.bboxes) < 1e-4
    assert relative_error(deployed.scores, reference.scores) < 1e-4


@pytest.mark.mobile
@pytest.mark.slow
def test_int8_detector_network_program_runs_close_to_fp32(tmp_path):
    """RetinaNet's network as an int8 program: it loads (with the head shared across
    levels XNNPACK refused a convolution) and stays near the fp32 model."""
    from emo_mm.apis import build_model, load_config
    torch.manual_seed(0)
    model = randomize(build_model(load_config('retinanet_emov2_1m_coco')))
    path = str(tmp_path / 'retinanet_int8.pte')
    size = (128, 160)
    export_executorch(model, path, input_size=size, precision='int8',
                      calibration=[torch.rand(2, 3, *size) for _ in range(2)])
    errors = verify_executorch(path, model, tolerance=None)
    print(f'\nRetinaNet-EMOv2-1M network int8 program against fp32 PyTorch (random weights '
          f'and inputs): relative errors {", ".join(f"{e:.3f}" for e in errors)}')
    assert len(errors) == 2 and all(0 < error < 0.2 for error in errors), errors
    assert len(ExecuTorchProgram(path)(torch.rand(1, 3, *size))) == 10


@pytest.mark.mobile
@pytest.mark.slow
def test_int8_program_runs_close_to_fp32(tmp_path):
    torch.manual_seed(0)
    model = randomize(EMOv2('1M', window_size=7, out_indices=(4, )))
    calibration = [torch.rand(4, 3, 64, 96) for _ in range(2)]
    fp32 = str(tmp_path / 'fp32.pte')
    int8 = str(tmp_path / 'int8.pte')
    export_executorch(model, fp32, input_size=(64, 96))
    info = export_executorch(model, int8, input_size=(64, 96), precision='int8',
                             calibration=calibration)
    assert info['calibration_images'] == 8
    assert any('quantize_per_tensor' in name for name in info['delegated'])
    # int8 weights: the program is well under half the fp32 one.
    assert os.path.getsize(int8) < 0.5 * os.path.getsize(fp32)
    errors = verify_executorch(int8, model, tolerance=None)
    print(f'\nEMOv2-1M backbone int8 program against fp32 PyTorch (random weights and inputs): '
          f'relative errors {", ".join(f"{e:.3f}" for e in errors)}')
    # A sanity bound for random weights and inputs; accuracy is measured on trained models.
    assert all(0 < error < 0.2 for error in errors), errors
    with pytest.raises(ValueError, match='calibration'):
        export_executorch(model, int8, input_size=(64, 96), precision='int8')


class _SmallScaleBranch(nn.Module):
    """conv, SiLU, a 1x1 conv with a batch norm of small scale folded in (weights about
    1e-4, and one channel of a zero scale: all-zero weights, bias only), then a conv that
    scales back up: the output projection of a trained EMOv2 block and what follows it."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.SiLU())
        self.small = nn.Conv2d(64, 16, 1)
        self.up = nn.Conv2d(16, 8, 1)
        with torch.no_grad():
            self.stem[0].weight.mul_(5)
            self.small.weight.copy_(torch.randn(16, 64, 1, 1, generator=gen) * 1e-4)
            self.small.weight[3].zero_()
            self.small.bias.copy_(torch.randn(16, generator=gen) * 1e-4)
            self.small.bias[3] = 1e-3
            self.up.weight.mul_(100)

    def forward(self, x):
        return self.up(self.small(self.stem(x)))


@pytest.mark.mobile
def test_int8_keeps_layers_of_small_weights(tmp_path):
    """ExecuTorch's XNNPACK config floors weight scales at 2**-12, which rounds weights of
    1e-4 to zero; the per-layer floors keep them, and XNNPACK runs the program."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from emo_mm.deploy.mobile import quantize_int8

    torch.manual_seed(0)
    model = _SmallScaleBranch().eval()
    calibration = [torch.rand(4, 3, 16, 16) for _ in range(2)]
    example = torch.rand(1, 3, 16, 16)
    converted, seen = quantize_int8(model, example, calibration)
    assert seen == 8
    # ExecuTorch's own config, for contrast.
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True))
    default = prepare_pt2e(torch.export.export(model, (example, )).module(), quantizer)
    with torch.no_grad():
        for images in calibration:
            for image in images.split(1):
                default(image)
        default = convert_pt2e(default)
        error = relative_error(converted(example), model(example))
        default_error = relative_error(default(example), model(example))
    assert error < 0.1 < 0.25 < default_error, (error, default_error)
    path = str(tmp_path / 'small.pte')
    export_executorch(model, path, input_size=(16, 16), precision='int8',
                      calibration=calibration, deploy=False)
    errors = verify_executorch(path, model, tolerance=None)
    print(f'\nsmall-scale branch int8, relative error: ExecuTorch config {default_error:.4f}, '
          f'per-layer floors {error:.4f}, program {max(errors):.4f}')
    assert max(errors) < 0.1, errors


@pytest.mark.mobile
def test_weight_scale_floors_keep_xnnpack_ranges():
    """Each channel's floor keeps XNNPACK's requantization scale (input x weight / output)
    >= 2**-32 and the int32 bias (bias / (input x weight)) in range; the zero channel
    (bias only) gets exactly that floor instead of a scale of 1e-38."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from emo_mm.deploy.mobile import (INT32_MAX, int8_config, set_weight_scale_floors,
                                      weight_observer_class)
    model = _SmallScaleBranch().eval()
    quantizer = XNNPACKQuantizer().set_global(int8_config())
    prepared = prepare_pt2e(torch.export.export(model, (torch.rand(1, 3, 16, 16), )).module(),
                            quantizer)
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.rand(1, 3, 16, 16))
    assert set_weight_scale_floors(prepared, margin=1.0) == 3
    for node in prepared.graph.nodes:
        if node.op != 'call_function' or len(node.args) < 3:
            continue
        observer = prepared.get_submodule(node.args[1].target)
        if not isinstance(observer, weight_observer_class()):
            continue
        scale_in = float(prepared.get_submodule(node.args[0].target).calculate_qparams()[0])
        scale_out = float(prepared.get_submodule(next(iter(node.users)).target)
                          .calculate_qparams()[0])
        scale_w = observer.calculate_qparams()[0]
        bias = prepared.get_parameter(node.args[2].target).detach().abs()
        assert (scale_in * scale_w / scale_out >= 2.0**-32).all()
        assert (bias / (scale_in * scale_w) <= INT32_MAX * (1 + 1e-6)).all()
        if scale_w.numel() == 16 and observer.max_val[3] == 0:  # the small layer
            assert scale_w[3] == observer.scale_floor[3] > 1e-30


def _test_runner(config, checkpoint, work_dir):
    """The toolbox's test loop for ``config`` with trained weights (tools/test.py's setup)."""
    from mmengine.runner import Runner

    from emo_mm.engine import prepare_test_config
    cfg = prepare_test_config(config, checkpoint, work_dir=work_dir)
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


def _score_programs(config, checkpoint, work_dir):
    """The toolbox's test metrics of ``config``'s trained model through its fp32 and int8
    programs (``attach_program``), the int8 one calibrated on the test pipeline's images of
    the training split (never the scored ones). Returns (input shape, {precision: metrics})."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    loaded = _test_runner(config, checkpoint, work_dir)
    loaded.load_or_resume()  # the runner loads load_from only when it starts a loop
    model = loaded.model.eval()
    cfg = Config.fromfile(config)
    test_loader = Runner.build_dataloader(cfg.test_dataloader)
    shapes = {tuple(model.data_preprocessor(data, False)['inputs'].shape[2:])
              for data in test_loader}
    assert len(shapes) == 1, shapes  # one program serves every test image
    shape = shapes.pop()
    train_set = cfg.train_dataloader.dataset
    train_set = train_set.get('dataset', train_set)  # a RepeatDataset's inner set
    calib_cfg = cfg.test_dataloader.copy()
    calib_cfg.dataset = dict(cfg.test_dataloader.dataset, data_prefix=train_set.data_prefix)
    if 'ann_file' in train_set:
        calib_cfg.dataset['ann_file'] = train_set.ann_file
    calibration = [model.data_preprocessor(data, False)['inputs']
                   for data, _ in zip(Runner.build_dataloader(calib_cfg), range(32))]
    metrics = {}
    for precision in ('fp32', 'int8'):
        path = osp.join(work_dir, f'model_{precision}.pte')
        export_executorch(model, path, input_size=shape, precision=precision,
                          calibration=calibration if precision == 'int8' else None)
        runner = _test_runner(config, checkpoint, work_dir)
        attach_program(runner.model, ExecuTorchProgram(path))
        metrics[precision] = runner.test()
    return shape, metrics


@pytest.mark.mobile
@pytest.mark.slow
# The int8 export's histogram observers (torchao) search their ranges in Python, once per
# quantized activation: longer than setup.cfg's per-test timeout on a loaded machine.
@pytest.mark.timeout(2400)
@pytest.mark.demo_family('deeplabv3_emov2')
def test_demo_segmentor_programs_keep_accuracy(tmp_path, monkeypatch, demo_training):
    """DeepLabv3-EMOv2-1M trained on the ADE20K-format demo set (the session's shared
    training), scored by mmseg's IoUMetric on the held-out split through ExecuTorch: the
    fp32 program as PyTorch, the int8 program (XNNPACK quantizer) within 1 point."""
    run = demo_training('deeplabv3_emov2')
    config = osp.join(REPO, 'configs', 'demo', 'deeplabv3_emov2_1m_demo.py')
    monkeypatch.chdir(REPO)  # the demo configs name data/ relative to the repository
    torch_miou = run.after['mIoU']
    assert torch_miou > 20  # trained: chance is about 11
    shape, metrics = _score_programs(config, run.checkpoint, str(tmp_path))
    miou = {precision: m['mIoU'] for precision, m in metrics.items()}
    print(f'\nDeepLabv3-EMOv2-1M demo mIoU on the held-out images at {shape[0]}x{shape[1]}: '
          f'PyTorch {torch_miou:.2f}, ExecuTorch fp32 {miou["fp32"]:.2f}, ExecuTorch int8 '
          f'{miou["int8"]:.2f}')
    assert miou['fp32'] == pytest.approx(torch_miou, abs=0.05)
    assert miou['int8'] >= torch_miou - 1.0


@pytest.mark.mobile
@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.demo_family('retinanet_emov2')
def test_demo_detector_programs_keep_accuracy(tmp_path, monkeypatch, demo_training):
    """RetinaNet-EMOv2-1M trained on the COCO-format demo set, scored by mmdet's COCO
    metric on the held-out split through ExecuTorch (NMS in mmdet): the fp32 program as
    PyTorch, the int8 program (one head copy per level) within 1 point of mAP@0.5."""
    run = demo_training('retinanet_emov2')
    config = osp.join(REPO, 'configs', 'demo', 'retinanet_emov2_1m_demo.py')
    monkeypatch.chdir(REPO)
    keys = ('coco/bbox_mAP', 'coco/bbox_mAP_50')
    scores = {'PyTorch': {key: run.after[key] for key in keys}}
    assert scores['PyTorch']['coco/bbox_mAP_50'] > 0.02  # trained (the learning test's gain)
    shape, metrics = _score_programs(config, run.checkpoint, str(tmp_path))
    for precision, found in metrics.items():
        scores[f'ExecuTorch {precision}'] = {key: found[key] for key in keys}
    print(f'\nRetinaNet-EMOv2-1M demo mAP / mAP@0.5 (points) at {shape[0]}x{shape[1]}: '
          + ', '.join(f'{name} {100 * m[keys[0]]:.1f} / {100 * m[keys[1]]:.1f}'
                      for name, m in scores.items()))
    for key in keys:
        assert scores['ExecuTorch fp32'][key] == pytest.approx(scores['PyTorch'][key], abs=1e-3)
    assert (scores['ExecuTorch int8']['coco/bbox_mAP_50']
            >= scores['PyTorch']['coco/bbox_mAP_50'] - 0.01)


# ---------------------------------------------------------------------------------------
# tools/deploy.py --mobile executorch.
# ---------------------------------------------------------------------------------------
def _deploy(argv):
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return load_tool('deploy').main(argv)
    finally:
        os.chdir(cwd)


@pytest.mark.mobile
@pytest.mark.slow
@pytest.mark.demo_family('classifier_emov2')
def test_deploy_tool_adds_checked_program(tmp_path, demo_training, capsys):
    """The demo-trained shapes classifier: the bundle holds model.pte with a checksum; its
    class scores, through softmax, are the ONNX graph's."""
    from emo_mm.deploy import read_bundle
    from emo_mm.utils.onnx import onnx_session
    run = demo_training('classifier_emov2')
    config = osp.join(REPO, 'configs', 'demo', 'emov2_1m_shapes-cls_demo.py')
    out = str(tmp_path / 'bundle')
    assert _deploy([config, run.checkpoint, '--out', out, '--mobile', 'executorch']) == 0
    printed = capsys.readouterr().out
    assert 'program model.pte (XNNPACK, fp32, input 1x3x64x64): relative error' in printed
    manifest = read_bundle(out)  # checks every file's sha256, model.pte included
    mobile = manifest['mobile']
    assert 'model.pte' in manifest['files'] and mobile['file'] == 'model.pte'
    assert mobile['input'] == [1, 3, 64, 64] and mobile['relative_error'] < 1e-4
    num_classes = len(manifest['classes'])
    assert mobile['outputs'] == [[1, num_classes]]
    program = ExecuTorchProgram(osp.join(out, 'model.pte'))
    session = onnx_session(osp.join(out, manifest['graphs']['model']['file']))
    input_name = session.get_inputs()[0].name
    for seed in range(2):
        images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        scores = program(images)[0].softmax(-1)
        expected = torch.from_numpy(session.run(None, {input_name: images.numpy()})[0])
        assert relative_error(scores, expected) < 1e-4


@pytest.mark.mobile
@pytest.mark.slow
@pytest.mark.demo_family('classifier_emov2')
def test_deploy_tool_int8_program_keeps_accuracy(tmp_path, demo_training, capsys,
                                                 monkeypatch):
    """--precision int8 --mobile executorch: the bundle's program is int8, calibrated on the
    int8 graph's files, and scores the held-out demo split within 1 point of PyTorch
    (mmpretrain's top-1 through attach_program)."""
    from emo_mm.deploy import read_bundle
    run = demo_training('classifier_emov2')
    config = osp.join(REPO, 'configs', 'demo', 'emov2_1m_shapes-cls_demo.py')
    out = str(tmp_path / 'bundle')
    assert _deploy([config, run.checkpoint, '--out', out, '--precision', 'int8',
                    '--calib', '16', '--mobile', 'executorch']) == 0
    printed = capsys.readouterr().out
    assert ('program model.pte (XNNPACK, int8, input 1x3x64x64): relative error' in printed
            and 'reported only; calibrated on 16 images' in printed), printed
    mobile = read_bundle(out)['mobile']
    assert mobile['precision'] == 'int8' and mobile['calibration_images'] == 16
    monkeypatch.chdir(REPO)  # the demo configs name data/ relative to the repository
    runner = _test_runner(config, run.checkpoint, str(tmp_path))
    runner.load_or_resume()
    attach_program(runner.model, ExecuTorchProgram(osp.join(out, 'model.pte')))
    top1 = runner.test()['accuracy/top1']
    torch_top1 = run.after['accuracy/top1']
    print(f'\nshapes classifier demo top-1: PyTorch {torch_top1:.2f}, bundle\'s ExecuTorch '
          f'int8 program {top1:.2f} (relative error on random inputs '
          f'{mobile["relative_error"]:.3f})')
    assert torch_top1 > 50  # trained: chance is 25
    assert top1 >= torch_top1 - 1.0


def test_deploy_tool_refuses_program_of_any_size(tmp_path, capsys):
    """A program holds one input size: a dynamic-size bundle needs --input-size (refused
    before anything is built or written)."""
    from emo_mm.engine import run_cli
    config = osp.join(REPO, 'configs', 'demo', 'deeplabv3_emov2_1m_demo.py')
    out = tmp_path / 'bundle'
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: _deploy([config, '--out', str(out), '--mobile', 'executorch']))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith('error: ') and '--input-size HxW' in error
    assert not out.exists()


def test_deploy_tool_without_executorch_names_the_extra(tmp_path, capsys, monkeypatch):
    """Without the mobile extra, --mobile executorch stops with the command that installs it
    (before anything is built or written)."""
    import importlib.util

    from emo_mm.engine import run_cli
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *args: None if name == 'executorch' else
                        find_spec(name, *args))
    config = osp.join(REPO, 'configs', 'demo', 'emov2_1m_shapes-cls_demo.py')
    out = tmp_path / 'bundle'
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: _deploy([config, '--out', str(out), '--mobile', 'executorch']))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith('error: ') and 'make setup-mobile' in error
    assert not out.exists()
