"""Runs a model on images with its toolbox's inferencer and saves the drawn predictions.

    # classification (mmpretrain): a model name with the authors' weights, or config + ckpt
    python tools/infer.py demo.jpg --model emov2-5m_in1k --weights authors
    python tools/infer.py demo.jpg --model configs/emov2_5m_in1k.py --weights epoch_300.pth
    # detection (mmdet) and segmentation (mmseg): config or model name + your checkpoint
    python tools/infer.py demo.jpg --model retinanet_emov2_5m_coco --weights epoch_12.pth
    python tools/infer.py imgs/ --model deeplabv3_emov2_5m_ade20k --weights iter_80000.pth

``--model`` is a config file or a name of ``mim search emo_mm`` (``model-index.yml``); the
inferencer is the toolbox's own (ImageClassificationInferencer, DetInferencer,
MMSegInferencer), chosen from the config's ``default_scope``. Inputs must decode as images;
weights must hold every tensor of the model and no NaN (unless --allow-nonfinite); the
authors' classifier files are converted on the fly. Errors print one line (exit code 2).
"""
import argparse
import os.path as osp

import emo_mm  # noqa: F401  (first: applies emo_mm.compat, registers the model names)
from emo_mm.engine import run_cli
from emo_mm.inference import INFERENCERS, build_inferencer, check_inputs, scope_of

SCORE_THR = 0.3


def summary(sample, classes) -> str:
    """One line for one image's prediction (a toolbox data sample)."""
    def name(label: int) -> str:
        return classes[label] if classes and label < len(classes) else f'class {label}'

    if 'pred_instances' in sample:  # detection
        instances = sample.pred_instances
        keep = instances.scores >= SCORE_THR
        found = [f'{name(label)} {score:.2f}' for label, score in
                 zip(instances.labels[keep].tolist(), instances.scores[keep].tolist())]
        return f'{len(found)} objects with score >= {SCORE_THR}: ' + ', '.join(found[:10])
    if 'pred_sem_seg' in sample:  # semantic segmentation
        labels, counts = sample.pred_sem_seg.data.unique(return_counts=True)
        order = counts.argsort(descending=True)[:5].tolist()
        return 'largest classes: ' + ', '.join(
            f'{name(int(labels[i]))} {counts[i] / counts.sum():.0%}' for i in order)
    score, label = sample.pred_score.max(0)  # classification
    return f'{name(int(label))} ({float(score):.3f})'


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='image file or folder of images')
    parser.add_argument('--model', required=True, help='config file or model-zoo name')
    parser.add_argument('--weights', default=None,
                        help="checkpoint path, or 'authors' (classifier names only)")
    parser.add_argument('--out-dir', default='outputs', help='where drawn predictions go')
    parser.add_argument('--device', default=None, help='cpu, cuda:0, ... (default: auto)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='load weights even if they hold NaN or infinite values')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    args = parser.parse_args()
    check_inputs(args.inputs)
    if args.weights is None:
        print('No --weights: the model keeps its random initialisation.')
    inferencer = build_inferencer(args.model, args.weights, args.device,
                                  allow_nonfinite=args.allow_nonfinite)
    out_dir_arg = INFERENCERS[scope_of(args.model)][3]
    results = inferencer(args.inputs, return_datasamples=True, **{out_dir_arg: args.out_dir})
    if isinstance(results, dict):  # mmdet: {'predictions': [...], 'visualization': ...}
        results = results['predictions']
    if not isinstance(results, list):  # mmseg: one sample for one image
        results = [results]
    model = inferencer.model
    meta = getattr(model, 'dataset_meta', None) or getattr(model, '_dataset_meta', None) or {}
    for index, sample in enumerate(results):
        source = osp.basename(sample.get('img_path') or '') or f'image {index}'
        print(f'{source}: {summary(sample, meta.get("classes"))}')
    print(f'drawn predictions in {osp.abspath(args.out_dir)}')


if __name__ == '__main__':
    run_cli(main)
