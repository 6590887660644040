"""tools/dataset_converters/extract_latents.py: the plumbing, with a small randomly
initialised diffusers VAE on a few generated images in the ImageFolder layout (no VAE
weights needed)."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import REPO, load_tool

diffusers = pytest.importorskip('diffusers')

tool = load_tool('dataset_converters/extract_latents')

IMAGE_SIZE = 16
#: class folder -> image sizes (odd aspect ratios, one large enough to be box-halved)
CLASSES = {'cat': [(50, 40), (70, 90), (64, 64)], 'dog': [(40, 33), (90, 48)]}


def tiny_vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=('DownEncoderBlock2D', ) * 2, up_block_types=('UpDecoderBlock2D', ) * 2,
        block_out_channels=(8, 16), norm_num_groups=4, sample_size=IMAGE_SIZE).eval()


@pytest.fixture
def image_root(tmp_path):
    rng = np.random.RandomState(0)
    root = tmp_path / 'images'
    for name, sizes in CLASSES.items():
        os.makedirs(root / name)
        for i, (w, h) in enumerate(sizes):
            image = Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8))
            if i == 1:
                image.convert('L').save(root / name / f'{i}.jpg')  # grey -> RGB
            else:
                image.save(root / name / f'{i}.png')
    return str(root)


def expected_posterior(vae, path, flip=False):
    with Image.open(path) as image:
        x = tool.DiTTransform(IMAGE_SIZE)(image.convert('RGB'))[None]
    if flip:
        x = x.flip(-1)
    with torch.no_grad():
        return vae.encode(x).latent_dist


def forbid_decoding(vae, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError('extract_latents decoded')

    monkeypatch.setattr(vae.decoder, 'forward', fail)
    monkeypatch.setattr(vae, 'decode', fail)


def test_center_crop_like_dit():
    image = Image.fromarray(np.zeros((500, 600, 3), np.uint8))
    assert tool.center_crop_arr(image, IMAGE_SIZE).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    x = tool.DiTTransform(IMAGE_SIZE)(image)
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and float(x.min()) == -1.


def test_writes_posterior_means_and_labels(image_root, tmp_path, monkeypatch):
    vae = tiny_vae()
    forbid_decoding(vae, monkeypatch)
    out = str(tmp_path / 'latents')
    meta = tool.extract_latents(image_root, out, vae, image_size=IMAGE_SIZE, batch_size=2)
    assert sorted(os.listdir(out)) == ['classes.txt', 'labels.npy', 'latents.npy', 'meta.json']
    latents = np.load(osp.join(out, 'latents.npy'))
    labels = np.load(osp.join(out, 'labels.npy'))
    assert latents.shape == (5, 4, IMAGE_SIZE // 2, IMAGE_SIZE // 2)
    assert latents.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1]
    with open(osp.join(out, 'classes.txt')) as f:
        assert f.read().split() == ['cat', 'dog']
    with open(osp.join(out, 'meta.json')) as f:
        assert json.load(f) == meta
    assert meta['count'] == 5 and meta['mode'] == 'mean' and meta['scaling_factor'] == 0.18215
    # Entry order is ImageFolder's: sorted classes, sorted file names.
    for index, path in enumerate([f'{image_root}/cat/0.png', f'{image_root}/cat/1.jpg',
                                  f'{image_root}/cat/2.png', f'{image_root}/dog/0.png',
                                  f'{image_root}/dog/1.jpg']):
        posterior = expected_posterior(vae, path)
        np.testing.assert_allclose(latents[index], posterior.mean[0].numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_flip_copies_stds_and_half_precision(image_root, tmp_path):
    vae = tiny_vae()
    out = str(tmp_path / 'latents')
    tool.extract_latents(image_root, out, vae, image_size=IMAGE_SIZE, batch_size=4,
                         flip_copies=True, save_std=True, dtype='float16')
    latents = np.load(osp.join(out, 'latents.npy'))
    stds = np.load(osp.join(out, 'stds.npy'))
    labels = np.load(osp.join(out, 'labels.npy'))
    assert latents.shape == stds.shape == (10, 4, 8, 8) and latents.dtype == np.float16
    assert labels.tolist() == [0, 0, 0, 1, 1] * 2
    flipped = expected_posterior(vae, f'{image_root}/dog/0.png', flip=True)
    np.testing.assert_allclose(latents[8], flipped.mean[0].numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(stds[3], expected_posterior(vae, f'{image_root}/dog/0.png')
                               .std[0].numpy(), rtol=2e-3, atol=2e-3)
    assert not np.allclose(latents[3], latents[8])


def test_sample_mode_is_seeded(image_root, tmp_path):
    vae = tiny_vae()

    def run(name, mode, seed):
        out = str(tmp_path / name)
        tool.extract_latents(image_root, out, vae, image_size=IMAGE_SIZE, mode=mode, seed=seed)
        return np.load(osp.join(out, 'latents.npy'))

    first, again, other_seed, mean = (run('a', 'sample', 1), run('b', 'sample', 1),
                                      run('c', 'sample', 2), run('d', 'mean', 0))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other_seed) and not np.allclose(first, mean)


def test_never_overwrites(image_root, tmp_path):
    out = tmp_path / 'latents'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='--overwrite'):
        tool.extract_latents(image_root, str(out), tiny_vae(), image_size=IMAGE_SIZE)
    assert os.listdir(out) == ['keep.txt']
    with pytest.raises(ValueError, match='multiple of the VAE'):
        tool.extract_latents(image_root, str(tmp_path / 'x'), tiny_vae(), image_size=15)
    assert not (tmp_path / 'x').exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith('.')] == []  # no leftovers


def test_command_line_with_a_saved_vae(image_root, tmp_path):
    vae_dir = str(tmp_path / 'vae')
    tiny_vae().save_pretrained(vae_dir, safe_serialization=True)
    out = str(tmp_path / 'latents')
    result = subprocess.run(
        [sys.executable, 'tools/dataset_converters/extract_latents.py', image_root, out,
         '--vae', vae_dir,
         '--image-size', str(IMAGE_SIZE), '--device', 'cpu', '--num-workers', '0'],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO})
    assert result.returncode == 0, result.stderr
    assert '5 latents (4, 8, 8)' in result.stdout
    assert np.load(osp.join(out, 'latents.npy')).shape == (5, 4, 8, 8)
    with pytest.raises(FileNotFoundError, match='--subfolder vae'):
        tool.load_vae(str(tmp_path))


def test_missing_diffusers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'diffusers', None)  # import diffusers -> ImportError
    with pytest.raises(ImportError, match=r'pip install diffusers==0\.42\.1'):
        tool.import_autoencoder()
