"""Speed of one model's graphs in several precisions and quantization formats, side by side.

    python tools/analysis_tools/precision_study.py --models EMOv2-5M EMOv2-1M --threads 2 \\
        --repeat 3 \\
        --variants fp32 int8-qdq-u8 int8-qop-u8 int8-qdq-s8 int8-qdq-u8-raw

Every model of ``tools/analysis_tools/benchmark.py``'s table is built with random weights in deploy
mode, exported at 224x224 (fixed size, dynamic batch) and turned into each variant's
onnxruntime graph; then every (model, variant, batch size) cell is timed with the
benchmark's own timing (``--min-time`` seconds after ``--warmup`` calls), in ``--repeat``
rounds over all cells, and the medians are reported with each variant's ratio to the
model's fp32 graph. ``--profile N`` prints each cell's N most expensive operator types
(onnxruntime's profiler, milliseconds per call).

Variants (``--variants``): ``fp32`` (the exported graph in onnxruntime; every ratio
refers to it), ``fp32-gelu`` (the same with GELU fused, :mod:`emo_mm.deploy.rewrite`),
``int8-<fmt>-<act>[-<option>...]`` (below), and the PyTorch ones
``torch-<dtype>[-cl][-compile]`` and ``aoti-<dtype>[-cl]``: ``dtype`` ``fp32``, ``amp``
(bf16 autocast) or ``bf16`` (the model converted to bf16); ``cl`` channels-last model and
input; ``compile`` ``torch.compile`` (static shapes, one graph per batch size); ``aoti``
torch.export + AOTInductor (a compiled package per batch size). int8 variants:
``fmt`` ``qdq`` or ``qop`` (QOperator), ``act`` ``u8`` or ``s8``, options ``raw`` (no
graph rewrites, no basic optimisation), ``silu`` (SiLU fused, stays float), ``fattn``
(attention core in float), ``fdw`` (depth-wise convolutions in float), ``split`` (the
q/k conv split in two), ``int8ok`` (the session option that lets onnxruntime fuse
s8 activations on x86: ``session.qdqisint8allowed``). Calibration uses ``--calib``
random images: speed does not depend on the weights' or the ranges' values.
"""
import argparse
import copy
import functools
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import benchmark  # noqa: E402  (./benchmark.py: model table, timing, profiles)

import emo_mm  # noqa: E402,F401
from emo_mm.utils.flops import count_flops  # noqa: E402
from emo_mm.utils.onnx import export_onnx  # noqa: E402

SIZE = (224, 224)


def parse_variant(name: str) -> dict:
    """``int8-qdq-u8-fattn`` -> QuantizeConfig arguments and session options;
    ``torch-bf16-cl`` -> the PyTorch settings. A ``@u`` suffix: the graph is exported with
    each attention partition on its own (``stack_partitions=False``)."""
    if name.endswith('@u'):
        return dict(parse_variant(name[:-2]), unstacked=True)
    if name in ('fp32', 'fp32-gelu'):
        return dict(kind=name)
    if name.startswith(('torch-', 'aoti-')):
        parts = name.split('-')
        options = set(parts[2:])
        if parts[1] not in ('fp32', 'amp', 'bf16') or options - {'cl', 'compile'} or (
                parts[0] == 'aoti' and ('compile' in options or parts[1] == 'amp')):
            raise argparse.ArgumentTypeError(
                f'Unknown variant {name!r}: torch-{{fp32|amp|bf16}}[-cl][-compile] or '
                'aoti-{fp32|bf16}[-cl].')
        return dict(kind=parts[0], dtype=parts[1], channels_last='cl' in options,
                    compile='compile' in options)
    parts = name.split('-')
    if len(parts) < 3 or parts[0] != 'int8' or parts[1] not in ('qdq', 'qop') \
            or parts[2] not in ('u8', 's8'):
        raise argparse.ArgumentTypeError(
            f'Unknown variant {name!r}: fp32, fp32-gelu or '
            'int8-{qdq|qop}-{u8|s8}[-raw|-silu|-fattn|-split|-int8ok]')
    options = set(parts[3:])
    unknown = options - {'raw', 'silu', 'fattn', 'fdw', 'int8ok', 'split'}
    if unknown:
        raise argparse.ArgumentTypeError(f'Unknown option(s) {sorted(unknown)} in {name!r}.')
    rewrites = () if 'raw' in options else ('gelu', ) + tuple(
        option for option in ('silu', 'split') if option in options)
    config = dict(quant_format='qdq' if parts[1] == 'qdq' else 'qoperator',
                  activation_type=parts[2], rewrites=rewrites, optimize='raw' not in options,
                  float_attention='fattn' in options, float_depthwise='fdw' in options)
    session = {'session.qdqisint8allowed': '1'} if 'int8ok' in options else {}
    return dict(kind='int8', config=config, session=session)


def make_graph(variant: str, fp32_path: str, folder: str, calib: List[dict]) -> str:
    from emo_mm.deploy.quantize import QuantizeConfig, load_model, quantize, save_model
    from emo_mm.deploy.rewrite import fuse_gelu
    spec = parse_variant(variant)
    if spec['kind'] == 'fp32':
        return fp32_path
    path = osp.join(folder, f'{variant.replace("@", "_")}.onnx')
    if spec['kind'] == 'fp32-gelu':
        model = load_model(fp32_path)
        fuse_gelu(model)
        return save_model(model, path)
    quantize(fp32_path, path, calib, QuantizeConfig(**spec['config']))
    return path


def torch_steps(model, spec: dict, batch_sizes, rng) -> dict:
    """Batch size -> one inference call of ``model`` under a torch variant."""
    model = copy.deepcopy(model).eval()
    dtype = torch.bfloat16 if spec['dtype'] == 'bf16' else torch.float32
    memory_format = torch.channels_last if spec['channels_last'] else torch.contiguous_format
    model = model.to(dtype=dtype, memory_format=memory_format)
    steps = {}
    for batch in batch_sizes:
        images = torch.from_numpy(rng.random((batch, 3, *SIZE), dtype=np.float32))
        images = images.to(dtype=dtype).contiguous(memory_format=memory_format)
        autocast = spec['dtype'] == 'amp'
        if spec['kind'] == 'aoti':
            with torch.inference_mode():
                program = torch.export.export(model, (images, ))
            folder = tempfile.mkdtemp(prefix='aoti.')
            package = torch._inductor.aoti_compile_and_package(
                program, package_path=osp.join(folder, 'model.pt2'))
            runner = torch._inductor.aoti_load_package(package)
        else:
            runner = torch.compile(model, dynamic=False) if spec['compile'] else model

        def step(runner=runner, images=images, autocast=autocast):
            with torch.inference_mode(), torch.autocast('cpu', torch.bfloat16,
                                                        enabled=autocast):
                return runner(images)
        steps[batch] = step
    return steps


def session(path: str, threads: int, options: Dict[str, str]):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    for key, value in options.items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def profile(path: str, feeds, threads: int, options: Dict[str, str], top: int, calls: int = 5):
    """Milliseconds per call by operator type (onnxruntime's profiler)."""
    import json
    with tempfile.TemporaryDirectory() as folder:
        sess = _profiling_session(path, threads, options, osp.join(folder, 'p'))
        for _ in range(calls + 1):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    times, runs = {}, 0
    for event in events:
        if event.get('name') == 'model_run':
            runs += 1
        if runs > 1 and event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            op = event['args']['op_name']
            times[op] = times.get(op, 0.) + event['dur'] / calls / 1e3
    return sorted(times.items(), key=lambda kv: -kv[1])[:top]


def _profiling_session(path, threads, options, prefix):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = prefix
    for key, value in options.items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['EMOv2-5M'])
    parser.add_argument('--variants', nargs='+', default=['fp32', 'int8-qdq-u8'])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--min-time', type=float, default=2.0)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--calib', type=int, default=8)
    parser.add_argument('--profile', type=int, nargs='?', const=10, default=0)
    parser.add_argument('--work-dir', default=None, help='keep the graphs here')
    parser.add_argument('--versus', nargs='+', default=[], metavar='A:B',
                        help='print, per batch size, the fastest variant of model A over '
                        'the fastest of model B (e.g. EMOv2-5M:EdgeNeXt-S)')
    parser.add_argument('--best-of', nargs='+', default=None, metavar='VARIANT',
                        help='variants --versus picks the fastest from (default: all)')
    parser.add_argument('--peak', action='store_true',
                        help="measure this machine's matrix-multiply rates (emo_mm.deploy."
                        "peak) with the same threads and clock, and print each cell's share")
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help="wall: the benchmark's timing; cpu: the same loop on this "
                        "process's CPU time, which other processes' load does not inflate "
                        "(with --threads 1 it is the computation's own time)")
    args = parser.parse_args(argv)
    for variant in args.variants:
        parse_variant(variant)
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    head = benchmark.header(argparse.Namespace(
        device='cpu', threads=args.threads, task='classifier', train=False, amp=None,
        backend=['torch', 'onnxruntime'], precision=['fp32', 'bf16', 'int8'],
        eager_attention=False, batch_sizes=args.batch_sizes, baseline='fp32 of each model',
        min_time=args.min_time, warmup=args.warmup, repeat=args.repeat), SIZE)
    print(benchmark.format_header(head), flush=True)
    folder = args.work_dir or tempfile.mkdtemp(prefix='precision_study.')
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    calib = [{'input': rng.random((1, 3, *SIZE), dtype=np.float32)} for _ in range(args.calib)]
    cells = []  # (model, variant, batch, step, row)
    rows = []
    macs = {}
    for name in args.models:
        entry = benchmark.lookup(name)
        torch.manual_seed(0)
        model = entry.build().eval()
        benchmark.apply_deploy(model)
        macs[name] = count_flops(model, torch.rand(1, 3, *SIZE))['flops']
        model_dir = osp.join(folder, name)
        os.makedirs(model_dir, exist_ok=True)
        fp32_path = osp.join(model_dir, 'fp32.onnx')
        export_onnx(model, fp32_path, trace_size=SIZE, deploy=False, dynamic_spatial=False)
        if any(v.endswith('@u') for v in args.variants):
            export_onnx(copy.deepcopy(model), osp.join(model_dir, 'fp32@u.onnx'),
                        trace_size=SIZE, deploy=False, dynamic_spatial=False,
                        stack_partitions=False)
        for variant in args.variants:
            row = dict(model=name, variant=variant, runs={}, wall_runs={}, error=None,
                       profile={})
            rows.append(row)
            try:
                spec = parse_variant(variant)
                if spec['kind'] in ('torch', 'aoti'):
                    for batch, step in torch_steps(model, spec, args.batch_sizes,
                                                   rng).items():
                        step()
                        cells.append((row, batch, step))
                    continue
                source = osp.join(model_dir, 'fp32@u.onnx') if spec.get('unstacked') else fp32_path
                path = make_graph(variant, source, model_dir, calib)
                options = spec.get('session', {})
                sess = session(path, args.threads, options)
                for batch in args.batch_sizes:
                    feeds = {'input': rng.random((batch, 3, *SIZE), dtype=np.float32)}
                    step = functools.partial(sess.run, None, feeds)
                    step()
                    cells.append((row, batch, step))
                    if args.profile:
                        row['profile'][batch] = profile(path, feeds, args.threads, options,
                                                        args.profile)
            except Exception as error:  # a failing variant is reported, not dropped
                row['error'] = f'{type(error).__name__}: {error}'.splitlines()[0][:300]
                print(f'  {name} {variant}: {row["error"]}', flush=True)
    for index in range(1, args.repeat + 1):
        print(f'round {index}/{args.repeat}', flush=True)
        for row, batch, step in cells:
            if row['error']:
                continue
            if args.clock == 'wall':
                speed, _ = benchmark._timed(step, batch, 'cpu', args.warmup, args.min_time)
                wall = ''
            else:
                speed, wall_speed = _timed_cpu(step, batch, args.warmup, args.min_time)
                row['wall_runs'].setdefault(batch, []).append(wall_speed)
                wall = f' (wall clock {wall_speed:.1f})'
            row['runs'].setdefault(batch, []).append(speed)
            print(f'  {row["model"]} {row["variant"]} bs{batch}: {speed:.1f} img/s{wall}',
                  flush=True)
    print()
    print(f'{args.clock} clock' + (' (images per CPU-second of this process, all threads)'
                                   if args.clock == 'cpu' else ''))
    print(format_table(rows, args.batch_sizes))
    if args.clock == 'cpu':
        print()
        print('wall clock of the same calls')
        print(format_table(rows, args.batch_sizes, 'wall_runs'))
    if args.versus:
        print()
        print(format_versus(rows, args.versus, args.batch_sizes, args.best_of))
    if args.peak:
        from emo_mm.deploy.peak import format_rates, matmul_rates
        rates = matmul_rates(threads=args.threads, min_time=args.min_time, rounds=args.repeat,
                             clock=time.process_time if args.clock == 'cpu' else time.perf_counter)
        print()
        print(format_rates(rates))
        print()
        print(format_shares(rows, rates['peak'], macs, args.batch_sizes))
    for row in rows:
        for batch, ops in row['profile'].items():
            print(f'profile {row["model"]} {row["variant"]} bs{batch} (ms/call): ' +
                  ', '.join(f'{op} {ms:.2f}' for op, ms in ops))
    return rows


def _medians(rows):
    return {(r['model'], r['variant']): {b: statistics.median(v) for b, v in r['runs'].items()}
            for r in rows if not r['error']}


def format_versus(rows, pairs, batch_sizes, best_of=None) -> str:
    """Fastest variant of A over fastest of B, per batch size."""
    medians = _medians(rows)
    lines = []
    for pair in pairs:
        a, _, b = pair.partition(':')
        for batch in batch_sizes:
            best = {}
            for model in (a, b):
                cells = [(speed[batch], variant) for (m, variant), speed in medians.items()
                         if m == model and batch in speed
                         and (best_of is None or variant in best_of)]
                best[model] = max(cells) if cells else None
            if best[a] and best[b]:
                lines.append(f'{a} ({best[a][1]}, {best[a][0]:.1f} img/s) over {b} '
                             f'({best[b][1]}, {best[b][0]:.1f} img/s) at bs{batch}: '
                             f'{best[a][0] / best[b][0]:.2f}x')
    return '\n'.join(lines)


def peak_runtime(variant: str) -> str:
    """The matrix-multiply rate a variant is compared with."""
    spec = parse_variant(variant)
    if spec['kind'] == 'int8':
        return 'onnxruntime int8 MatMulInteger'
    if spec['kind'] in ('torch', 'aoti'):
        return 'torch bf16' if spec['dtype'] in ('bf16', 'amp') else 'torch fp32'
    return 'onnxruntime fp32'


def format_shares(rows, peak, macs, batch_sizes) -> str:
    """Each cell's share of its precision's matrix-multiply rate (2 x MACs x img/s)."""
    from emo_mm.deploy.peak import model_share
    medians = _medians(rows)
    lines = [f'{"share of the peak":<38}' + ''.join(f'{f"bs{b}":>8}' for b in batch_sizes)]
    for (model, variant), speeds in medians.items():
        runtime = peak_runtime(variant)
        rate = peak.get(runtime)
        if not isinstance(rate, float):
            continue
        cells = ''.join(f'{model_share(speeds[b], macs[model], rate):>8.1%}' if b in speeds
                        else f'{"-":>8}' for b in batch_sizes)
        lines.append(f'{model + " " + variant:<38}{cells}  of {runtime} {rate:.0f} GFLOP/s')
    lines.append('(FLOPs per image, emo_mm.utils.flops (fvcore: one per multiply-accumulate): '
                 + ', '.join(f'{m} {v / 1e9:.3f} G' for m, v in macs.items())
                 + '; shares count 2 operations per FLOP, as the rates do)')
    return '\n'.join(lines)


def _timed_cpu(step, batch: int, warmup: int, min_time: float):
    """``benchmark._timed`` on ``time.process_time``: (images per CPU-second of this
    process (all its threads), images per wall-clock second of the same calls) after
    ``warmup`` calls, over >= ``min_time`` CPU-seconds and 3 calls."""
    for _ in range(warmup):
        step()
    runs, start, wall_start = 0, time.process_time(), time.perf_counter()
    while True:
        step()
        runs += 1
        elapsed = time.process_time() - start
        if elapsed >= min_time and runs >= 3:
            return batch * runs / elapsed, batch * runs / (time.perf_counter() - wall_start)


def format_table(rows, batch_sizes, key: str = 'runs') -> str:
    """Medians of ``row[key]`` (``runs``: the chosen clock; ``wall_runs``: wall clock of
    the same calls under ``--clock cpu``) with each variant's ratio to fp32."""
    medians = {(r['model'], r['variant']): {b: statistics.median(v) for b, v in r[key].items()}
               for r in rows}
    header = f'{"model":<14}{"variant":<30}' + ''.join(
        f'{f"bs{b} img/s":>12}{"x fp32":>9}' for b in batch_sizes)
    out = [header, '-' * len(header)]
    for row in rows:
        base = medians.get((row['model'], 'fp32'), {})
        cells = ''
        for batch in batch_sizes:
            speed = medians[(row['model'], row['variant'])].get(batch)
            ratio = speed / base[batch] if speed and base.get(batch) else None
            cells += f'{"error" if row["error"] else f"{speed:.1f}" if speed else "-":>12}'
            cells += f'{f"{ratio:.2f}" if ratio else "-":>9}'
        out.append(f'{row["model"]:<14}{row["variant"]:<30}' + cells)
    for row in rows:
        if row['error']:
            out.append(f'error: {row["model"]} {row["variant"]}: {row["error"]}')
    return '\n'.join(out)


if __name__ == '__main__':
    main()
