"""Parameters and fvcore-style FLOPs of EMO variants or of any config's model.

    python tools/analysis_tools/get_flops.py 1M 2M 5M 20M 50M  # ImageNet classifiers, 224, window 7
    python tools/analysis_tools/get_flops.py 5M --shape 512 --window 8    # the authors' 512 setting
    python tools/analysis_tools/get_flops.py 5M --backbone --window 10    # detection backbone alone
    python tools/analysis_tools/get_flops.py configs/retinanet_emov2_5m_coco.py --shape 800 1333
    python tools/analysis_tools/get_flops.py configs/ssdlite_emov2_5m_320_coco.py  # fixed 320x320
    python tools/analysis_tools/get_flops.py D-EMO-S-2 D-EMO-B-2 D-EMO-L-2 D-EMO-XL-2 \\
        DiT-S-2 DiT-B-2 DiT-L-2 DiT-XL-2
    python tools/analysis_tools/get_flops.py configs/dit/d-emo-s-2_imagenet256.py     # its denoiser

Diffusion denoisers (D-EMO, DiT) are counted on 32x32x4 latents (256x256 images; --shape
sets the latent size) at one timestep and label, built on the meta device (shapes only,
so even XL-2 takes a second; the counts equal a real build's).

A config is measured at its test input size when its test pipeline fixes one (a final crop,
or a resize without keeping the aspect ratio: classifiers, SSDLite); configs whose test
images keep their aspect ratio (COCO detectors, ADE20K segmentors) need --shape.

FLOPs follow the papers' (fvcore) convention: one per multiply-accumulate of conv,
linear and attention matmuls, plus 2 per element of BatchNorm and 5 of LayerNorm.
"""
import argparse
import os.path as osp
import re

import torch
from mmengine.model import BaseModel

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.apis import build_model, load_config
from emo_mm.engine import UserError, run_cli
from emo_mm.utils.flops import count_flops

FAMILIES = {'emov2': 'emov2_{}_in1k', 'emov1': 'emov1_{}_in1k'}
#: D-EMO / DiT denoisers by name, e.g. D-EMO-S-2 (or DEMO-S-2, the class name), DiT-XL-2.
DENOISER_NAME = re.compile(r'^(d-emo|demo|dit)-((?:s|b|l|xl)-\d+)$', re.IGNORECASE)
DENOISER_TYPES = {'d-emo': ('emo_mm.DEMO', 'D-EMO'), 'demo': ('emo_mm.DEMO', 'D-EMO'),
                  'dit': ('emo_mm.DiT', 'DiT')}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='+',
                        help='variant names (1M, 2M, 5M, 20M, 50M; EMOv1: v1-5M; '
                        'D-EMO-S-2 ... D-EMO-XL-2, DiT-S-2 ... DiT-XL-2) or config files')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input H [W] (default: the config\'s fixed test size, 224 for '
                        'variants; required for configs without one: 800 1333 for COCO, 512 512 '
                        'for ADE20K)')
    parser.add_argument('--window', type=int, default=None,
                        help='attention window (default: the config\'s; 7 for classifiers)')
    parser.add_argument('--backbone', action='store_true', help='count the backbone only')
    parser.add_argument('--split-matmul', action='store_true',
                        help='also print the attention matmuls (q k^T, A v) and the FLOPs '
                        'without them (how fused attention kernels are often left uncounted, '
                        'e.g. the EMOv2 table\'s DiT figures)')
    return parser.parse_args()


def resolve(name: str):
    """A variant name -> its classifier config; a path stays a path."""
    if osp.isfile(name):
        return name, name
    family, arch = ('emov1', name[3:]) if name.lower().startswith('v1-') else ('emov2', name)
    label = f'{"EMOv1" if family == "emov1" else "EMOv2"}-{arch.upper()}'
    return FAMILIES[family].format(arch.lower()), label


def _test_pipeline(cfg):
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset') or {}
    while 'pipeline' not in dataset and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']  # wrappers (RepeatDataset, ...)
    return dataset.get('pipeline') or cfg.get('test_pipeline') or []


def _size(value):
    """(h, w) of a transform's size argument: an int, or mmcv's (w, h)."""
    if isinstance(value, int):
        return value, value
    w, h = value
    return h, w


def fixed_test_size(cfg):
    """The (h, w) every test image has after the config's test pipeline, or None when it
    depends on the image (a resize that keeps the aspect ratio, with no crop after it)."""
    # mmaction2's Resize keeps the aspect ratio unless told otherwise; the others' do not.
    keep_ratio_default = cfg.get('default_scope') == 'mmaction'
    size = None
    for step in _test_pipeline(cfg):
        kind = step.get('type', '').split('.')[-1]
        if kind in ('CenterCrop', 'ThreeCrop', 'TenCrop') and 'crop_size' in step:
            size = _size(step['crop_size'])
        elif kind == 'Resize' and 'scale' in step:
            scale = step['scale']
            free = isinstance(scale, int) or -1 in tuple(scale)
            keep = step.get('keep_ratio', keep_ratio_default)
            size = None if keep or free else _size(scale)
        elif kind == 'Pad' and step.get('size'):
            size = _size(step['size'])
        elif kind == 'Pad' and size is not None and step.get('size_divisor'):
            div = step['size_divisor']
            size = tuple(-(-v // div) * div for v in size)
        elif 'Resize' in kind or 'Crop' in kind:  # ResizeEdge, RandomResize, ...
            size = None
    return size


def input_size(cfg, name: str, shape):
    if shape:
        return tuple((shape * 2)[:2])
    size = fixed_test_size(cfg)
    if size is None:
        raise UserError(f'{name}: its test images keep their aspect ratio, so it has no single '
                        'input size; give one with --shape H W (800 1333 for COCO, 512 512 for '
                        'ADE20K).')
    return size


def measure_denoiser(denoiser_cfg: dict, label: str, args):
    """Params and FLOPs of a diffusion denoiser net(x, t, y) on latents, built on meta."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('emo_mm')
    denoiser_cfg = dict(denoiser_cfg)
    if args.shape:
        if len(set(args.shape)) != 1:
            raise SystemExit('Denoisers take square latents: give one --shape value.')
        denoiser_cfg['input_size'] = args.shape[0]
    if args.window is not None:
        if 'DEMO' not in denoiser_cfg['type']:
            raise SystemExit('--window applies to D-EMO only (DiT attends globally).')
        arch = denoiser_cfg.get('arch', 'S-2')
        arch = dict(MODELS.get(denoiser_cfg['type']).resolve_arch(arch))
        arch['window_size'] = args.window
        denoiser_cfg['arch'] = arch
    with torch.device('meta'):
        model = MODELS.build(denoiser_cfg).eval()
        size = model.input_size
        inputs = (torch.zeros(1, model.in_channels, size, size), torch.tensor([500]),
                  torch.tensor([0]))
    counts = count_flops(model, *inputs)
    window = model.arch.get('window_size', '-')
    return label, (size, size), window, counts


def measure(name: str, args):
    match = DENOISER_NAME.match(name)
    if match and not osp.isfile(name):
        family, arch = match.group(1).lower(), match.group(2).upper()
        type_name, display = DENOISER_TYPES[family]
        return measure_denoiser(dict(type=type_name, arch=arch), f'{display}-{arch}', args)
    config, label = resolve(name)
    cfg = load_config(config)
    if cfg.model.get('denoiser') is not None:  # a diffusion model: count its network
        return measure_denoiser(cfg.model.denoiser, label, args)
    if args.window is not None:
        cfg.model.backbone.window_size = args.window
    h, w = input_size(cfg, name, args.shape)
    model = build_model(cfg).eval()
    channels = cfg.model.backbone.get('in_channels', 3)
    x = torch.rand(1, channels, h, w)
    if args.backbone:
        counts = count_flops(model.backbone, x)
    elif isinstance(model, BaseModel):  # OpenMMLab models: raw network output
        counts = count_flops(model, x, mode='tensor')
    else:
        counts = count_flops(model, x)
    window = cfg.model.backbone.get('window_size', '-')
    return label, (h, w), window, counts


def main():
    args = parse_args()
    header = (f'{"model":<28}{"input":>10}{"window":>8}{"params":>14}{"MACs":>16}'
              f'{"BN+LN":>12}{"FLOPs":>16}{"FLOPs (G)":>11}')
    if args.split_matmul:
        header += f'{"matmul (G)":>12}{"w/o matmul (G)":>16}'
    print(header)
    print('-' * len(header))
    for name in args.models:
        label, (h, w), window, c = measure(name, args)
        if args.backbone:
            label += ' (backbone)'
        print(f'{label:<28}{f"{h}x{w}":>10}{window:>8}{c["params"]:>14,}{c["macs"]:>16,}'
              f'{c["bn"] + c["ln"]:>12,}{c["flops"]:>16,}{c["flops"] / 1e9:>11.3f}'
              + (f'{c["matmul"] / 1e9:>12.3f}{(c["flops"] - c["matmul"]) / 1e9:>16.3f}'
                 if args.split_matmul else ''))


if __name__ == '__main__':
    run_cli(main)
