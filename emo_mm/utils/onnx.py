"""ONNX export of emo_mm models (classifiers and bare backbones) and its check against
onnxruntime.

>>> from emo_mm.apis import build_model, load_config
>>> from emo_mm.utils.onnx import export_onnx, verify_onnx
>>> model = build_model(load_config('emov2_1m_in1k')).eval()
>>> export_onnx(model, 'emov2_1m.onnx')                         # doctest: +SKIP
>>> verify_onnx('emov2_1m.onnx', model, [(1, 3, 224, 224), (2, 3, 193, 257)])  # doctest: +SKIP

Batch, height and width are dynamic axes of the exported graph. The model is traced
once, at :data:`TRACE_SIZE`, an input size whose feature maps need window padding in
every attention stage of every EMO configuration, so the traced graph holds the padding
and cropping operations; their amounts are computed from the input shape inside the
graph (a pad of zero where none is needed), which :func:`verify_onnx` checks on sizes
that need padding and sizes that do not. ``dynamic_spatial=False`` exports one input
size instead (a dynamic batch, through torch.export): a smaller graph that onnxruntime
runs faster.
"""
import contextlib
import io
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..models import switch_to_deploy  # noqa: F401  (re-exported for the export tools)

#: ONNX operator set of the exported graphs. 17 has LayerNormalization as one operator
#: and is run by every onnxruntime release of the last years.
DEFAULT_OPSET = 17

#: (H, W) the model is traced at. At strides 16 and 32 it gives 17x22 and 9x11 maps:
#: not multiples of 7, 8 or 10 (the windows of every EMO config), so each attention stage
#: pads and crops while tracing and the graph keeps those operations.
TRACE_SIZE = (272, 344)


class TensorOutput(nn.Module):
    """Runs an OpenMMLab model in ``mode='tensor'`` (raw outputs, no data samples).

    An mmpretrain ``ImageClassifier`` then returns its class scores (before softmax), a
    backbone its feature maps; modules without ``mode`` are called as they are.

    Args:
        model (nn.Module): The model to wrap.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        if _takes_mode(self.model):
            return self.model(images, mode='tensor')
        return self.model(images)


def _takes_mode(model: nn.Module) -> bool:
    from mmengine.model import BaseModel
    return isinstance(model, BaseModel)


def _eager_attention(model: nn.Module) -> None:
    """Routes EMO attention through its eager path (same outputs as the fused one).

    The fused path fills the window padding of the 1x1 projections with their bias
    through ``expand_as`` into a fresh tensor, which the tracer records with the trace
    size's shape; the eager path pads with ``F.pad``, whose amounts stay computed from
    the input. ONNX has no fused attention kernel to lose: onnxruntime fuses the
    MatMul-Softmax-MatMul chain itself.
    """
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = False


def output_names(outputs) -> List[str]:
    """ONNX output names: ``output`` for one tensor, ``output0..N`` for a tuple."""
    if isinstance(outputs, torch.Tensor):
        return ['output']
    return [f'output{i}' for i in range(len(outputs))]


def flatten_outputs(outputs) -> List[torch.Tensor]:
    """The tensors of a model's output (a tensor or nested tuples / lists), in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    flat = []
    for item in outputs:
        flat += flatten_outputs(item)
    return flat


@contextlib.contextmanager
def _quiet_tracer():
    """Silences TracerWarnings about shape comparisons: each one is a branch the trace
    size fixes on purpose (see :data:`TRACE_SIZE`), and :func:`verify_onnx` checks the
    graph on other sizes."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript',
                                category=DeprecationWarning)
        yield


def export_onnx(model: nn.Module,
                path: str,
                in_channels: int = 3,
                trace_size: Tuple[int, int] = TRACE_SIZE,
                opset: int = DEFAULT_OPSET,
                deploy: bool = True,
                dynamic_spatial: bool = True,
                stack_partitions: bool = True) -> Dict[str, object]:
    """Exports ``model`` (eval mode) to ``path`` with a dynamic batch axis (and dynamic
    height and width unless ``dynamic_spatial=False``).

    ``model`` is changed in place for the export and stays so: deploy mode (``deploy``)
    and the eager attention path (same outputs). EMO backbones trace in their own memory
    format: channels-last (the default) gives the faster graph, as the window attention
    then reads its maps as (N, H, W, C) and its window copies move channel vectors.

    Args:
        model (nn.Module): A classifier, a backbone, or any module taking an image batch.
        path (str): Output ``.onnx`` file; its folder must exist.
        in_channels (int): Input channels. Defaults to 3.
        trace_size (tuple[int, int]): (H, W) of the example input. Defaults to
            :data:`TRACE_SIZE`.
        opset (int): ONNX operator set. Defaults to :data:`DEFAULT_OPSET`.
        deploy (bool): Switch the model to deploy mode first where it has one.
        dynamic_spatial (bool): Dynamic height and width (TorchScript tracing). False
            fixes them to ``trace_size`` (the batch stays dynamic) and exports with
            torch.export: a graph for one input size, without the shape arithmetic and
            the zero-size padding a dynamic one carries, and faster in onnxruntime.
        stack_partitions (bool): False exports EMOv2's spanning attention with each
            partition attended on its own (same outputs, no stack / unstack copies; the
            int8 path of :mod:`emo_mm.deploy.quantize` uses it). The model keeps the setting.

    Returns:
        dict: ``deployed`` (names of the switched modules), ``inputs`` and ``outputs``
        (graph input / output names), ``opset``.
    """
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise FileNotFoundError(f'Folder {folder} of the ONNX output does not exist; create it '
                                f'or choose another --out.')
    model.eval()  # not `model = model.eval()`: some mmpretrain backbones' train() returns None
    deployed = switch_to_deploy(model) if deploy else []
    _eager_attention(model)
    from ..models.attention import set_stack_partitions
    set_stack_partitions(model, stack_partitions)
    wrapper = TensorOutput(model)
    wrapper.eval()
    example = torch.rand(1, in_channels, *trace_size)
    with torch.no_grad():
        names = output_names(wrapper(example))
    with torch.no_grad(), _quiet_tracer():
        if dynamic_spatial:
            _export_traced(wrapper, example, path, names, opset)
        else:
            opset = _export_fixed_size(wrapper, example, path, names, opset)
    return dict(deployed=deployed, inputs=['input'], outputs=names, opset=opset)


def _export_traced(wrapper: nn.Module, example: torch.Tensor, path: str, names: List[str],
                   opset: int) -> None:
    """TorchScript tracing with dynamic batch, height and width: the padding amounts stay
    computed from the input's shape (:data:`TRACE_SIZE`)."""
    dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
    # Output maps' sizes follow the input's; naming them per output keeps them apart.
    for name in names:
        dynamic_axes[name] = {0: 'batch'}
    torch.onnx.export(wrapper, (example, ), path, input_names=['input'], output_names=names,
                      dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def _export_fixed_size(wrapper: nn.Module, example: torch.Tensor, path: str,
                       names: List[str], opset: int) -> int:
    """torch.export with a dynamic batch only; returns the opset written.

    With the spatial size fixed, every shape but the batch is a constant of the graph:
    no shape arithmetic is exported (the traced dynamic graph of EMOv2-5M has about
    3,700 nodes, this one about 660). torch.export specialises a batch of 1, so the
    example has 2. Opset 18 at least: the exporter's own.
    """
    example = example.expand(2, *example.shape[1:]).contiguous()
    opset = max(opset, 18)
    batch = torch.export.Dim('batch', min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        torch.onnx.export(wrapper, (example, ), path, input_names=['input'],
                          output_names=names, dynamic_shapes=({0: batch}, ),
                          opset_version=opset, dynamo=True, optimize=True, verbose=False)
    return opset


def onnx_session(path: str, threads: Optional[int] = None, profile_prefix: Optional[str] = None):
    """An onnxruntime CPU session for ``path`` (``threads`` intra-op threads).

    ``profile_prefix``: record a profile (onnxruntime writes it to ``<prefix>_<date>.json``
    when ``session.end_profiling()`` is called; it would land in the working directory
    without a prefix).
    """
    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('onnxruntime is not installed; `pip install onnxruntime` (pinned in '
                          'requirements) to run or verify ONNX models.') from error
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def operator_kernel_times(path: str, feeds: Dict, threads: Optional[int] = None,
                          calls: int = 3) -> Dict[str, float]:
    """Kernel time (microseconds, summed over ``calls`` runs) per ONNX operator type of the
    graph at ``path`` on ``feeds``, from onnxruntime's profiler; its file goes to a
    temporary folder and is deleted. The first run (allocation, prepacking) is left out."""
    import json
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        session = onnx_session(path, threads, profile_prefix=osp.join(folder, 'profile'))
        for _ in range(calls + 1):
            session.run(None, feeds)
        with open(session.end_profiling()) as file:
            events = json.load(file)
    times, runs = {}, 0
    for event in events:
        if event.get('name') == 'model_run':
            runs += 1
        if (runs > 1 and event.get('cat') == 'Node'
                and event.get('name', '').endswith('_kernel_time')):
            op = event.get('args', {}).get('op_name', '?')
            times[op] = times.get(op, 0.) + event['dur']
    return times


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|."""
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    if actual.shape != expected.shape:
        raise ValueError(f'Output shapes differ: ONNX {tuple(actual.shape)}, PyTorch '
                         f'{tuple(expected.shape)}.')
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def verify_onnx(path: str,
                model: nn.Module,
                shapes: Sequence[Sequence[int]],
                tolerance: Optional[float] = 1e-4,
                threads: Optional[int] = None,
                seed: int = 0) -> List[dict]:
    """Runs ``path`` with onnxruntime and ``model`` with PyTorch on random inputs.

    Args:
        path (str): The exported ONNX file.
        model (nn.Module): The model it was exported from (in the same mode: deployed if
            the export deployed it).
        shapes (list[tuple]): Input shapes (N, C, H, W) to compare on.
        tolerance (float, optional): Largest allowed relative error (max abs difference
            over max abs reference, per output); exceeding it raises. None only reports.
        threads (int, optional): onnxruntime intra-op threads.
        seed (int): Seed of the random inputs.

    Returns:
        list[dict]: Per shape: ``shape``, ``error`` (the largest relative error over the
        outputs) and ``output_shapes``.
    """
    session = onnx_session(path, threads)
    wrapper = TensorOutput(model)
    wrapper.eval()
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        images = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected = flatten_outputs(wrapper(images))
        actual = session.run(None, {'input': images.numpy()})
        if len(actual) != len(expected):
            raise AssertionError(f'{path} gives {len(actual)} outputs, the model '
                                 f'{len(expected)}.')
        error = max(relative_error(a, e) for a, e in zip(actual, expected))
        results.append(dict(shape=tuple(shape), error=error,
                            output_shapes=[tuple(a.shape) for a in actual]))
        if tolerance is not None and not error <= tolerance:
            raise AssertionError(f'{path} differs from PyTorch on input {tuple(shape)}: '
                                 f'relative error {error:.3g} > {tolerance:g}.')
    return results


def model_size_mb(path: str) -> float:
    return os.path.getsize(path) / 2**20
