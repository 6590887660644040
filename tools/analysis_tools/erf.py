"""Effective receptive fields of EMO backbones, drawn side by side as a PNG.

    python tools/analysis_tools/erf.py                           # EMOv2-1M stage 3 at init, 224x224
    python tools/analysis_tools/erf.py --arch 5M --stage 4 --samples 32 --out erf_5m.png
    python tools/analysis_tools/erf.py --checkpoint spanning=EMOv2_5M_224.pth emov1=EMO_5M.pth \\
        --arch 5M

The effective receptive field (ERF) of an output location is how strongly each input pixel
moves it: the gradient of the centre location of a stage's output map (summed over its
channels) with respect to the input, its absolute value summed over the colour channels and
averaged over random inputs (the method of RepLKNet, Ding et al. 2022, used for the EMOv2
paper's Fig. 1). Shown on a log scale relative to each map's peak.

Variants (same arch, same seed, so ``spanning`` and ``window`` have identical weights):

- ``spanning``: EMOv2, attention over contiguous (near) and strided (far) windows, summed;
- ``window``: EMOv2 with contiguous windows only (Swin-style, no shift);
- ``emov1``: EMOv1, strided (dilated) windows only.

At initialisation EMOv2's LayerScale (1e-6) mutes every residual branch, attention
included, so the ERF would show only the shortcut path; ``--layer-scale`` (default 1 at init)
gives the branches their full weight. With ``--checkpoint`` the learned scales are used.

Printed per variant: the fraction of input pixels that holds 50% / 90% of the gradient mass
(larger: the output depends on a wider area) and the fraction above 1% of the peak.
"""
import argparse
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
import torch

VARIANTS = {
    'spanning': 'EMOv2, spanning windows',
    'window': 'EMOv2, contiguous windows only',
    'emov1': 'EMOv1, strided windows',
}
WINDOW_ONLY_MIXERS = ('conv', 'conv', 'contiguous', 'contiguous')


def build_backbone(variant: str, arch: str = '1M', stage: int = 3, window_size: int = 7,
                   layer_scale: float = 1.0, checkpoint: Optional[str] = None,
                   seed: int = 0) -> torch.nn.Module:
    """An EMO backbone returning the output of ``stage`` (1..4), in eval mode.

    Args:
        variant (str): One of :data:`VARIANTS`.
        arch (str): Variant size, e.g. ``'1M'`` (EMOv1 has 1M, 2M, 5M, 6M).
        stage (int): Output stage, 1..4 (strides 4..32).
        window_size (int): Attention window (7 is the ImageNet setting at 224).
        layer_scale (float): Initial LayerScale of EMOv2 blocks.
        checkpoint (str, optional): Weights to load (classifier or backbone checkpoint).
        seed (int): Seed of the random initialisation.
    """
    from emo_mm.models import EMO, EMOv2
    from emo_mm.models.weights import load_pretrained
    if variant not in VARIANTS:
        raise ValueError(f'Unknown variant {variant!r}; choose from {list(VARIANTS)}.')
    torch.manual_seed(seed)
    common = dict(window_size=window_size, out_indices=(stage, ), channels_last=False)
    if variant == 'emov1':
        model = EMO(arch, **common)
    else:
        if arch not in EMOv2.arch_settings:
            raise ValueError(f'Unknown EMOv2 arch {arch!r}; choose from '
                             f'{list(EMOv2.arch_settings)}.')
        setting = dict(EMOv2.arch_settings[arch])
        if variant == 'window':
            setting['mixers'] = WINDOW_ONLY_MIXERS
        model = EMOv2(setting, layer_scale=layer_scale, **common)
    if checkpoint:
        load_pretrained(model, checkpoint)
    return model.eval()


def effective_receptive_field(model: torch.nn.Module, input_size: int = 224,
                              num_samples: int = 16, seed: int = 0,
                              batch_size: int = 8) -> np.ndarray:
    """Mean over random inputs of sum_c |d centre(output) / d input|, shape (H, W)."""
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(input_size, input_size, dtype=torch.float64)
    remaining = num_samples
    while remaining > 0:
        count = min(batch_size, remaining)
        remaining -= count
        x = torch.randn(count, 3, input_size, input_size, generator=generator)
        x.requires_grad_(True)
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        height, width = out.shape[-2:]
        # Samples do not interact in eval mode, so one backward gives every sample's own
        # gradient.
        centre = out[:, :, height // 2, width // 2].sum()
        (grad, ) = torch.autograd.grad(centre, x)
        total += grad.abs().sum(dim=1).sum(dim=0).double()
    return (total / num_samples).numpy()


def area_fraction(erf: np.ndarray, mass: float = 0.9) -> float:
    """Smallest fraction of pixels whose gradient sums to ``mass`` of the total."""
    values = np.sort(erf.ravel())[::-1]
    cumulative = np.cumsum(values) / values.sum()
    return float((np.searchsorted(cumulative, mass) + 1) / values.size)


def area_above(erf: np.ndarray, relative: float = 0.01) -> float:
    """Fraction of pixels whose gradient is at least ``relative`` times the peak."""
    return float((erf >= relative * erf.max()).mean())


def log_scaled(erf: np.ndarray, decades: float = 3.) -> np.ndarray:
    """log10 of the map relative to its peak, clipped to ``decades`` and mapped to [0, 1]."""
    scaled = np.log10(np.maximum(erf / erf.max(), 10 ** -decades))
    return 1 + scaled / decades


def draw(erfs: Dict[str, np.ndarray], path: str, title: str) -> None:
    """Writes the log-scaled maps side by side (one panel per variant) to ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(erfs), figsize=(3.6 * len(erfs), 3.9), squeeze=False)
    for ax, (variant, erf) in zip(axes[0], erfs.items()):
        image = ax.imshow(log_scaled(erf), cmap='RdYlGn', vmin=0, vmax=1)
        ax.set_title(f'{VARIANTS[variant]}\n90% of gradient on {area_fraction(erf):.1%} '
                     f'of pixels', fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02,
                 label='log10 |gradient| / peak (3 decades)')
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def compare(variants: Sequence[str], arch: str, stage: int, input_size: int,
            num_samples: int, window_size: int, layer_scale: Optional[float], seed: int,
            checkpoints: Dict[str, str]) -> Dict[str, np.ndarray]:
    erfs = {}
    for variant in variants:
        checkpoint = checkpoints.get(variant)
        scale = layer_scale if layer_scale is not None else (1e-6 if checkpoint else 1.0)
        model = build_backbone(variant, arch, stage, window_size, scale, checkpoint, seed)
        erfs[variant] = effective_receptive_field(model, input_size, num_samples, seed)
    return erfs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--arch', default='1M', help='1M, 2M or 5M (both families)')
    parser.add_argument('--stage', type=int, default=3, choices=(1, 2, 3, 4))
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument('--samples', type=int, default=16, help='random inputs to average')
    parser.add_argument('--window', type=int, default=7, help='attention window')
    parser.add_argument('--layer-scale', type=float, default=None,
                        help='initial LayerScale of EMOv2 (default: 1 at init; with a '
                        'checkpoint its learned values are used)')
    parser.add_argument('--checkpoint', nargs='+', default=[], metavar='VARIANT=PATH',
                        help='weights for a variant, e.g. spanning=EMOv2_1M_224.pth')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='erf.png', help='PNG to write')
    return parser.parse_args(argv)


def main(argv=None) -> Dict[str, np.ndarray]:
    args = parse_args(argv)
    checkpoints = {}
    for item in args.checkpoint:
        variant, sep, path = item.partition('=')
        if not sep or variant not in VARIANTS or not path:
            raise SystemExit(f'--checkpoint {item!r}: expected VARIANT=PATH with VARIANT one '
                             f'of {list(VARIANTS)}.')
        if not osp.isfile(path):
            raise SystemExit(f'--checkpoint {item!r}: {path} does not exist.')
        checkpoints[variant] = path
    erfs = compare(args.variants, args.arch, args.stage, args.input_size, args.samples,
                   args.window, args.layer_scale, args.seed, checkpoints)
    weights = 'checkpoints' if checkpoints else 'random init'
    title = (f'ERF of the centre of stage {args.stage}, {args.arch}, {args.input_size}x'
             f'{args.input_size} input, window {args.window}, {weights}, '
             f'{args.samples} random inputs')
    draw(erfs, args.out, title)
    print(f'{"variant":<10}{"50% of mass":>13}{"90% of mass":>13}{">1% of peak":>13}')
    for variant, erf in erfs.items():
        print(f'{variant:<10}{area_fraction(erf, 0.5):>13.2%}{area_fraction(erf, 0.9):>13.2%}'
              f'{area_above(erf):>13.2%}')
    print(f'written {args.out}')
    return erfs


if __name__ == '__main__':
    main()
