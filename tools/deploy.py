"""Export a trained model of any emo_mm config to a deploy bundle and check it.

    python tools/deploy.py configs/demo/retinanet_emov2_1m_demo.py epoch_6.pth --out b/retina
    python tools/deploy.py configs/ssdlite_emov2_1m_320_coco.py CKPT --out b/ssdlite
    python tools/deploy.py deeplabv3_emov2_1m_ade20k CKPT --out b/deeplab --input-size 512x512
    python tools/deploy.py emov2_1m_in1k --out bundles/emov2_1m       # initialised weights
    python tools/deploy.py emov2_1m_in1k --out b/emov2_1m --mobile executorch  # + model.pte
    python tools/deploy.py configs/demo/retinanet_emov2_1m_demo.py epoch_6.pth --out b/r8 \
        --precision int8 --calib 32                                      # int8 network

The bundle folder holds the ONNX graph(s) (the network with its task's post-processing:
NMS for detectors, resize + arg-max for segmentors, softmax for classifiers, view
averaging for video models) and deploy.json (preprocessing, class names, thresholds,
checksums); docs/deploy.md describes it. Run it without PyTorch with
``emo_mm.deploy.Predictor(DIR)``, evaluate it with ``tools/test.py CONFIG DIR``.
``--mobile executorch`` adds the network as an ExecuTorch program (``model.pte``, for
phones; docs/mobile.md), checked against PyTorch before the bundle is written; with
--precision int8 the program is int8 too (XNNPACK's quantizer, calibrated on the int8
graph's calibration files).

After export the bundle is run with onnxruntime on one input (the first test sample of
the config's data set, or a generated image / video when the data set is absent) and its
results are compared with the PyTorch model's on the same file, through the toolbox's own
test pipeline; the tool exits with status 1 if they differ beyond the parity criteria.

--precision int8: the network part of the graph is quantized with onnxruntime (static,
per-channel int8 weights, u8 activations, QDQ), calibrated on --calib files of the
config's --calib-split (default train) through the bundle's preprocessing; the layers kept
in float are chosen by a measured sensitivity pass (--budget) and listed, with the reason
for each, in deploy.json and on the console. The comparison with PyTorch is then only
reported: measure an int8 bundle's accuracy with tools/test.py CONFIG DIR. bf16 is
refused (docs/deploy.md, Precision).

--out: a new or empty folder is written; a folder holding a bundle and nothing else is
replaced (said on the console); any other existing path is refused. The checkpoint is read
without unpickling code (--trust-checkpoint allows it) and must match the config exactly.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

import numpy as np

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.deploy.export import INT8_ATTENTION, INT8_DEFAULTS
from emo_mm.engine import run_cli


def parse_size(text: str):
    try:
        values = tuple(int(v) for v in text.lower().split('x'))
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f'{text!r} is not a size HxW (positive ints), e.g. '
                                         '320x320.')
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, or a name in configs/')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='trained weights (default: the config\'s initialisation)')
    parser.add_argument('--out', required=True, help='bundle folder to write')
    parser.add_argument('--input-size', type=parse_size, default=None,
                        help='HxW: a graph for this one input size; images are padded up to '
                        'it after the test pipeline (default: the pipeline\'s size, or any '
                        'size)')
    parser.add_argument('--precision', default='fp32',
                        help='numeric precision of the network graph: fp32 (default) or int8 '
                        '(onnxruntime static quantization, calibrated on --calib images)')
    parser.add_argument('--calib', type=int, default=INT8_DEFAULTS['calib'], metavar='N',
                        help='int8: calibration images (or clips) from the config\'s data set '
                        f'(default {INT8_DEFAULTS["calib"]})')
    parser.add_argument('--calib-split', default=INT8_DEFAULTS['calib_split'],
                        choices=['train', 'val', 'test'],
                        help='int8: the split the calibration images come from (default '
                        'train)')
    parser.add_argument('--budget', type=float, default=INT8_DEFAULTS['budget'],
                        help='int8: largest relative RMS error of the network outputs against '
                        'fp32 before the sensitivity pass keeps layers in float (default '
                        f'{INT8_DEFAULTS["budget"]})')
    parser.add_argument('--int8-format', default=INT8_DEFAULTS['quant_format'],
                        choices=['qdq', 'qoperator'],
                        help='int8: onnxruntime graph format (default qdq)')
    parser.add_argument('--int8-attention', default=INT8_DEFAULTS['attention'],
                        choices=INT8_ATTENTION,
                        help='int8: whether the attention core (activation x activation '
                        'MatMuls and Softmax) is quantized too (default float: onnxruntime\'s '
                        'int8 Softmax is slower than its float one; docs/deploy.md)')
    parser.add_argument('--mobile', choices=['executorch'], default=None,
                        help='also write model.pte: the network without post-processing as an '
                        'ExecuTorch program for XNNPACK (the bundle\'s precision, batch 1, its '
                        'fixed input size), checked against PyTorch; docs/mobile.md')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow full unpickling of the checkpoint (it can run code)')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    return parser.parse_args(argv)


def verification_input(cfg, task: str, folder: str) -> tuple:
    """(path, what): the first test sample's file, or a generated one."""
    from mmengine.registry import DATASETS, init_default_scope

    from emo_mm.deploy.export import resolve_scope
    try:
        init_default_scope(resolve_scope(cfg))
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        info = dataset.get_data_info(0)
        path = info.get('img_path') or info.get('filename')
        if path and osp.isfile(path):
            return path, 'the first test sample'
    except Exception:  # noqa: B902 - the data set is optional here: fall back below
        pass
    import cv2
    import numpy as np
    rng = np.random.RandomState(0)
    if task == 'video':
        path = osp.join(folder, 'generated.mp4')
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 8, (64, 64))
        for t in range(16):
            frame = np.full((64, 64, 3), 90, np.uint8)
            cv2.circle(frame, (12 + 2 * t, 32), 8, (40, 200, 230), -1)
            writer.write(frame)
        writer.release()
        return path, 'a generated video'
    image = rng.randint(0, 256, (240, 320, 3)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (9, 9), 3)
    cv2.rectangle(image, (40, 50), (150, 170), (30, 220, 60), -1)
    cv2.circle(image, (230, 120), 60, (200, 40, 40), -1)
    path = osp.join(folder, 'generated.png')
    cv2.imwrite(path, image)
    return path, 'a generated image'


def verify(manifest, model, cfg, path: str) -> bool:
    """Compares the bundle with the PyTorch model on one file; prints the figures."""
    from emo_mm.deploy import Predictor
    from emo_mm.deploy.compare import (PIXEL_AGREEMENT, SCORE_RELATIVE, label_agreement,
                                       match_detections, relative_error)
    from emo_mm.deploy.reference import torch_predict
    task = manifest['task']
    predictor = Predictor(manifest['root'])
    deployed = predictor(path, topk=None)
    reference = torch_predict(model, cfg, path, task, manifest.get('classes'))
    if task == 'detection':
        post = manifest['postprocess']
        match = match_detections(reference, deployed, post['score_thr'], post['iou_threshold'])
        print(f'  detections: PyTorch {match["total"]}, bundle {len(deployed["boxes"])}; '
              f'matched {match["matched"]} (IoU >= 0.99, score within 1e-3), exempt at '
              f'thresholds {match["exempt"]}, unmatched {len(match["unmatched"])}; worst '
              f'score error {match["worst_score_error"]:.2e}, worst IoU '
              f'{match["worst_iou"]:.5f}')
        return not match['unmatched']
    if task == 'segmentation':
        agreement = label_agreement(reference['label_map'], deployed['label_map'])
        print(f'  label map {reference["label_map"].shape}: {agreement:.4%} of the pixels '
              f'agree (required {PIXEL_AGREEMENT:.1%})')
        return agreement >= PIXEL_AGREEMENT
    order = np.argsort(deployed['labels'])
    error = relative_error(reference['all_scores'], deployed['scores'][order])
    print(f'  class scores: relative error {error:.2e} (required <= {SCORE_RELATIVE:g}); top '
          f'class PyTorch {reference["classes"][0]}, bundle {deployed["classes"][0]}')
    return error <= SCORE_RELATIVE


def print_quantization(record) -> None:
    """The int8 record of deploy.json, one line per float group."""
    sens = record['sensitivity']
    print(f'int8 ({record["config"]["quant_format"]}, u8 activations, s8 per-channel '
          f'weights), calibrated on {record["calibration"]["files"]} '
          f'{record["calibration"]["split"]} files: relative RMS error of the network '
          f'outputs {sens["error_int8"]:.4f} all int8, {sens["error_final"]:.4f} with '
          f'{len(record["float_nodes"])} nodes in float (budget {sens["budget"]:g}, '
          f'{"met" if sens["within_budget"] else "NOT met"})')
    for group in record['float_reasons']:
        print(f'  float: {group["group"]} ({len(group["nodes"])} nodes: '
              f'{", ".join(group["op_types"])}): {group["reason"]}')


def main(argv=None):
    args = parse_args(argv)
    from emo_mm.apis import find_config, load_config
    from emo_mm.deploy.export import check_precision, export_bundle
    check_precision(args.precision)
    int8 = None
    if args.precision == 'int8':
        int8 = dict(calib=args.calib, calib_split=args.calib_split, budget=args.budget,
                    quant_format=args.int8_format, attention=args.int8_attention)
    config = find_config(args.config)
    cfg = load_config(config)
    if args.checkpoint is None:
        print('No checkpoint: exporting the config\'s initialised weights.')
    existed = osp.isdir(args.out) and bool(os.listdir(args.out))
    manifest, model = export_bundle(config, args.checkpoint, args.out, args.input_size,
                                    args.precision, cfg=cfg,
                                    trust_checkpoint=args.trust_checkpoint, int8=int8,
                                    log=lambda line: print('  ' + line),
                                    mobile=args.mobile)
    size = manifest['input']
    size_text = ('x'.join(map(str, size['size'])) if size['mode'] == 'fixed' else
                 f'any (multiples of {size["size_divisor"]})')
    print(f'{"Replaced the bundle in" if existed else "Wrote"} {manifest["root"]}: '
          f'{manifest["task"]} ({manifest["model_type"]}, {manifest["toolbox"]}), input size '
          f'{size_text}, {manifest["precision"]}, {len(manifest.get("classes") or [])} classes')
    for name, digest in manifest['files'].items():
        bytes_ = osp.getsize(osp.join(manifest['root'], name))
        print(f'  {name:18s} {bytes_ / 2**20:8.2f} MB  sha256 {digest[:16]}')
    if 'quantization' in manifest:
        print_quantization(manifest['quantization'])
    if 'mobile' in manifest:
        program = manifest['mobile']
        bound = ('required <= 1e-4' if program['precision'] == 'fp32' else
                 f'reported only; calibrated on {program["calibration_images"]} images')
        print(f'ExecuTorch {program["version"]} program {program["file"]} ({program["delegate"]}, '
              f'{program["precision"]}, input {"x".join(map(str, program["input"]))}): '
              f'relative error {program["relative_error"]:.2e} against PyTorch on random '
              f'inputs ({bound}); outside the delegate: '
              f'{program["outside_delegate"] or "nothing"}; outputs: {program["returns"]}')
    with tempfile.TemporaryDirectory() as folder:
        path, what = verification_input(cfg, manifest['task'], folder)
        print(f'Checking the bundle against PyTorch on {what} ({path}):')
        ok = verify(manifest, model, cfg, path)
    if manifest['precision'] != 'fp32':
        print(f'{manifest["precision"]}: the parity criteria are those of fp32 and only '
              'reported; measure the accuracy with tools/test.py CONFIG ' + manifest['root'])
        return 0
    if not ok:
        print('FAILED: the bundle\'s results differ from PyTorch\'s beyond the parity '
              'criteria.', file=sys.stderr)
        return 1
    print('OK: the bundle matches PyTorch.')
    return 0


if __name__ == '__main__':
    import torch
    torch.set_grad_enabled(False)
    sys.exit(run_cli(main))
