"""Parameters and fvcore-style FLOPs of EMO variants or of any config's model.

    python tools/get_flops.py 1M 2M 5M 20M 50M            # ImageNet classifiers, 224, window 7
    python tools/get_flops.py 5M --shape 512 --window 8    # the authors' 512 setting
    python tools/get_flops.py 5M --backbone --window 10    # detection backbone alone
    python tools/get_flops.py configs/retinanet_emov2_5m_coco.py --shape 800 1333

FLOPs follow the papers' (fvcore) convention: one per multiply-accumulate of conv,
linear and attention matmuls, plus 2 per element of BatchNorm and 5 of LayerNorm.
"""
import argparse
import os.path as osp

import torch

import emo_mm  # noqa: F401  (first: applies emo_mm.compat)
from mmengine.model import BaseModel

from emo_mm.apis import build_model, load_config
from emo_mm.utils.flops import count_flops

FAMILIES = {'emov2': 'emov2_{}_in1k', 'emov1': 'emov1_{}_in1k'}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='+',
                        help='variant names (1M, 2M, 5M, 20M, 50M; EMOv1: v1-5M) or config files')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='input H [W] (default 224 for variants; required for configs '
                        'without a fixed size: 800 1333 for COCO, 512 512 for ADE20K)')
    parser.add_argument('--window', type=int, default=None,
                        help='attention window (default: the config\'s; 7 for classifiers)')
    parser.add_argument('--backbone', action='store_true', help='count the backbone only')
    return parser.parse_args()


def resolve(name: str):
    """A variant name -> its classifier config; a path stays a path."""
    if osp.isfile(name):
        return name, name
    family, arch = ('emov1', name[3:]) if name.lower().startswith('v1-') else ('emov2', name)
    label = f'{"EMOv1" if family == "emov1" else "EMOv2"}-{arch.upper()}'
    return FAMILIES[family].format(arch.lower()), label


def measure(name: str, args):
    config, label = resolve(name)
    cfg = load_config(config)
    if args.window is not None:
        cfg.model.backbone.window_size = args.window
    model = build_model(cfg).eval()
    h, w = (args.shape * 2)[:2] if args.shape else (224, 224)
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
    print(header)
    print('-' * len(header))
    for name in args.models:
        label, (h, w), window, c = measure(name, args)
        if args.backbone:
            label += ' (backbone)'
        print(f'{label:<28}{f"{h}x{w}":>10}{window:>8}{c["params"]:>14,}{c["macs"]:>16,}'
              f'{c["bn"] + c["ln"]:>12,}{c["flops"]:>16,}{c["flops"] / 1e9:>11.3f}')


if __name__ == '__main__':
    main()
