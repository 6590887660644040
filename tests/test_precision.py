"""Precision groundwork: the export-friendly attention form and the matrix-multiply peak."""
import pytest
import torch

from emo_mm.models import EMOv2
from emo_mm.models.attention import set_fused_attention, set_stack_partitions


@pytest.mark.parametrize('fused', [False, None])
def test_unstacked_partitions_give_the_same_outputs(fused):
    """Spanning attention over two partitions, attended together (stacked) or each on
    its own: equal outputs. 80x112 gives 5x7 and 3x4 maps: both partitions differ in the
    windowed stage (window 3 here) and the last stage pads."""
    model = EMOv2('1M', window_size=3, out_indices=(3, 4)).eval()
    for module in model.modules():
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    model.switch_to_deploy()
    set_fused_attention(model, fused)
    images = torch.randn(2, 3, 80, 112)
    with torch.no_grad():
        stacked = model(images)
        set_stack_partitions(model, False)
        separate = model(images)
    assert any(not m.stack_partitions for m in model.modules() if hasattr(m, 'stack_partitions'))
    for a, b in zip(separate, stacked):
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-5


def test_matmul_rates_are_measured_for_every_runtime():
    pytest.importorskip('onnxruntime')
    from emo_mm.deploy.peak import RUNTIMES, format_rates, matmul_rates, model_share
    rates = matmul_rates(threads=1, shapes={'small': (64, 32, 48)}, warmup=1, min_time=0.02)
    assert set(rates) == {'small', 'peak'}
    assert set(rates['small']) == set(RUNTIMES)
    for runtime, value in rates['small'].items():
        assert isinstance(value, float) and value > 0, (runtime, value)
    assert rates['peak'] == rates['small']
    assert 'onnxruntime int8 QLinearMatMul' in format_rates(rates)
    # 50 images/s of 1 GMAC each is 100 GFLOP/s: half of a 200 GFLOP/s rate.
    assert model_share(50., 1e9, 200.) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='Unknown runtime'):
        matmul_rates(runtimes=['numpy'])


@pytest.mark.slow
def test_export_with_separate_partitions_matches_pytorch(tmp_path):
    """The int8 path's export (stack_partitions=False): no stack (Concat) of partitions,
    outputs equal to PyTorch's."""
    import onnx

    from emo_mm.utils.onnx import export_onnx, verify_onnx
    model = EMOv2('1M', window_size=3, out_indices=(3, 4)).eval()
    for module in model.modules():
        if hasattr(module, 'gamma'):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.0)
    counts = {}
    for stack in (True, False):
        path = str(tmp_path / f'stack_{stack}.onnx')
        export_onnx(model, path, trace_size=(80, 112), dynamic_spatial=False,
                    stack_partitions=stack)
        verify_onnx(path, model, [(2, 3, 80, 112)], tolerance=1e-5)
        counts[stack] = sum(n.op_type == 'Concat' for n in onnx.load(path).graph.node)
    assert counts[False] < counts[True]


def test_autocast_network_runs_the_network_in_bf16_and_post_processing_in_fp32():
    """tools/test.py --bf16: a detector's backbone, neck and head compute in bf16 under
    autocast, hand fp32 tensors on, and mmcv's NMS (fp32-only on the CPU) still runs; the
    detections stay close to fp32's."""
    from mmdet.structures import DetDataSample

    from emo_mm.apis import build_model, load_config
    from emo_mm.deploy.precision import autocast_network
    cfg = load_config('configs/demo/retinanet_emov2_1m_make-demo.py')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.rand(1, 3, 128, 128) * 255
    sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                                         scale_factor=(1., 1.), batch_input_shape=(128, 128)))
    model.test_cfg.score_thr = 0.  # keep boxes, so that NMS has work

    def detect():
        with torch.inference_mode():
            data = model.data_preprocessor(dict(inputs=[image[0]], data_samples=[sample]))
            return model.predict(data['inputs'], data['data_samples'])[0].pred_instances

    fp32 = detect()
    seen = {}

    def record_dtype(module, inputs, output):
        seen['conv'] = output.dtype  # returns None: the output is left as it is

    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(record_dtype)
    assert autocast_network(model) == ['backbone', 'neck', 'bbox_head']
    assert autocast_network(model) == []  # wrapping twice is a no-op
    bf16 = detect()
    assert seen['conv'] == torch.bfloat16  # computed in bf16; the boxes reach NMS in fp32
    assert bf16.bboxes.dtype == torch.float32 and len(bf16) == len(fp32) > 0
    top = fp32.scores.argmax()
    assert abs(float(bf16.scores.max()) - float(fp32.scores[top])) < 0.05
