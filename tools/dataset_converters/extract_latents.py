"""Encode an ImageFolder with a Stable Diffusion VAE once, for training DiT / D-EMO on latents.

    python tools/dataset_converters/extract_latents.py IMAGENET/train data/imagenet_latents \\
        --vae PATH
    python tools/dataset_converters/extract_latents.py IMAGES OUT --vae SD_PIPELINE_DIR \\
        --subfolder vae --device cuda

``PATH`` is a local diffusers ``AutoencoderKL`` folder (config.json and
diffusion_pytorch_model.safetensors, e.g. a download of stabilityai/sd-vae-ft-ema; nothing
is fetched). Images are preprocessed as DiT does: halved with a box filter while at least
twice the target, resized bicubically so the short side is ``--image-size``, centre-cropped,
scaled to [-1, 1]. Only the encoder runs; nothing is decoded.

Output folder (the format ``emo_mm.LatentDataset`` reads):

* ``latents.npy``: float32 (or ``--dtype float16``) array (N, 4, S/8, S/8), the encoder's
  posterior **mean** (default) or, with ``--mode sample``, one posterior sample per image
  (fast-DiT's choice). Unscaled: multiply by the VAE's ``scaling_factor`` (0.18215 for
  SD VAEs; the configs' data preprocessor divides by std = 1 / 0.18215) before diffusion.
  DiT itself draws a fresh posterior sample every step; the SD VAE's posterior std is
  small against the mean, so the mean is the deterministic stand-in, and ``--save-std``
  also stores the std (``stds.npy``, same shape) for a data set that wants to sample.
* ``labels.npy``: int64 (N,), the ImageFolder class index (sorted folder names).
* ``classes.txt``: the class folder names, one per line, in label order.
* ``meta.json``: source folder, VAE path, image size, mode, dtype, scaling factor, count,
  flip copies.

With ``--flip-copies`` the mirrored images are encoded too and appended (entries N..2N-1 are
entries 0..N-1 flipped), so flip augmentation can happen in image space as in DiT (then
train with the preprocessor's ``hflip_prob=0``).

The folder is written under a temporary name and renamed when complete; an existing output
is never replaced unless ``--overwrite`` is given.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional

import numpy as np
import torch
from PIL import Image

DIFFUSERS_HINT = 'pip install diffusers==0.42.1'
#: Stable Diffusion's latent scale, used when the VAE's config does not give one.
SD_SCALING_FACTOR = 0.18215


def center_crop_arr(image: Image.Image, image_size: int) -> np.ndarray:
    """DiT's (ADM's) preprocessing: box-filter halving while the short side is >= twice the
    target, bicubic resize of the short side to ``image_size``, centre crop. (S, S, 3) uint8."""
    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.array(image.convert('RGB'))
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


class DiTTransform:
    """PIL image -> float tensor (3, S, S) in [-1, 1] (picklable for DataLoader workers)."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        arr = center_crop_arr(image, self.image_size)
        return torch.from_numpy(arr).permute(2, 0, 1).float().div(127.5).sub(1.)


def import_autoencoder():
    try:
        from diffusers import AutoencoderKL
    except ImportError as error:
        raise ImportError(f'tools/dataset_converters/extract_latents.py needs diffusers for the '
                          f'Stable Diffusion '
                          f'VAE: {DIFFUSERS_HINT} ({error}).') from error
    return AutoencoderKL


def load_vae(path: str, subfolder: Optional[str] = None):
    """A diffusers ``AutoencoderKL`` from a local folder (safetensors weights only)."""
    folder = osp.join(path, subfolder) if subfolder else path
    if not osp.isfile(osp.join(folder, 'config.json')):
        raise FileNotFoundError(
            f'No VAE at {folder!r}: expected a diffusers AutoencoderKL folder with '
            'config.json and diffusion_pytorch_model.safetensors (for a whole Stable '
            'Diffusion pipeline folder add --subfolder vae).')
    AutoencoderKL = import_autoencoder()
    try:
        # safetensors only: loading a pickled .bin could run code from the file.
        return AutoencoderKL.from_pretrained(path, subfolder=subfolder, use_safetensors=True,
                                             local_files_only=True)
    except (OSError, EnvironmentError) as error:
        raise OSError(f'Could not load the VAE from {folder!r} ({error}). It needs '
                      'diffusion_pytorch_model.safetensors; convert a .bin with diffusers '
                      'if that is all you have.') from error


def vae_downsampling(vae) -> int:
    return 2**(len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def extract_latents(image_root: str,
                    out_dir: str,
                    vae,
                    image_size: int = 256,
                    batch_size: int = 32,
                    device: str = 'cpu',
                    mode: str = 'mean',
                    save_std: bool = False,
                    flip_copies: bool = False,
                    dtype: str = 'float32',
                    num_workers: int = 0,
                    seed: int = 0,
                    overwrite: bool = False,
                    vae_path: Optional[str] = None) -> dict:
    """Encodes every image under ``image_root`` (ImageFolder layout) into ``out_dir``.

    Args:
        vae: a diffusers ``AutoencoderKL`` (only its encoder is used).
        mode: ``'mean'`` (posterior mean) or ``'sample'`` (one posterior sample, drawn
            with a generator seeded by ``seed``).
        save_std: also write the posterior std (``stds.npy``).
        flip_copies: append the mirrored images' latents.
        dtype: ``'float32'`` or ``'float16'`` storage.

    Returns:
        dict: the ``meta.json`` content.
    """
    from torchvision.datasets import ImageFolder

    if mode not in ('mean', 'sample'):
        raise ValueError(f"mode must be 'mean' or 'sample', got {mode!r}.")
    if dtype not in ('float32', 'float16'):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}.")
    factor = vae_downsampling(vae)
    if image_size <= 0 or image_size % factor:
        raise ValueError(f'image_size must be a positive multiple of the VAE\'s downsampling '
                         f'factor {factor}, got {image_size}.')
    if not osp.isdir(image_root):
        raise FileNotFoundError(f'No image folder {image_root!r} (expected '
                                '<root>/<class name>/<images>).')
    out_dir = osp.abspath(out_dir)
    if osp.exists(out_dir) and not overwrite:
        raise FileExistsError(f'{out_dir} exists; choose another output folder or pass '
                              '--overwrite to replace it.')
    dataset = ImageFolder(image_root, transform=DiTTransform(image_size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    vae = vae.to(device).eval()
    count = len(dataset) * (2 if flip_copies else 1)
    shape = (count, vae.config.latent_channels, image_size // factor, image_size // factor)
    generator = torch.Generator(device=device).manual_seed(seed)

    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.', dir=parent)
    try:
        latents = np.lib.format.open_memmap(osp.join(tmp, 'latents.npy'), mode='w+',
                                            dtype=dtype, shape=shape)
        stds = (np.lib.format.open_memmap(osp.join(tmp, 'stds.npy'), mode='w+', dtype=dtype,
                                          shape=shape) if save_std else None)
        labels = np.empty(count, dtype=np.int64)
        start = 0
        for images, targets in loader:
            passes = [images, images.flip(-1)] if flip_copies else [images]
            for copy, batch in enumerate(passes):
                posterior = vae.encode(batch.to(device)).latent_dist
                latent = posterior.mean if mode == 'mean' else posterior.sample(generator)
                index = start + copy * len(dataset)
                latents[index:index + len(batch)] = latent.float().cpu().numpy()
                if stds is not None:
                    stds[index:index + len(batch)] = posterior.std.float().cpu().numpy()
                labels[index:index + len(batch)] = targets.numpy()
            start += len(images)
        latents.flush()
        if stds is not None:
            stds.flush()
        del latents, stds
        np.save(osp.join(tmp, 'labels.npy'), labels)
        with open(osp.join(tmp, 'classes.txt'), 'w') as f:
            f.write(''.join(f'{name}\n' for name in dataset.classes))
        meta = dict(source=osp.abspath(image_root), vae=vae_path, image_size=image_size,
                    latent_shape=list(shape[1:]), count=count, mode=mode, dtype=dtype,
                    scaling_factor=float(getattr(vae.config, 'scaling_factor', None)
                                         or SD_SCALING_FACTOR),
                    flip_copies=flip_copies, stds=save_std, seed=seed,
                    classes=len(dataset.classes))
        with open(osp.join(tmp, 'meta.json'), 'w') as f:
            json.dump(meta, f, indent=2)
        if osp.exists(out_dir):  # --overwrite: replaced only now that the new one is whole
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image_root', help='ImageFolder root: <root>/<class name>/<images>')
    parser.add_argument('out_dir', help='output folder (must not exist)')
    parser.add_argument('--vae', required=True, help='local diffusers AutoencoderKL folder')
    parser.add_argument('--subfolder', default=None, help='e.g. vae inside a pipeline folder')
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--mode', choices=['mean', 'sample'], default='mean',
                        help='store the posterior mean (default) or one sample')
    parser.add_argument('--save-std', action='store_true', help='also store the posterior std')
    parser.add_argument('--flip-copies', action='store_true',
                        help='also encode the mirrored images (appended)')
    parser.add_argument('--dtype', choices=['float32', 'float16'], default='float32')
    parser.add_argument('--num-workers', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0, help='generator seed for --mode sample')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing output folder (after success)')
    return parser.parse_args()


def main():
    args = parse_args()
    vae = load_vae(args.vae, args.subfolder)
    meta = extract_latents(args.image_root, args.out_dir, vae, image_size=args.image_size,
                           batch_size=args.batch_size, device=args.device, mode=args.mode,
                           save_std=args.save_std, flip_copies=args.flip_copies,
                           dtype=args.dtype, num_workers=args.num_workers, seed=args.seed,
                           overwrite=args.overwrite, vae_path=osp.abspath(args.vae))
    print(f'{meta["count"]} latents {tuple(meta["latent_shape"])} ({meta["mode"]}, '
          f'{meta["dtype"]}) of {meta["classes"]} classes -> {args.out_dir}')


if __name__ == '__main__':
    main()
