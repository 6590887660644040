"""Runs a model on images with its toolbox's inferencer and saves the drawn predictions.

    # classification (mmpretrain): a model name with the authors' weights, or config + ckpt
    python tools/infer.py demo.jpg --model emov2-5m_in1k --weights authors
    python tools/infer.py demo.jpg --model configs/emov2_5m_in1k.py --weights epoch_300.pth
    # detection (mmdet) and segmentation (mmseg): config or model name + your checkpoint
    python tools/infer.py demo.jpg --model retinanet_emov2_5m_coco --weights epoch_12.pth
    python tools/infer.py imgs/ --model deeplabv3_emov2_5m_ade20k --weights iter_80000.pth

    # a deploy bundle (tools/deploy.py): onnxruntime, no PyTorch model
    python tools/infer.py imgs/ --model bundles/retina/

``--model`` is a config file or a name of ``mim search emo_mm`` (``model-index.yml``); the
inferencer is the toolbox's own (ImageClassificationInferencer, DetInferencer,
MMSegInferencer), chosen from the config's ``default_scope``. Inputs must decode as images;
weights must hold every tensor of the model and no NaN (unless --allow-nonfinite); the
authors' classifier files are converted on the fly. A bundle folder in place of the model
runs ``emo_mm.deploy.Predictor`` (no --weights); predictions are drawn with OpenCV (boxes
and class names, or a colour overlay of the label map; classifiers and video models print
only). Errors print one line (exit code 2).
"""
import argparse
import os
import os.path as osp

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.deploy import is_bundle
from emo_mm.engine import UserError, run_cli
from emo_mm.inference import INFERENCERS, build_inferencer, check_inputs, scope_of

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm')

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


def bundle_summary(result, task: str) -> str:
    """One line for one Predictor result (the same wording as :func:`summary`)."""
    if task == 'detection':
        keep = result['scores'] >= SCORE_THR
        found = [f'{name} {score:.2f}' for name, score, k in
                 zip(result['classes'], result['scores'].tolist(), keep) if k]
        return f'{len(found)} objects with score >= {SCORE_THR}: ' + ', '.join(found[:10])
    if task == 'segmentation':
        import numpy as np
        labels, counts = np.unique(result['label_map'], return_counts=True)
        order = np.argsort(-counts, kind='stable')[:5]
        names = result.get('names') or []
        return 'largest classes: ' + ', '.join(
            f'{names[labels[i]] if labels[i] < len(names) else f"class {labels[i]}"} '
            f'{counts[i] / counts.sum():.0%}' for i in order)
    return f'{result["classes"][0]} ({float(result["scores"][0]):.3f})'


def draw(image, result, task: str):
    """The prediction drawn on a BGR image with OpenCV (None for class scores)."""
    import cv2
    import numpy as np
    if task == 'detection':
        out = image.copy()
        for box, score, name in zip(result['boxes'], result['scores'], result['classes']):
            if score < SCORE_THR:
                continue
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            cv2.rectangle(out, (x1, y1), (x2, y2), (0, 220, 0), 1)
            cv2.putText(out, f'{name} {score:.2f}', (x1, max(y1 - 2, 8)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 220, 0), 1)
        return out
    if task == 'segmentation':
        rng = np.random.RandomState(0)
        palette = rng.randint(0, 256, (int(result['label_map'].max()) + 1, 3)).astype(np.uint8)
        return cv2.addWeighted(image, 0.5, palette[result['label_map']], 0.5, 0)
    return None


def infer_bundle(args) -> None:
    """Runs a deploy bundle on a file or the images / videos of a folder."""
    import cv2

    from emo_mm.deploy import Predictor
    if args.weights:
        raise UserError('--weights does not apply to a bundle folder (its weights are in its '
                        'graph).')
    if not osp.exists(args.inputs):
        raise UserError(f'{args.inputs} does not exist: give a file or a folder.')
    predictor = Predictor(args.model)
    extensions = VIDEO_EXTENSIONS if predictor.task == 'video' else IMAGE_EXTENSIONS
    if osp.isdir(args.inputs):
        files = sorted(osp.join(args.inputs, f) for f in os.listdir(args.inputs)
                       if f.lower().endswith(extensions))
        if not files:
            kind = 'video' if predictor.task == 'video' else 'image'
            raise UserError(f'{args.inputs} holds no {kind} files ({", ".join(extensions)}).')
    else:
        files = [args.inputs]
    os.makedirs(args.out_dir, exist_ok=True)
    drawn = 0
    for path in files:
        result = predictor(path)
        result['names'] = predictor.classes
        print(f'{osp.basename(path)}: {bundle_summary(result, predictor.task)}')
        if predictor.task in ('detection', 'segmentation'):
            cv2.imwrite(osp.join(args.out_dir, osp.basename(path)),
                        draw(predictor.load(path), result, predictor.task))
            drawn += 1
    if drawn:
        print(f'drawn predictions in {osp.abspath(args.out_dir)}')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='image file or folder of images')
    parser.add_argument('--model', required=True,
                        help='config file, model-zoo name, or a deploy bundle folder')
    parser.add_argument('--weights', default=None,
                        help="checkpoint path, or 'authors' (classifier names only)")
    parser.add_argument('--out-dir', default='outputs', help='where drawn predictions go')
    parser.add_argument('--device', default=None, help='cpu, cuda:0, ... (default: auto)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='load weights even if they hold NaN or infinite values')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    args = parser.parse_args()
    if is_bundle(args.model):
        return infer_bundle(args)
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
