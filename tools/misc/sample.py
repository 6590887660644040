"""Draw class-conditional samples of a trained diffusion config into a labelled grid PNG.

    python tools/misc/sample.py configs/dit/d-emo-tiny_shapes32.py CHECKPOINT \
        --classes 0 1 2 --n-per-class 4 --out grid.png
    python tools/misc/sample.py CONFIG CHECKPOINT --sampler ddim --steps 50 --cfg-scale 4 ...

One row per class, labelled with the class name (from --class-names, else the config's
training data set, else the index). A checkpoint saved with MMEngine's EMAHook holds the
EMA weights as its state_dict: those are sampled. Latent-space models (in_channels != 3)
need the VAE that encoded their latents: --vae PATH (a diffusers AutoencoderKL folder).
"""
import argparse
import os
import os.path as osp

import torch

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--classes', type=int, nargs='+', required=True, help='class indices')
    parser.add_argument('--n-per-class', type=int, default=4)
    parser.add_argument('--out', required=True, help='output .png')
    parser.add_argument('--sampler', choices=['ddpm', 'ddim'], help='default: the config\'s')
    parser.add_argument('--steps', type=int, help='respaced steps (default: the config\'s)')
    parser.add_argument('--eta', type=float, help='DDIM noise (0: deterministic)')
    parser.add_argument('--cfg-scale', type=float, help='classifier-free guidance scale')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--class-names', nargs='+', help='names of all classes, in label order')
    parser.add_argument('--scale', type=int, default=3, help='pixel upscaling of the grid')
    parser.add_argument('--vae', help='diffusers AutoencoderKL folder (latent models only)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle the checkpoint fully (it may run code: only for files '
                        'you trust); by default only tensors and plain values are read')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of user errors')
    args = parser.parse_args()
    if not args.out.lower().endswith('.png'):
        parser.error(f'--out must be a .png file, got {args.out!r}.')
    if args.n_per_class < 1:
        parser.error('--n-per-class must be at least 1.')
    return args


def class_names(cfg, args, num_classes):
    if args.class_names:
        if len(args.class_names) != num_classes:
            raise SystemExit(f'--class-names lists {len(args.class_names)} names; the model has '
                             f'{num_classes} classes.')
        return list(args.class_names)
    try:
        from mmengine.registry import DATASETS
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        names = dataset.metainfo.get('classes')
        if names and len(names) == num_classes:
            return list(names)
    except Exception as err:  # the names are a convenience: the grid is drawn without them
        print(f'Class names not available from the training data set ({err}); using indices.')
    return [str(i) for i in range(num_classes)]


def decode_latents(latents: torch.Tensor, vae_path: str) -> torch.Tensor:
    """Unscaled VAE latents -> uint8 images with a diffusers AutoencoderKL."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as err:
        raise SystemExit('Decoding latents needs diffusers (pip install diffusers).') from err
    vae = AutoencoderKL.from_pretrained(vae_path).to(latents.device).eval()
    with torch.no_grad():
        images = vae.decode(latents).sample
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def draw_grid(rows, names, scale):
    """rows: list of (name, [uint8 (3, H, W)]) -> a PIL image with the names on the left."""
    from PIL import Image, ImageDraw, ImageFont
    height, width = rows[0][1][0].shape[1:]
    cell_h, cell_w, pad = height * scale, width * scale, 4
    try:
        font = ImageFont.load_default(size=max(12, cell_h // 4))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    label_w = max(measure.textbbox((0, 0), n, font=font)[2] for n in names) + 3 * pad
    columns = len(rows[0][1])
    grid = Image.new('RGB', (label_w + columns * (cell_w + pad) + pad,
                             len(rows) * (cell_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (name, images) in enumerate(rows):
        top = pad + r * (cell_h + pad)
        box = draw.textbbox((0, 0), name, font=font)
        draw.text((pad, top + (cell_h - (box[3] - box[1])) // 2 - box[1]), name, fill=(0, 0, 0),
                  font=font)
        for c, image in enumerate(images):
            tile = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((cell_w, cell_h),
                                                                          Image.NEAREST)
            grid.paste(tile, (label_w + c * (cell_w + pad), top))
    return grid


def main():
    args = parse_args()
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from emo_mm.engine import UserError, verify_checkpoint
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'emo_mm'))
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'generate'):
        raise UserError(f'{args.config}: model {type(model).__name__} is not a diffusion '
                        'model (emo_mm.DiffusionModel).')
    # a Runner checkpoint of a training run: tensors and plain values only, unless trusted;
    # read once, checked against the model, then loaded
    model.load_state_dict(verify_checkpoint(model, args.checkpoint,
                                            trust=args.trust_checkpoint), strict=True)
    model.to(args.device).eval()
    num_classes = model.num_classes
    bad = [c for c in args.classes if not 0 <= c < num_classes]
    if bad:
        raise UserError(f'--classes {bad}: the model has classes 0..{num_classes - 1}.')
    latent = model.denoiser.in_channels != 3
    if latent and not args.vae:
        raise UserError(f'The model generates {model.denoiser.in_channels}-channel latents; '
                        'pass --vae PATH (the diffusers AutoencoderKL that encoded them).')
    overrides = {k: v for k, v in dict(sampler=args.sampler, steps=args.steps, eta=args.eta,
                                       cfg_scale=args.cfg_scale).items() if v is not None}
    labels = torch.tensor([c for c in args.classes for _ in range(args.n_per_class)])
    seeds = [args.seed * 1_000_003 + i for i in range(len(labels))]
    samples = model.generate(labels, seeds, **overrides)
    images = model.data_preprocessor.denormalize(samples)
    if latent:
        images = decode_latents(images, args.vae)
    elif images.dtype != torch.uint8:
        images = images.round().clamp(0, 255).to(torch.uint8)
    images = images.cpu()
    names = class_names(cfg, args, num_classes)
    rows = [(names[c], list(images[i * args.n_per_class:(i + 1) * args.n_per_class]))
            for i, c in enumerate(args.classes)]
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    draw_grid(rows, names, args.scale).save(args.out)
    print(f'{len(labels)} samples ({len(args.classes)} classes x {args.n_per_class}) -> '
          f'{args.out}')


if __name__ == '__main__':
    from emo_mm.engine import run_cli
    run_cli(main)
