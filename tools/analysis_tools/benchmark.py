"""Throughput of EMO models and their peers, side by side, in one run.

    python tools/analysis_tools/benchmark.py                              # CPU, 224x224 classifiers
    python tools/analysis_tools/benchmark.py --threads 2 --models EMOv2-1M EMOv2-5M EdgeNeXt-S \\
        --backend torch onnxruntime --deploy both --baseline EdgeNeXt-S
    python tools/analysis_tools/benchmark.py --device cuda --amp fp16 --compile both \\
        --batch-sizes 256
    python tools/analysis_tools/benchmark.py --device cuda --amp fp16 --train --batch-sizes 128
    python tools/analysis_tools/benchmark.py --input 800x1344 --batch-sizes 1      # bare backbones
    python tools/analysis_tools/benchmark.py --list                               # every model name
    python tools/analysis_tools/benchmark.py --end-to-end detection segmentation --threads 2
    python tools/analysis_tools/benchmark.py --end-to-end bundles/retina/ bundles/ssdlite/
    python tools/analysis_tools/benchmark.py --threads 2 --models EMOv2-5M EdgeNeXt-S MobileNetV2 \
        --backend torch onnxruntime executorch --precision fp32 bf16 int8 --deploy --peak

``--end-to-end`` times deploy bundles image in, results out (emo_mm.deploy.Predictor:
decoding, pipeline replay, the graph with its NMS / arg-max, plain results): ``detection``
is SSDLite-EMOv2-1M/5M beside mmdet's SSDLite-MobileNetV2 at 320x320, ``segmentation``
DeepLabv3-EMOv2-1M/5M beside mmseg's DeepLabv3-MobileNetV2 at 512x512, all exported by
tools/deploy.py's code; bundle folders are timed as given (emo_mm/deploy/speed.py).

Every row is one model under one setting (backend x deploy x compile); for each batch
size it gives images per second and the ratio to the ``--baseline`` model under the same
setting. Classifiers run at 224x224 unless ``--input`` is given, which benchmarks the bare
backbones (multi-scale feature extractors, as detectors and segmentors use them) at that
size. Each cell is timed for at least ``--min-time`` seconds after ``--warmup`` runs (a
compiled model compiles during warm-up; the compile time is printed). Models are built
with random weights (``pretrained=False``): speed does not depend on the values.

Settings:
    --backend torch|onnxruntime|executorch
                                 onnxruntime rows export the model to ONNX (batch axis
                                 dynamic, traced at the input size) and run it on the
                                 CPUExecutionProvider. executorch rows export one ExecuTorch
                                 program per batch size, lowered to XNNPACK, and run it with
                                 ExecuTorch's Python runtime (emo_mm.deploy.mobile; the extra:
                                 make setup-mobile); the export seconds are printed and kept in
                                 the JSON.
    --precision fp32|bf16|int8   each backend at each precision it runs here: torch fp32 and
                                 bf16 (autocast, oneDNN); onnxruntime fp32 and int8 (the
                                 graph quantized by emo_mm.deploy.quantize with the deploy
                                 tool's defaults: static QDQ, per-channel s8 weights, u8
                                 activations, the attention core float, every other network
                                 node int8, no sensitivity pass); executorch fp32 and
                                 int8 (XNNPACK's quantizer). int8 is calibrated on 4 random
                                 inputs: the values change the ranges, not the work. Peers
                                 are quantized by the same code; one whose graph fails is a
                                 row with its error. Combinations without a path here are
                                 listed once, with the reason. With several backends or
                                 precisions, a column gives each row's speed over the same
                                 model's row of the first backend at the first precision,
                                 and a summary gives each model's fastest row against the
                                 baseline's fastest (int8 accuracy is measured per model by
                                 tools/test.py CONFIG BUNDLE, docs/deploy.md).
    --peak                       times this machine's matrix multiplies at each precision
                                 (emo_mm.deploy.peak: torch, onnxruntime fp32 / int8) with the
                                 same threads and rounds, prints them, and gives every row
                                 its share of its precision's peak: images/s x 2 x FLOPs
                                 per image over the fastest measured rate of that precision.
    --deploy [on|off|both]       calls ``switch_to_deploy()`` where the model has it
                                 (timm: ``reparameterize_model``); ``n/a`` where not.
    --compile [on|off|both]      ``torch.compile`` (default mode, static shapes: one graph
                                 per batch size; torch backend only).
    --amp fp16|bf16              autocast (torch backend; onnxruntime rows stay fp32).
    --train                      forward + backward + AdamW step instead of inference.
    --repeat R                   time every cell R times, in rounds over all models, and
                                 report medians: slow drifts of a shared machine then
                                 reach every model alike.
    --profile [N]                after timing each cell, profile a few more calls and print
                                 the N operators (default 8) that take the most time:
                                 torch's profiler (self CPU time, or GPU kernel time on
                                 CUDA) or onnxruntime's (kernel time per node type).

Times are wall-clock (``time.perf_counter``) around whole calls. Nothing here asserts a
speed; the figures depend on the machine and on what else runs on it (the load average is
printed in the header).
"""
import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.utils.flops import count_flops
from emo_mm.utils.onnx import (TensorOutput, export_onnx, onnx_session, operator_kernel_times,
                               switch_to_deploy)


# ---------------------------------------------------------------------------------------
# The model table. An entry says how to build the whole model (for 224x224 runs) and,
# optionally, its bare backbone (for --input runs); adding a model is adding an entry.
# ---------------------------------------------------------------------------------------
def image_batch(batch: int, size: Tuple[int, int], device: str) -> Tuple[torch.Tensor, ...]:
    """The default inputs: one (N, 3, H, W) image batch."""
    return (torch.rand(batch, 3, *size, device=device), )


@dataclasses.dataclass
class Entry:
    """How to build one benchmarked model.

    Attributes:
        build: Returns the whole model; ``model(*inputs)`` must run it.
        source: Where the implementation comes from (shown in the table).
        backbone: ``backbone((H, W))`` returns the bare multi-scale backbone for that
            input size (``--input`` runs); None if the model has none.
        inputs: ``inputs(batch, (H, W), device)`` -> tuple of input tensors.
        default_size: (H, W) of runs without ``--input``.
    """
    build: Callable[[], nn.Module]
    source: str
    backbone: Optional[Callable[[], nn.Module]] = None
    inputs: Callable = image_batch
    default_size: Tuple[int, int] = (224, 224)


def _emo_classifier(config: str) -> nn.Module:
    from emo_mm.apis import build_model, load_config
    return TensorOutput(build_model(load_config(config)))


def _emo_backbone(config: str, size=None, **overrides) -> nn.Module:
    """The classifier config's backbone as detectors use it: four outputs, no final
    norm, and the overrides (EMOv2's downstream window is 10)."""
    from mmengine.registry import MODELS, init_default_scope

    from emo_mm.apis import load_config
    cfg = load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    cfg.model.backbone.update(out_indices=(1, 2, 3, 4), final_norm=False, **overrides)
    return MODELS.build(cfg.model.backbone)


def _timm(name: str, features_only: bool = False, size: Tuple[int, int] = None) -> nn.Module:
    try:
        import timm
    except ImportError as error:
        raise ImportError('timm is not installed; it is a benchmark dependency '
                          '(requirements).') from error
    if not features_only:
        return timm.create_model(name, pretrained=False)
    try:
        # Models whose attention is built for one resolution (EfficientFormerV2) take it.
        return timm.create_model(name, pretrained=False, features_only=True, img_size=size)
    except TypeError:
        return timm.create_model(name, pretrained=False, features_only=True)


def _mmpretrain(name: str, size=None, backbone_only: bool = False) -> nn.Module:
    from mmpretrain import get_model
    model = get_model(name, pretrained=False)
    return model.backbone if backbone_only else TensorOutput(model)


def emo_entry(config: str, **backbone_overrides) -> Entry:
    return Entry(functools.partial(_emo_classifier, config), 'emo_mm',
                 lambda size: _emo_backbone(config, size, **backbone_overrides))


def timm_entry(name: str) -> Entry:
    return Entry(functools.partial(_timm, name), f'timm {name}',
                 lambda size: _timm(name, features_only=True, size=size))


def mmpretrain_entry(name: str) -> Entry:
    return Entry(functools.partial(_mmpretrain, name), f'mmpretrain {name}',
                 lambda size: _mmpretrain(name, size, backbone_only=True))


def _denoiser(kind: str, arch: str) -> nn.Module:
    from emo_mm.models.dit import DEMO, DiT
    return (DEMO if kind == 'DEMO' else DiT)(arch)


def latent_batch(batch: int, size: Tuple[int, int], device: str) -> Tuple[torch.Tensor, ...]:
    """A denoiser's inputs: 4-channel latents, a mid-schedule timestep, class 0."""
    return (torch.randn(batch, 4, *size, device=device),
            torch.full((batch, ), 500, device=device),
            torch.zeros(batch, dtype=torch.long, device=device))


def denoiser_entry(kind: str, arch: str) -> Entry:
    # 32x32 latents: 256x256 images through the Stable Diffusion VAE.
    return Entry(functools.partial(_denoiser, kind, arch), 'emo_mm', inputs=latent_batch,
                 default_size=(32, 32))


MODEL_TABLE: Dict[str, Entry] = {
    **{f'EMOv2-{v}': emo_entry(f'emov2_{v.lower()}_in1k', window_size=10)
       for v in ('1M', '2M', '5M', '20M', '50M')},
    **{f'EMOv1-{v}': emo_entry(f'emov1_{v.lower()}_in1k') for v in ('1M', '2M', '5M', '6M')},
    'EdgeNeXt-S': timm_entry('edgenext_small'),
    'EdgeNeXt-XS': timm_entry('edgenext_x_small'),
    'EdgeNeXt-XXS': timm_entry('edgenext_xx_small'),
    'MobileNetV2': timm_entry('mobilenetv2_100'),
    'MobileNetV3-L': timm_entry('mobilenetv3_large_100'),
    'EfficientFormerV2-S1': timm_entry('efficientformerv2_s1'),
    'FastViT-T8': timm_entry('fastvit_t8'),
    'MobileViT-S': timm_entry('mobilevit_s'),
    'EdgeNeXt-S/mmpretrain': mmpretrain_entry('edgenext-small_3rdparty_in1k'),
    'MobileNetV2/mmpretrain': mmpretrain_entry('mobilenet-v2_8xb32_in1k'),
    'EfficientFormer-L1/mmpretrain': mmpretrain_entry('efficientformer-l1_3rdparty_8xb128_in1k'),
    'ResNet-50/mmpretrain': mmpretrain_entry('resnet50_8xb32_in1k'),
    **{f'{kind}-{arch}': denoiser_entry(kind, arch)
       for kind in ('DEMO', 'DiT') for arch in ('S-2', 'B-2', 'L-2', 'XL-2')},
}
BACKENDS = ('torch', 'onnxruntime', 'executorch')
PRECISIONS = ('fp32', 'bf16', 'int8')
#: (backend, precision) pairs without a path in this tool, and why.
NO_PATH = {
    ('torch', 'int8'): 'eager PyTorch has no int8 inference path here; onnxruntime and '
                       'executorch quantize',
    ('onnxruntime', 'bf16'): "onnxruntime's CPU provider has no bf16 Conv / MatMul kernels",
    ('executorch', 'bf16'): 'emo_mm.deploy.mobile lowers fp32 and int8 programs to XNNPACK',
}
DEFAULT_MODELS = ['EMOv2-1M', 'EMOv2-5M', 'EdgeNeXt-XXS', 'EdgeNeXt-S', 'MobileNetV2',
                  'EfficientFormerV2-S1', 'FastViT-T8']


def lookup(name: str) -> Entry:
    """A table entry, or ``timm:NAME`` / ``mmpretrain:NAME`` for any model of those."""
    if name in MODEL_TABLE:
        return MODEL_TABLE[name]
    prefix, _, rest = name.partition(':')
    if rest and prefix == 'timm':
        return timm_entry(rest)
    if rest and prefix == 'mmpretrain':
        return mmpretrain_entry(rest)
    raise SystemExit(f'Unknown model {name!r}. Use one of {list(MODEL_TABLE)} (see --list), '
                     f'or timm:<timm model name> / mmpretrain:<model-index name>.')


# ---------------------------------------------------------------------------------------
# Settings and measurement.
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setting:
    backend: str
    deploy: bool
    compile: bool
    precision: str = 'fp32'

    def label(self) -> str:
        return f'{self.backend} {self.precision}, deploy {"on" if self.deploy else "off"}, ' \
               f'compile {"on" if self.compile else "off"}'


def settings_of(args) -> List[Setting]:
    """Every (backend, precision, deploy, compile) to time, in table order; pairs in
    :data:`NO_PATH` are left out (the header lists them)."""
    choice = {'off': [False], 'on': [True], 'both': [False, True]}
    settings = []
    for backend in args.backend:
        for precision in args.precision:
            if (backend, precision) in NO_PATH:
                continue
            for deploy in choice[args.deploy]:
                # onnxruntime runs its own graph optimisations; torch.compile does not apply.
                for compiled in (choice[args.compile] if backend == 'torch' else [False]):
                    settings.append(Setting(backend, deploy, compiled, precision))
    return settings


def precision_of(setting: Setting, args) -> str:
    """The precision a row runs at: ``--amp``'s dtype for torch rows, else the setting's."""
    return args.amp if args.amp and setting.backend == 'torch' else setting.precision


def apply_deploy(model: nn.Module) -> str:
    """Deploy mode where the model has one: 'on' or 'n/a'."""
    if switch_to_deploy(model):
        return 'on'
    if any(hasattr(m, 'reparameterize') for m in model.modules()):
        from timm.utils.model import reparameterize_model  # timm's re-parameterisable blocks
        reparameterize_model(model)
        return 'on'
    return 'n/a'


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _timed(step: Callable[[], None], batch: int, device: str, warmup: int,
           min_time: float) -> Tuple[float, float]:
    """(images per second over >= min_time s, seconds of the first warm-up call)."""
    start = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        step()
    _sync(device)
    runs, start = 0, time.perf_counter()
    while True:
        step()
        runs += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and runs >= 3:
            return batch * runs / elapsed, first


def _first_tensors(outputs) -> List[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    flat = []
    for item in outputs:
        flat += _first_tensors(item)
    return flat


def torch_step(model: nn.Module, inputs, args, amp: Optional[str] = None) -> Callable[[], None]:
    """One inference call, or one training step (forward, backward, AdamW step), under
    autocast to ``amp`` (``fp16`` / ``bf16``; default ``args.amp``)."""
    amp = amp or args.amp
    autocast = (functools.partial(torch.autocast, device_type=args.device.split(':')[0],
                                  dtype=dict(fp16=torch.float16, bf16=torch.bfloat16)[amp])
                if amp else None)

    def context():
        return autocast() if autocast else _null()

    if not args.train:
        @torch.inference_mode()
        def infer():
            with context():
                model(*inputs)
        return infer

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(args.device.split(':')[0],
                                  enabled=amp == 'fp16' and args.device.startswith('cuda'))

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with context():
            # Any scalar of every output makes backward reach every parameter it used.
            loss = sum(out.float().mean() for out in _first_tensors(model(*inputs)))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return train_step


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# Profiler rows that only wrap the work of the rows beneath them.
_WRAPPERS = ('Torch-Compiled Region', 'TorchDynamo Cache Lookup', 'Pregraph bytecode',
             'AOTDispatcher', 'cudaDeviceSynchronize', 'ProfilerStep')


def _shares(times: Dict[str, float], top: int) -> List[Tuple[str, float]]:
    """The ``top`` largest entries of ``times`` as (name, fraction of the total)."""
    total = sum(times.values()) or 1.
    return [(op, t / total) for op, t in sorted(times.items(), key=lambda kv: -kv[1])[:top]]


@contextlib.contextmanager
def _quiet_stderr():
    """Silences file descriptor 2: torch's profiler backend (kineto) writes start / stop
    lines there from C++ on every run, which Python's ``sys.stderr`` does not catch."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, 'w') as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def torch_profile(step: Callable[[], None], device: str, top: int,
                  calls: int = 3) -> List[Tuple[str, float]]:
    """Where ``calls`` calls of ``step`` spend their time, by operator: self CPU time, or
    on CUDA the GPU kernels' time. On the CPU a compiled graph's generated kernels are one
    row, 'compiled graph (inductor kernels)'; the library calls it makes keep their own."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith('cuda')
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _quiet_stderr(), profile(activities=activities) as prof:
        for _ in range(calls):
            step()
        _sync(device)
    times = {}
    for event in prof.key_averages():
        if cuda:
            spent = getattr(event, 'self_device_time_total', 0)
        else:
            spent = event.self_cpu_time_total
        if spent > 0 and not event.key.startswith(_WRAPPERS):
            name = ('compiled graph (inductor kernels)'
                    if event.key.startswith('## Call CompiledFxGraph') else event.key)
            times[name] = times.get(name, 0.) + spent
    return _shares(times, top)


def onnxruntime_profile(path: str, feeds: dict, threads: Optional[int], top: int,
                        calls: int = 3) -> List[Tuple[str, float]]:
    """Shares of kernel time per ONNX operator type over ``calls`` runs."""
    return _shares(operator_kernel_times(path, feeds, threads, calls), top)


def format_profile(shares: List[Tuple[str, float]]) -> str:
    return ', '.join(f'{op} {100 * share:.1f}%' for op, share in shares)


#: One timed call per batch size: batch -> (call, device it synchronises).
Steps = Dict[int, Tuple[Callable[[], None], str]]


def _record(row: dict, batch: int, speed: float, first: Optional[float] = None) -> None:
    row['runs'].setdefault(batch, []).append(speed)
    row['images_per_s'][batch] = speed
    if first is not None:
        row['first_call_s'][batch] = first


def measure(name: str, entry: Entry, setting: Setting, args, size,
            flops_cache) -> Tuple[dict, Steps]:
    """Builds one model under one setting and times every batch size once; returns the
    row and the calls that later rounds time again."""
    row = dict(model=name, source=entry.source, backend=setting.backend,
               deploy='off', compile='on' if setting.compile else 'off',
               precision=precision_of(setting, args),
               params=None, flops=None, images_per_s={}, first_call_s={}, runs={},
               profile={}, error=None)
    if args.task == 'backbone' and entry.backbone is None:
        row['error'] = 'no bare backbone defined for this model'
        return row, {}
    torch.manual_seed(0)
    model = entry.backbone(size) if args.task == 'backbone' else entry.build()
    if args.eager_attention:
        from emo_mm.models import set_fused_attention
        set_fused_attention(model, False)
    model.eval()
    if name not in flops_cache:
        counts = count_flops(model, *entry.inputs(1, size, 'cpu'))
        flops_cache[name] = (counts['params'], counts['flops'])
    row['params'], row['flops'] = flops_cache[name]
    if setting.deploy:
        row['deploy'] = apply_deploy(model)
    if setting.backend == 'onnxruntime':
        return _measure_onnxruntime(model, entry, row, args, size)
    if setting.backend.startswith('executorch'):
        return _measure_executorch(model, entry, row, args, size)
    model.to(args.device)
    model.train(args.train)
    # Static shapes: each batch size compiles its own graph, as a deployment at a fixed
    # batch would (torch's default makes the batch symbolic once a second size arrives,
    # a slower graph: docs/benchmark.md).
    runner = torch.compile(model, dynamic=False) if setting.compile else model
    steps = {}
    for batch in args.batch_sizes:
        inputs = entry.inputs(batch, size, args.device)
        step = torch_step(runner, inputs, args,
                          amp=row['precision'] if row['precision'] != 'fp32' else None)
        _record(row, batch, *_timed(step, batch, args.device, args.warmup, args.min_time))
        if args.profile:
            row['profile'][batch] = torch_profile(step, args.device, args.profile)
        steps[batch] = (step, args.device)
    return row, steps


def _random_calibration(entry: Entry, size) -> List[torch.Tensor]:
    """int8 calibration batches: random images (the ranges, not the work, depend on them)."""
    if entry.inputs is not image_batch:
        raise ValueError('int8 rows quantize models of one image input')
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, *size, generator=generator) for _ in range(4)]


def _measure_onnxruntime(model, entry, row, args, size) -> Tuple[dict, Steps]:
    import numpy as np
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'model.onnx')
        # Traced at the benchmarked size with a dynamic batch: the graph a deployment
        # for this one input size would use (deploy mode was applied above).
        export_onnx(model, path, trace_size=size, deploy=False, dynamic_spatial=False)
        if row['precision'] == 'int8':
            import onnx

            from emo_mm.deploy.quantize import QuantizeConfig, quantize
            name = onnx.load(path, load_external_data=False).graph.input[0].name
            quantized = os.path.join(folder, 'model_int8.onnx')
            record = quantize(path, quantized, [{name: image.numpy()} for image in
                                                _random_calibration(entry, size)],
                              QuantizeConfig(float_attention=True))  # deploy's default
            path = quantized
            row['qdq_node_counts'] = {op: n for op, n in record['op_counts'].items()
                                      if op in ('QuantizeLinear', 'DequantizeLinear')}
        session = onnx_session(path, args.threads)  # holds the graph in memory
        steps = {}
        for batch in args.batch_sizes:
            feeds = {session.get_inputs()[0].name:
                     np.ascontiguousarray(entry.inputs(batch, size, 'cpu')[0].numpy())}
            step = functools.partial(session.run, None, feeds)
            _record(row, batch, *_timed(step, batch, 'cpu', args.warmup, args.min_time))
            if args.profile:
                row['profile'][batch] = onnxruntime_profile(path, feeds, args.threads,
                                                            args.profile)
            steps[batch] = (step, 'cpu')
    return row, steps


def _measure_executorch(model, entry, row, args, size) -> Tuple[dict, Steps]:
    from emo_mm.deploy.mobile import ExecuTorchProgram, export_executorch, set_executorch_threads
    if entry.inputs is not image_batch:
        raise ValueError('the executorch backend runs models of one image input')
    if args.threads:
        set_executorch_threads(args.threads)
    precision = row['precision']
    row['export_s'], row['outside_delegate'] = {}, {}
    steps = {}
    with tempfile.TemporaryDirectory() as folder:
        for batch in args.batch_sizes:
            path = os.path.join(folder, f'model_bs{batch}.pte')
            calibration = ([image.expand(batch, -1, -1, -1).contiguous()
                            for image in _random_calibration(entry, size)]
                           if precision == 'int8' else None)
            # Deploy mode was applied above where requested; the export changes only the
            # layout of its own copy (emo_mm.deploy.mobile.prepare_for_mobile).
            info = export_executorch(model, path, input_size=size, batch=batch,
                                     precision=precision, calibration=calibration,
                                     deploy=False)
            row['export_s'][batch] = info['seconds']
            row['outside_delegate'][batch] = info['outside']
            program = ExecuTorchProgram(path)  # holds the program in memory
            images = image_batch(batch, size, 'cpu')[0]
            step = functools.partial(program, images)
            _record(row, batch, *_timed(step, batch, 'cpu', args.warmup, args.min_time))
            steps[batch] = (step, 'cpu')
    return row, steps


# ---------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------
def device_name(device: str) -> str:
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{name}, {os.cpu_count()} logical cores'


def header(args, size) -> dict:
    versions = {'torch': torch.__version__}
    for package in ('onnxruntime', 'timm', 'mmpretrain'):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = 'not installed'
    if any(b.startswith('executorch') for b in args.backend):
        from importlib.metadata import PackageNotFoundError, version
        for package in ('executorch', 'torchao'):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                versions[package] = 'not installed'
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        versions=versions, device=args.device, device_name=device_name(args.device),
        torch_threads=torch.get_num_threads(),
        onnxruntime_threads=args.threads or 'onnxruntime default',
        executorch_threads=args.threads or 'ExecuTorch default', clock='wall (perf_counter)',
        load_average=[round(v, 2) for v in os.getloadavg()],
        task=args.task, mode='train step (forward, backward, AdamW)' if args.train else
        'inference (eval, inference_mode)', input=f'{size[0]}x{size[1]}',
        precision=args.amp or ' '.join(args.precision),
        no_path={f'{b} {p}': why for (b, p), why in NO_PATH.items()
                 if b in args.backend and p in args.precision and not args.amp},
        attention='eager' if args.eager_attention else 'auto',
        batch_sizes=args.batch_sizes, baseline=args.baseline, min_time_s=args.min_time,
        warmup=args.warmup, rounds=args.repeat)


def format_header(head: dict) -> str:
    versions = ', '.join(f'{k} {v}' for k, v in head['versions'].items())
    load = ' '.join(str(v) for v in head['load_average'])
    rounds = (f', median of {head["rounds"]} rounds' if head.get('rounds', 1) > 1 else '')
    return '\n'.join([
        f'emo_mm benchmark, {head["date"]}: {versions}',
        f'device {head["device"]} ({head["device_name"]}); threads: torch '
        f'{head["torch_threads"]}, onnxruntime {head["onnxruntime_threads"]}'
        + (f', ExecuTorch {head["executorch_threads"]}' if 'executorch' in head['versions']
           else '') + f'; load average {load} (1/5/15 min); clock {head["clock"]}',
        f'{head["task"]} at {head["input"]}, {head["mode"]}, {head["precision"]}, EMO attention '
        f'{head["attention"]}; >= {head["min_time_s"]} s per cell after {head["warmup"]} '
        f'warm-up calls{rounds}; ratios: img/s over {head["baseline"]} under the same setting',
    ] + [f'not timed: {pair} ({why})' for pair, why in head.get('no_path', {}).items()])


def add_ratios(rows: List[dict], baseline: str, backends: Sequence[str],
               precisions: Sequence[str] = ('fp32', )) -> None:
    """``ratio``: speed over the baseline model's under the same setting (backend,
    precision, deploy, compile); with several backends or precisions, ``backend_ratio``:
    speed over the same model's row of the first backend at the first precision (same
    deploy setting, not compiled)."""
    reference = {(r['backend'], r['precision'], r['deploy_requested'], r['compile']): r
                 for r in rows if r['model'] == baseline}
    first = {(r['model'], r['deploy_requested']): r for r in rows
             if r['backend'] == backends[0] and r['precision'] == precisions[0]
             and r['compile'] == 'off'}
    for row in rows:
        base = reference.get((row['backend'], row['precision'], row['deploy_requested'],
                              row['compile']))
        same_model = first.get((row['model'], row['deploy_requested']))
        row['ratio'], row['backend_ratio'] = {}, {}
        for batch, speed in row['images_per_s'].items():
            ref = base['images_per_s'].get(batch) if base else None
            row['ratio'][batch] = speed / ref if ref else None
            if len(backends) > 1 or len(precisions) > 1:
                ref = same_model['images_per_s'].get(batch) if same_model else None
                row['backend_ratio'][batch] = speed / ref if ref else None


def fastest(rows: List[dict], baseline: str, batch_sizes: Sequence[int]) -> List[dict]:
    """Per model and batch size, its fastest row that ran, and that speed over the
    baseline model's fastest (each at whichever backend, precision and deploy setting
    is fastest for it)."""
    best: Dict[Tuple[str, int], dict] = {}
    for row in rows:
        for batch, speed in row['images_per_s'].items():
            if not row['error'] and speed and speed > best.get(
                    (row['model'], batch), {}).get('images_per_s', 0):
                best[row['model'], batch] = dict(
                    model=row['model'], batch=batch, images_per_s=speed,
                    setting=f'{row["backend"]} {row["precision"]}, deploy {row["deploy"]}'
                    + (', compiled' if row['compile'] == 'on' else ''))
    out = []
    for model in dict.fromkeys(r['model'] for r in rows):
        for batch in batch_sizes:
            cell = best.get((model, batch))
            ref = best.get((baseline, batch))
            if cell:
                cell['ratio'] = cell['images_per_s'] / ref['images_per_s'] if ref else None
                out.append(cell)
    return out


def format_fastest(cells: List[dict], baseline: str) -> str:
    lines = [f'fastest row of each model, over {baseline}\'s fastest (same batch size):']
    for cell in cells:
        ratio = f'{cell["ratio"]:.2f}x' if cell['ratio'] else '-'
        lines.append(f'  {cell["model"][:21]:<22}bs{cell["batch"]:<4}{ratio:>7}  '
                     f'{cell["images_per_s"]:8.1f} img/s  ({cell["setting"]})')
    return '\n'.join(lines)


#: The precision of each runtime of :data:`emo_mm.deploy.peak.RUNTIMES` (its second word).
def _peak_precision(runtime: str) -> str:
    return runtime.split()[1]


def add_peak_shares(rows: List[dict], rates: Dict[str, object]) -> Dict[str, Tuple[str, float]]:
    """Each row's ``peak_share`` per batch size: its rate of multiply-accumulates (2
    operations each) over the fastest measured matrix-multiply rate of its precision
    (``rates``: :func:`emo_mm.deploy.peak.matmul_rates`'s ``peak``). Returns precision ->
    (runtime, GFLOP/s) of those peaks."""
    from emo_mm.deploy.peak import model_share
    peaks: Dict[str, Tuple[str, float]] = {}
    for runtime, rate in rates.items():
        precision = _peak_precision(runtime)
        if isinstance(rate, float) and rate > peaks.get(precision, ('', 0.))[1]:
            peaks[precision] = (runtime, rate)
    for row in rows:
        peak = peaks.get(row['precision'])
        row['peak_share'] = {
            batch: model_share(speed, row['flops'], peak[1])
            for batch, speed in row['images_per_s'].items()
            if peak and speed and row['flops']}
    return peaks


def format_peak(rows: List[dict], peaks: Dict[str, Tuple[str, float]],
                batch_sizes: Sequence[int]) -> str:
    lines = ['peak: ' + '; '.join(f'{precision} {rate:.0f} GFLOP/s ({runtime})'
                                  for precision, (runtime, rate) in peaks.items()),
             f'{"share of the peak of its precision":<52}'
             + ''.join(f'{f"bs{b}":>8}' for b in batch_sizes)]
    for row in rows:
        if row['error'] or not row.get('peak_share'):
            continue
        label = (f'{row["model"][:21]} {row["backend"]} {row["precision"]} deploy '
                 f'{row["deploy"]}' + (' compiled' if row['compile'] == 'on' else ''))
        lines.append(f'{label:<52}' + ''.join(
            f'{row["peak_share"][b]:>8.1%}' if b in row['peak_share'] else f'{"-":>8}'
            for b in batch_sizes))
    lines.append('(2 operations per multiply-accumulate; FLOPs per image are '
                 'emo_mm.utils.flops\'s, one per multiply-accumulate)')
    return '\n'.join(lines)


def format_table(rows: List[dict], batch_sizes: Sequence[int], baseline: str,
                 backends: Sequence[str] = ('torch', ),
                 precisions: Sequence[str] = ('fp32', )) -> str:
    several = len(backends) > 1 or len(precisions) > 1
    first = f'x {backends[0]}' + (f' {precisions[0]}' if len(precisions) > 1 else '')
    columns = [('model', 22, '<'), ('backend', 16, '<'), ('deploy', 7, '<'),
               ('compile', 8, '<'), ('prec', 5, '<'), ('params M', 9, '>'),
               ('GFLOPs', 8, '>')]
    for batch in batch_sizes:
        columns += [(f'bs{batch} img/s', 12, '>'), (f'x {baseline}'[:15], 17, '>')]
        if several:
            columns += [(first[:19], 21, '>')]
    line = ''.join(f'{title:{align}{width}}' for title, width, align in columns)
    out = [line, '-' * len(line)]
    for row in rows:
        cells = [row['model'][:21], row['backend'], row['deploy'], row['compile'],
                 row['precision'],
                 f'{row["params"] / 1e6:.2f}' if row['params'] is not None else '-',
                 f'{row["flops"] / 1e9:.3f}' if row['flops'] is not None else '-']
        for batch in batch_sizes:
            speed = row['images_per_s'].get(batch)
            ratio = row.get('ratio', {}).get(batch)
            cells += ['error' if row['error'] else f'{speed:.1f}' if speed else '-',
                      f'{ratio:.2f}' if ratio else '-']
            if several:
                ratio = row.get('backend_ratio', {}).get(batch)
                cells += [f'{ratio:.2f}' if ratio else '-']
        out.append(''.join(f'{cell:{align}{width}}'
                           for cell, (_, width, align) in zip(cells, columns)))
    return '\n'.join(out)


def parse_size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split('x'))
        if height > 0 and width > 0:
            return height, width
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f'--input takes HxW (positive ints), e.g. 800x1344; got '
                                     f'{text!r}.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS,
                        help='names from the model table (--list), timm:NAME or '
                        'mmpretrain:NAME')
    parser.add_argument('--list', action='store_true', help='print the model table and exit')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--backend', nargs='+', default=['torch'], choices=BACKENDS)
    parser.add_argument('--deploy', nargs='?', const='on', default='off',
                        choices=['on', 'off', 'both'])
    parser.add_argument('--compile', nargs='?', const='on', default='off',
                        choices=['on', 'off', 'both'])
    parser.add_argument('--precision', nargs='+', default=['fp32'], choices=PRECISIONS,
                        help='numeric precisions, each on every backend that runs it here')
    parser.add_argument('--peak', action='store_true',
                        help="time this machine's matrix multiplies per precision and give "
                        "each row its share of its precision's peak")
    parser.add_argument('--amp', nargs='?', const='fp16', default=None, choices=['fp16', 'bf16'],
                        help='torch rows under autocast to this dtype (GPU fp16 runs; on the '
                        'CPU, --precision bf16 is the same for torch rows)')
    parser.add_argument('--train', action='store_true',
                        help='time forward + backward + optimizer step')
    parser.add_argument('--input', type=parse_size, default=None,
                        help='HxW; benchmarks the bare backbones (e.g. 800x1344)')
    parser.add_argument('--task', choices=['classifier', 'backbone'], default=None,
                        help='default: classifier, backbone when --input is given')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--threads', type=int, default=None,
                        help='intra-op threads of torch, onnxruntime and ExecuTorch (default: '
                        'their own)')
    parser.add_argument('--baseline', default=None,
                        help='model the ratios refer to (default: the first of --models)')
    parser.add_argument('--min-time', type=float, default=3.0,
                        help='seconds of timed calls per cell')
    parser.add_argument('--warmup', type=int, default=3, help='untimed calls per cell')
    parser.add_argument('--repeat', type=int, default=1, metavar='R',
                        help='time every cell R times, round after round over all models, '
                        'and report the median (steadier ratios on a busy machine)')
    parser.add_argument('--eager-attention', action='store_true',
                        help='EMO attention on the eager path instead of the automatic choice')
    parser.add_argument('--profile', type=int, nargs='?', const=8, default=0, metavar='N',
                        help='print the N most time-consuming operators of each cell')
    parser.add_argument('--json', default=None, help='also write header and rows to this file')
    parser.add_argument('--end-to-end', nargs='+', default=None, metavar='TASK_OR_BUNDLE',
                        help='image-in, results-out timing of deploy bundles: detection, '
                        'segmentation (EMOv2 beside the toolboxes\' MobileNetV2 peers) or '
                        'bundle folders')
    parser.add_argument('--bundle-dir', default=os.path.join('work_dirs', 'benchmark_bundles'),
                        help='where --end-to-end exports its default bundles (reused)')
    args = parser.parse_args(argv)
    if args.end_to_end:
        if args.repeat < 1:
            parser.error('--repeat must be at least 1.')
        return args
    args.task = args.task or ('backbone' if args.input else 'classifier')
    args.baseline = args.baseline or args.models[0]
    if args.baseline not in args.models:
        parser.error(f'--baseline {args.baseline!r} is not among --models {args.models}.')
    if min(args.batch_sizes) < 1:
        parser.error('--batch-sizes must be positive.')
    if args.repeat < 1:
        parser.error('--repeat must be at least 1.')
    if args.profile < 0:
        parser.error('--profile N needs a positive number of operators.')
    if args.profile and any(b.startswith('executorch') for b in args.backend):
        parser.error('--profile profiles torch and onnxruntime cells; ExecuTorch programs '
                     'have no profile here: drop --profile or the executorch backends.')
    if args.device.startswith('cuda'):
        if not torch.cuda.is_available():
            parser.error('--device cuda: no CUDA device is visible to torch.')
        if set(args.backend) - {'torch'}:
            parser.error(f'--backend {" ".join(sorted(set(args.backend) - {"torch"}))} runs on '
                         'the CPU only; use --device cpu for it.')
    elif args.device != 'cpu':
        parser.error(f'--device {args.device!r}: use cpu, cuda or cuda:N.')
    if args.train and set(args.backend) - {'torch'}:
        parser.error('--train times PyTorch training steps; use --backend torch only.')
    if len(set(args.backend)) != len(args.backend):
        parser.error(f'--backend lists a backend twice: {args.backend}.')
    if len(set(args.precision)) != len(args.precision):
        parser.error(f'--precision lists a precision twice: {args.precision}.')
    if args.amp and args.precision != ['fp32']:
        parser.error('--amp and --precision bf16/int8 both choose a precision; use one.')
    if args.train and args.precision not in (['fp32'], ['bf16']):
        parser.error('--train times fp32 or bf16 (autocast) training steps, not int8.')
    if not settings_of(args):
        parser.error('no --backend runs any of --precision here: '
                     + '; '.join(f'{b} {p}: {NO_PATH[b, p]}' for b in args.backend
                                 for p in args.precision))
    if args.peak and args.device != 'cpu':
        parser.error("--peak measures the CPU's matrix-multiply rates; use --device cpu.")
    return args


def end_to_end(args) -> List[dict]:
    from emo_mm.deploy.speed import run_end_to_end
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    import onnxruntime
    print(f'emo_mm end-to-end benchmark, {now}: onnxruntime {onnxruntime.__version__}, '
          f'{device_name("cpu")}; onnxruntime threads {args.threads or "default"}; load '
          f'average {load}; >= {args.min_time} s per cell after {args.warmup} warm-up calls, '
          f'median of {args.repeat} interleaved rounds', flush=True)
    rows, table = run_end_to_end(args.end_to_end, args.threads, args.min_time, args.warmup,
                                 args.repeat, args.baseline, args.bundle_dir, args.profile)
    print()
    print(table)
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(rows, file, indent=1, default=str)
        print(f'wrote {args.json}')
    return rows


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    if args.end_to_end:
        return end_to_end(args)
    if args.list:
        for name, entry in MODEL_TABLE.items():
            print(f'{name:<30}{entry.source}')
        return []
    entries = {name: lookup(name) for name in args.models}
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True
    size = args.input or entries[args.models[0]].default_size
    head = header(args, size)
    print(format_header(head), flush=True)
    rows, flops_cache, later = [], {}, []
    if args.repeat > 1:
        print(f'round 1/{args.repeat}', flush=True)
    for setting in settings_of(args):
        for name, entry in entries.items():
            steps = {}
            try:
                row, steps = measure(name, entry, setting, args, size, flops_cache)
            except Exception as error:  # one failing model must not hide the others
                row = dict(model=name, source=entry.source, backend=setting.backend,
                           deploy='?', compile='on' if setting.compile else 'off',
                           precision=precision_of(setting, args), params=None, flops=None,
                           images_per_s={}, first_call_s={}, runs={}, profile={},
                           error=f'{type(error).__name__}: {error}'.splitlines()[0][:300])
                if os.environ.get('EMO_MM_BENCHMARK_DEBUG'):
                    traceback.print_exc()
            row['deploy_requested'] = setting.deploy
            rows.append(row)
            if args.repeat > 1 and steps:
                later.append((row, steps))  # kept alive (models, sessions) for the rounds
            speeds = ', '.join(f'bs{b} {s:.1f} img/s (first call {row["first_call_s"][b]:.2f} s'
                               + (f', export {row["export_s"][b]:.1f} s, outside XNNPACK '
                                  f'{row["outside_delegate"][b] or "nothing"}'
                                  if b in row.get('export_s', {}) else '') + ')'
                               for b, s in row['images_per_s'].items())
            print(f'  {name} [{setting.label()}]: {row["error"] or speeds}', flush=True)
            for batch, shares in row.get('profile', {}).items():
                print(f'    profile bs{batch}: {format_profile(shares)}', flush=True)
    # Later rounds time every cell again in the same order, so a change in the machine's
    # speed during the run (other load, clocks) reaches every model alike; each cell
    # reports its median.
    for index in range(2, args.repeat + 1):
        print(f'round {index}/{args.repeat}', flush=True)
        for row, steps in later:
            if row['error']:
                continue
            try:
                for batch, (step, device) in steps.items():
                    _record(row, batch,
                            _timed(step, batch, device, args.warmup, args.min_time)[0])
            except Exception as error:  # e.g. out of memory: keep the other rows going
                row['error'] = f'round {index}: {type(error).__name__}: {error}'.splitlines()[0]
                print(f'  {row["model"]}: {row["error"]}', flush=True)
                continue
            speeds = ', '.join(f'bs{b} {row["runs"][b][-1]:.1f} img/s' for b in steps)
            print(f'  {row["model"]} [{row["backend"]} {row["precision"]}, deploy '
                  f'{row["deploy"]}, compile {row["compile"]}]: {speeds}', flush=True)
    for row in rows:
        row['images_per_s'] = {b: statistics.median(r) for b, r in row['runs'].items()}
    if args.repeat > 1:
        print(f'\nimg/s: median of {args.repeat} rounds per cell')
    add_ratios(rows, args.baseline, args.backend, args.precision)
    rates, peaks = None, None
    if args.peak:
        from emo_mm.deploy.peak import format_rates, matmul_rates
        print('peak: timing matrix multiplies', flush=True)
        rates = matmul_rates(threads=args.threads, warmup=args.warmup,
                             min_time=max(args.min_time, 0.1), rounds=args.repeat)
        peaks = add_peak_shares(rows, rates['peak'])
    print()
    print(format_table(rows, args.batch_sizes, args.baseline, args.backend, args.precision))
    failed = [r for r in rows if r['error']]
    for row in failed:
        print(f'error: {row["model"]} [{row["backend"]} {row["precision"]}]: {row["error"]}')
    best = None
    if len(settings_of(args)) > 1:
        best = fastest(rows, args.baseline, args.batch_sizes)
        print()
        print(format_fastest(best, args.baseline))
    if rates:
        print()
        print(format_rates(rates))
        print(format_peak(rows, peaks, args.batch_sizes))
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(dict(header=head, rows=rows, fastest=best, matmul_rates=rates),
                      file, indent=1, default=str)
        print(f'wrote {args.json}')
    return rows


if __name__ == '__main__':
    main()
    sys.exit(0)
