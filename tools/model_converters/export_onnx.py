"""Export an EMO classifier or a bare backbone to ONNX and check it against onnxruntime.

For a model to ship (any task: detectors with NMS, segmentors with their label map,
classifiers, video models) use tools/deploy.py, which writes a bundle folder with the graph,
its preprocessing and class names (docs/deploy.md). This tool stays for bare graphs: a
backbone's feature maps (--backbone-only), or a classifier's raw class scores.

    python tools/model_converters/export_onnx.py configs/emov2_5m_in1k.py CKPT --out emov2_5m.onnx
    python tools/model_converters/export_onnx.py emov2_1m_in1k --out emov2_1m.onnx  # random weights
    python tools/model_converters/export_onnx.py configs/emov2_5m_in1k.py --backbone-only \\
        --out-indices 1 2 3 4 --out emov2_5m_backbone.onnx
    python tools/model_converters/export_onnx.py configs/retinanet_emov2_5m_coco.py CKPT \\
        --backbone-only --out retinanet_backbone.onnx
    python tools/model_converters/export_onnx.py emov2_5m_in1k CKPT --input-size 224x224 \\
        --out emov2_5m_224.onnx

The graph has one input ``input`` (N, C, H, W) whose batch, height and width are dynamic
(``--input-size HxW``: one fixed size and a dynamic batch, exported with torch.export: a
smaller graph without shape arithmetic, the faster one in onnxruntime), and outputs
``output`` (a classifier's class scores before softmax) or ``output0..K`` (the backbone's
feature maps). Deploy mode (``switch_to_deploy()``) is applied where the model
has it, unless ``--no-deploy``. After export the file is run with onnxruntime on the
``--check`` sizes and compared with PyTorch (relative error: max |diff| / max |ref|); the
tool exits with an error if any exceeds ``--tolerance``.
"""
import argparse
import os.path as osp
import sys

import torch

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.apis import load_config
from emo_mm.utils.onnx import DEFAULT_OPSET, TRACE_SIZE, export_onnx, verify_onnx

DEFAULT_CHECKS = ['1x224x224', '2x256x320', '1x193x257']


def parse_size(text: str, dims: int):
    """'HxW' or 'NxHxW' -> tuple of ints, with a clear error otherwise."""
    try:
        values = tuple(int(v) for v in text.lower().split('x'))
    except ValueError:
        values = ()
    if len(values) != dims or min(values) <= 0:
        form = 'HxW' if dims == 2 else 'NxHxW'
        raise argparse.ArgumentTypeError(f'{text!r} is not a size of the form {form} '
                                         f'(positive ints), e.g. {"x".join(["224"] * dims)}.')
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, or a name in configs/ (emov2_5m_in1k)')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='weights to load (default: the config\'s initialisation)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export model.backbone alone (required for configs that are '
                        'not classifiers: detectors, segmentors)')
    parser.add_argument('--out-indices', type=int, nargs='+', default=None,
                        help='backbone outputs to export (with --backbone-only; default: the '
                        'config\'s). Stages after the deepest one are not exported.')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    parser.add_argument('--no-deploy', action='store_true',
                        help='export the training-time structure (no switch_to_deploy())')
    parser.add_argument('--trace-size', type=lambda t: parse_size(t, 2),
                        default=TRACE_SIZE, help='HxW of the example input (default '
                        f'{TRACE_SIZE[0]}x{TRACE_SIZE[1]}: pads in every attention stage)')
    parser.add_argument('--input-size', type=lambda t: parse_size(t, 2), default=None,
                        help='HxW: export for this size only (dynamic batch); checked at '
                        'batches 1 and 2 of it unless --check is given')
    parser.add_argument('--check', nargs='*', type=lambda t: parse_size(t, 3),
                        default=None,
                        help='NxHxW input sizes to compare with onnxruntime (none: skip). '
                        f'Default: {" ".join(DEFAULT_CHECKS)}')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest relative error accepted by the check')
    args = parser.parse_args(argv)
    if args.check is None:
        args.check = ([parse_size(s, 3) for s in DEFAULT_CHECKS] if args.input_size is None
                      else [(n, *args.input_size) for n in (1, 2)])
    elif args.input_size is not None:
        wrong = ['x'.join(map(str, c)) for c in args.check if tuple(c[1:]) != args.input_size]
        if wrong:
            parser.error(f'--check {" ".join(wrong)}: a graph exported with --input-size '
                         f'{"x".join(map(str, args.input_size))} runs that size only.')
    return args


def build(cfg, backbone_only: bool, out_indices):
    """The model to export, in eval mode."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_type = str(cfg.model.get('type', ''))
    if backbone_only:
        backbone = cfg.model.get('backbone')
        if backbone is None:
            raise SystemExit(f'The config\'s model ({model_type}) has no backbone to export; '
                             f'drop --backbone-only.')
        if out_indices is not None:
            backbone.out_indices = tuple(out_indices)
        model = MODELS.build(backbone)
        model.eval()  # some mmpretrain backbones' train() returns None
        return model
    if out_indices is not None:
        raise SystemExit('--out-indices selects backbone outputs: add --backbone-only.')
    if not model_type.endswith('ImageClassifier'):
        raise SystemExit(f'Only classifiers export whole here; {model_type or "this model"} '
                         f'has pre/post-processing outside the network. Export its backbone '
                         f'with --backbone-only, or the whole model with its post-processing '
                         f'as a bundle with tools/deploy.py.')
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def load_weights(model, checkpoint: str, backbone_only: bool) -> None:
    from emo_mm.models.weights import load_pretrained
    if not osp.isfile(checkpoint):
        raise SystemExit(f'Checkpoint {checkpoint} does not exist.')
    # A backbone takes the backbone.* part of a classifier / detector checkpoint; a
    # classifier takes the whole checkpoint.
    report = load_pretrained(model, checkpoint, prefix='backbone.' if backbone_only else None,
                             drop_prefixes=('head.', 'neck.', 'norm.') if backbone_only else ())
    if report.missing:
        raise SystemExit(f'{checkpoint} lacks {len(report.missing)} tensors of the model, '
                         f'e.g. {list(report.missing)[:4]}: not a checkpoint of this config.')


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config)
    model = build(cfg, args.backbone_only, args.out_indices)
    if args.checkpoint:
        load_weights(model, args.checkpoint, args.backbone_only)
    fixed = args.input_size is not None
    info = export_onnx(model, args.out, trace_size=args.input_size if fixed else args.trace_size,
                       opset=args.opset, deploy=not args.no_deploy, dynamic_spatial=not fixed)
    deployed = ', '.join(n or type(model).__name__ for n in info['deployed']) or 'n/a'
    axes = (f'batch (input size fixed to {"x".join(map(str, args.input_size))})' if fixed else
            'batch, height, width')
    print(f'Exported {type(model).__name__} to {args.out} (opset {info["opset"]}, outputs '
          f'{info["outputs"]}, deploy mode: {deployed}; dynamic axes: {axes}).')
    if args.check:
        in_channels = cfg.model.get('backbone', cfg.model).get('in_channels', 3)
        shapes = [(n, in_channels, h, w) for n, h, w in args.check]
        try:
            results = verify_onnx(args.out, model, shapes, tolerance=None)
        except ImportError as error:
            raise SystemExit(str(error))
        worst = 0.
        for result in results:
            worst = max(worst, result['error'])
            print(f'  onnxruntime vs PyTorch, input {"x".join(map(str, result["shape"]))}: '
                  f'relative error {result["error"]:.2e}, outputs {result["output_shapes"]}')
        if not worst <= args.tolerance:
            print(f'FAILED: relative error {worst:.2e} exceeds --tolerance {args.tolerance:g}.',
                  file=sys.stderr)
            return 1
        print(f'OK: every check within {args.tolerance:g}.')
    return 0


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    sys.exit(main())
