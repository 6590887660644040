"""This machine's matrix-multiply rate per precision and runtime (the benchmark's peak row).

>>> from emo_mm.deploy.peak import matmul_rates, model_share
>>> rates = matmul_rates(threads=2)                        # doctest: +SKIP
>>> rates['peak']['torch bf16']                            # GFLOP/s  # doctest: +SKIP
>>> model_share(images_per_s=50, macs=1.0e9, rate_gflops=165.)  # doctest: +SKIP
0.606...

A rate counts 2 floating-point (or integer) operations per multiply-accumulate, as
matrix-multiply peaks are quoted; models' FLOPs in this repository are fvcore's, one per
multiply-accumulate, so :func:`model_share` doubles them. Each rate is timed like
``tools/analysis_tools/benchmark.py`` times a cell: ``warmup`` untimed calls, then calls until
at least ``min_time`` seconds and 3 calls have passed; the rate is calls times work over time.

Runtimes and precisions measured (each where this machine and the installed packages
run it; a failing one is reported with its error, not dropped):

* ``torch fp32`` / ``torch bf16``: ``torch.matmul`` (oneDNN / MKL);
* ``onnxruntime fp32``: a MatMul node with a constant right operand (prepacked, as a
  layer's weights are);
* ``onnxruntime int8 MatMulInteger``: u8 x s8 -> int32;
* ``onnxruntime int8 QLinearMatMul``: u8 x s8 -> u8, requantized.
"""
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

#: (M, K, N) of the measured products: a large square one (the peak) and the shapes of
#: EMOv2-5M's layers at 224x224, batch 1: a stage-2 1x1 conv (56x56 tokens, 48 -> 96
#: channels), a stage-3 one (14x14 tokens, 160 -> 640), and the classifier head.
SHAPES = {
    'square 1024': (1024, 1024, 1024),
    'stage-2 1x1 conv': (3136, 48, 96),
    'stage-3 1x1 conv': (196, 160, 640),
}
PEAK_SHAPE = 'square 1024'


def time_calls(step: Callable[[], None], warmup: int = 3, min_time: float = 1.0,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Calls per second of ``step`` after ``warmup`` untimed calls, over at least
    ``min_time`` seconds and 3 calls (``tools/analysis_tools/benchmark.py``'s cell timing).
    ``clock``: ``time.process_time`` counts this process's CPU time instead of wall time."""
    for _ in range(warmup):
        step()
    runs, start = 0, clock()
    while True:
        step()
        runs += 1
        elapsed = clock() - start
        if elapsed >= min_time and runs >= 3:
            return runs / elapsed


def _torch_step(shape, dtype_name: str, threads: Optional[int]):
    import torch
    if threads:
        torch.set_num_threads(threads)
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}[dtype_name]
    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(m, k, generator=generator).to(dtype)
    b = torch.rand(k, n, generator=generator).to(dtype)
    out = torch.empty(m, n, dtype=dtype)

    def step():
        with torch.inference_mode():
            torch.matmul(a, b, out=out)
    return step


def _onnx_matmul(shape, kind: str):
    """A one-node graph: input A (M, K), constant B (K, N)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    m, k, n = shape
    rng = np.random.default_rng(0)
    if kind == 'fp32':
        b = numpy_helper.from_array(rng.random((k, n), dtype=np.float32), 'B')
        node = helper.make_node('MatMul', ['A', 'B'], ['Y'])
        a_type, y_type, inits = TensorProto.FLOAT, TensorProto.FLOAT, [b]
    else:
        b = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), 'B')
        a_type = TensorProto.UINT8
        if kind == 'MatMulInteger':
            node = helper.make_node('MatMulInteger', ['A', 'B'], ['Y'])
            y_type, inits = TensorProto.INT32, [b]
        else:
            scalars = [numpy_helper.from_array(np.array(v, dtype), name) for name, v, dtype in (
                ('a_scale', 0.02, np.float32), ('a_zero', 128, np.uint8),
                ('b_scale', 0.01, np.float32), ('b_zero', 0, np.int8),
                ('y_scale', 0.5, np.float32), ('y_zero', 128, np.uint8))]
            node = helper.make_node('QLinearMatMul', ['A', 'a_scale', 'a_zero', 'B', 'b_scale',
                                                      'b_zero', 'y_scale', 'y_zero'], ['Y'])
            y_type, inits = TensorProto.UINT8, [b] + scalars
    a_info = helper.make_tensor_value_info('A', a_type, [m, k])
    y_info = helper.make_tensor_value_info('Y', y_type, [m, n])
    graph = helper.make_graph([node], 'matmul', [a_info], [y_info], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _onnxruntime_step(shape, kind: str, threads: Optional[int]):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(_onnx_matmul(shape, kind).SerializeToString(), options,
                                   providers=['CPUExecutionProvider'])
    m, k, _ = shape
    rng = np.random.default_rng(1)
    a = (rng.random((m, k), dtype=np.float32) if kind == 'fp32' else
         rng.integers(0, 256, (m, k), dtype=np.uint8))
    feeds = {'A': a}
    return lambda: session.run(None, feeds)


#: Name -> builder(shape, threads) of one product's call.
RUNTIMES: Dict[str, Callable] = {
    'torch fp32': lambda shape, threads: _torch_step(shape, 'fp32', threads),
    'torch bf16': lambda shape, threads: _torch_step(shape, 'bf16', threads),
    'onnxruntime fp32': lambda shape, threads: _onnxruntime_step(shape, 'fp32', threads),
    'onnxruntime int8 MatMulInteger': (
        lambda shape, threads: _onnxruntime_step(shape, 'MatMulInteger', threads)),
    'onnxruntime int8 QLinearMatMul': (
        lambda shape, threads: _onnxruntime_step(shape, 'QLinearMatMul', threads)),
}


def matmul_rates(threads: Optional[int] = None,
                 shapes: Optional[Dict[str, Tuple[int, int, int]]] = None,
                 runtimes: Optional[Sequence[str]] = None,
                 warmup: int = 3,
                 min_time: float = 1.0,
                 rounds: int = 1,
                 clock: Callable[[], float] = time.perf_counter) -> Dict[str, Dict[str, object]]:
    """Measured matrix-multiply rates in GFLOP/s (2 operations per multiply-accumulate).

    Args:
        threads (int, optional): Intra-op threads of torch and onnxruntime.
        shapes (dict): Name -> (M, K, N); default :data:`SHAPES`.
        runtimes (list[str]): Keys of :data:`RUNTIMES`; default all.
        warmup (int): Untimed calls per cell.
        min_time (float): Seconds per timed cell.
        rounds (int): Each cell is timed in ``rounds`` rounds over all cells; the median
            is kept (a busy machine's drifts then reach every runtime alike).
        clock (callable): See :func:`time_calls`.

    Returns:
        dict: ``{shape name: {runtime: GFLOP/s or 'error: ...'}}`` and ``peak``: the
        rates at :data:`PEAK_SHAPE` (or the first shape).
    """
    shapes = dict(shapes or SHAPES)
    runtimes = list(runtimes or RUNTIMES)
    unknown = [name for name in runtimes if name not in RUNTIMES]
    if unknown:
        raise ValueError(f'Unknown runtime(s) {unknown}; choose from {list(RUNTIMES)}.')
    steps, results = {}, {name: {} for name in shapes}
    for shape_name, shape in shapes.items():
        for runtime in runtimes:
            try:
                steps[shape_name, runtime] = RUNTIMES[runtime](shape, threads)
            except Exception as error:  # e.g. a runtime without this precision here
                results[shape_name][runtime] = f'error: {type(error).__name__}: {error}'[:200]
    samples: Dict[Tuple[str, str], list] = {key: [] for key in steps}
    for _ in range(max(1, rounds)):
        for (shape_name, runtime), step in steps.items():
            m, k, n = shapes[shape_name]
            samples[shape_name, runtime].append(
                time_calls(step, warmup, min_time, clock) * 2 * m * k * n / 1e9)
    for (shape_name, runtime), values in samples.items():
        results[shape_name][runtime] = float(np.median(values))
    peak = PEAK_SHAPE if PEAK_SHAPE in shapes else next(iter(shapes))
    results['peak'] = dict(results[peak])
    return results


def model_share(images_per_s: float, macs: float, rate_gflops: float) -> float:
    """The fraction of a matrix-multiply rate a model uses: ``images/s x 2 x MACs``
    (``macs`` per image, fvcore FLOPs) over the rate in GFLOP/s."""
    if rate_gflops <= 0:
        raise ValueError(f'rate_gflops must be positive, got {rate_gflops}.')
    return images_per_s * 2 * macs / (rate_gflops * 1e9)


def format_rates(rates: Dict[str, Dict[str, object]]) -> str:
    """A table: one row per shape, one column per runtime (GFLOP/s)."""
    runtimes = list(dict.fromkeys(r for name, row in rates.items() if name != 'peak'
                                  for r in row))
    width = max(len(r) for r in runtimes) + 2
    lines = [f'{"GFLOP/s (2 per MAC)":<22}' + ''.join(f'{r:>{width}}' for r in runtimes)]
    for name, row in rates.items():
        if name == 'peak':
            continue
        cells = []
        for runtime in runtimes:
            value = row.get(runtime)
            cells.append(f'{value:>{width}.1f}' if isinstance(value, float) else
                         f'{"error" if value else "-":>{width}}')
        lines.append(f'{name:<22}' + ''.join(cells))
    return '\n'.join(lines)
