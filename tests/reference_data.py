"""The authors' reference data in the compact form kept in tests/data.

The authors' reference (weights, inputs and outputs of their unmodified EMOv2 / EMOv1
model files; ~60 MB) is reduced by tools/dev/make_test_reference.py to what the tests need:

* the randomised weights and the inputs are not stored: both follow a seeded recipe
  (:func:`random_weights`, :func:`reference_inputs`) that reproduces the authors' files
  bit for bit; ``checksums.json`` holds the SHA-256 of the authors' tensors, so the tests
  prove the regenerated tensors are theirs before comparing anything;
* the classifier logits are stored whole; every feature map is stored at 16 fixed spatial
  positions (the four corners, where window padding acts, edge midpoints, the centre and
  seeded random ones) with all channels of both images, plus its per-channel mean over
  all positions and its scale ``max |value|`` over the whole map;
* JSON manifests (state-dict keys and shapes, parameter counts, FLOPs) are copied, with
  the repeated backbone name/shape lists of the downstream logs stored once.

:func:`materialise` lays the compact data out like the authors' folder (same file names
and formats, weights regenerated) for tests that read files by name.
"""
import hashlib
import json
import math
import os
import os.path as osp
import shutil
from typing import Dict, Iterable, Optional

import torch

DATA_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'data')

#: (family folder inside the reference, file prefix, variants with weights and outputs)
FAMILIES = {'emov2': ('', 'emov2'), 'emov1': ('emov1', 'emov1')}
PARITY_VARIANTS = ('1M', '2M')
#: Spatial positions stored per feature map (corners, edge midpoints, centre, random).
NUM_POSITIONS = 16
POSITION_SEED = 2024
INPUT_SHAPES = {'cls_input': (2, 3, 224, 224), 'det_input': (2, 3, 256, 320)}


def family_dir(root: str, family: str) -> str:
    return osp.join(root, FAMILIES[family][0]) if FAMILIES[family][0] else root


def random_weights(manifest: Dict[str, list]) -> Dict[str, torch.Tensor]:
    """The authors' randomised weights, regenerated from their key -> shape manifest.

    ``torch.manual_seed(0)``, then, walking the state dict in order with the global RNG:
    conv / linear weights N(0, 1) / sqrt(fan_in); biases, BN running means N(0, 0.1^2);
    norm weights 1 + N(0, 0.1^2); BN running_var U(0.5, 1.5); BN num_batches_tracked
    randint(1, 10000); LayerScale gamma 0.5 + N(0, 0.1^2).
    """
    torch.manual_seed(0)
    state = {}
    for key, shape in manifest.items():
        leaf = key.rsplit('.', 1)[-1]
        if leaf == 'num_batches_tracked':
            value = torch.randint(1, 10000, shape, dtype=torch.int64)
        elif leaf == 'running_var':
            value = torch.rand(shape) + 0.5
        elif leaf == 'gamma':
            value = 0.5 + torch.randn(shape) * 0.1
        elif leaf in ('bias', 'running_mean'):
            value = torch.randn(shape) * 0.1
        elif leaf == 'weight' and len(shape) == 1:  # BN / LN scale
            value = 1 + torch.randn(shape) * 0.1
        elif leaf == 'weight':
            value = torch.randn(shape) / math.sqrt(math.prod(shape[1:]))
        else:
            raise KeyError(f'No randomisation rule for {key!r}')
        state[key] = value
    return state


def reference_inputs() -> Dict[str, torch.Tensor]:
    """``cls_input`` and ``det_input``: each ``torch.manual_seed(1); torch.randn(...)``."""
    inputs = {}
    for name, shape in INPUT_SHAPES.items():
        torch.manual_seed(1)
        inputs[name] = torch.randn(shape)
    return inputs


def digest(tensors: Dict[str, torch.Tensor]) -> str:
    """SHA-256 of names, dtypes, shapes and bytes, in order (bit-exact identity)."""
    sha = hashlib.sha256()
    for name, tensor in tensors.items():
        sha.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        sha.update(tensor.contiguous().numpy().tobytes())
    return sha.hexdigest()


def sample_positions(height: int, width: int) -> torch.Tensor:
    """The fixed (row, col) positions stored for an HxW map, shape (NUM_POSITIONS, 2)."""
    fixed = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1),
             (0, width // 2), (height - 1, width // 2), (height // 2, 0),
             (height // 2, width - 1), (height // 2, width // 2)]
    chosen = list(dict.fromkeys(fixed))
    generator = torch.Generator().manual_seed(POSITION_SEED)
    for flat in torch.randperm(height * width, generator=generator).tolist():
        if len(chosen) == NUM_POSITIONS:
            break
        if divmod(flat, width) not in chosen:
            chosen.append(divmod(flat, width))
    return torch.tensor(chosen, dtype=torch.int64)


def compact_map(feature: torch.Tensor) -> Dict[str, torch.Tensor]:
    """What is kept of an (N, C, H, W) feature map."""
    positions = sample_positions(*feature.shape[-2:])
    return dict(positions=positions,
                values=feature[:, :, positions[:, 0], positions[:, 1]].clone(),
                channel_mean=feature.double().mean(dim=(0, 2, 3)),
                scale=feature.abs().max().reshape(()))


def map_error(actual: torch.Tensor, expected: Dict[str, torch.Tensor]) -> float:
    """Relative error of a full feature map against its compact reference.

    max |difference| / max |reference| over the stored positions (all channels, both
    images) and over the per-channel means (which every position enters).
    """
    rows, cols = expected['positions'].unbind(1)
    sampled = actual[:, :, rows, cols]
    assert sampled.shape == expected['values'].shape, (sampled.shape, expected['values'].shape)
    point = (sampled - expected['values']).abs().max()
    mean = (actual.double().mean(dim=(0, 2, 3)) - expected['channel_mean']).abs().max()
    return (torch.maximum(point.double(), mean) / expected['scale'].double()).item()


def outputs_path(family: str, arch: str, root: str = DATA_DIR) -> str:
    return osp.join(root, f'{family}_{arch}_outputs.pth')


def load_outputs(family: str, arch: str) -> dict:
    """``cls_logits`` (whole) and the compact feature maps of one variant."""
    return torch.load(outputs_path(family, arch), weights_only=True)


def load_json(name: str):
    with open(osp.join(DATA_DIR, name)) as f:
        return json.load(f)


def downstream_logs(family: str = 'emov2') -> dict:
    """The authors' downstream log summary, in the authors' structure (lists re-expanded)."""
    if family == 'emov1':
        return load_json(osp.join('emov1', 'downstream_log_params.json'))
    compact = load_json('downstream_log_params.json')
    logs = {}
    for name, entry in compact['logs'].items():
        entry = dict(entry)
        if 'backbone' in entry:
            entry['backbone'] = compact['backbones'][entry['backbone']]
        logs[name] = entry
    return logs


def state_dict_manifest(family: str, arch: str) -> dict:
    prefix = FAMILIES[family][1]
    return load_json(osp.join(FAMILIES[family][0], f'{prefix}_{arch}_state_dict.json'))


def checked_random_weights(family: str, arch: str) -> Dict[str, torch.Tensor]:
    """The regenerated weights, verified against the authors' file's checksum."""
    weights = random_weights(state_dict_manifest(family, arch)['classification'])
    name = f'{FAMILIES[family][1]}_{arch}_random.pth'
    expected = load_json('checksums.json')[name]
    if digest(weights) != expected:
        raise AssertionError(f'Regenerated {name} differs from the authors\' file '
                             f'(checksum {digest(weights)} != {expected})')
    return weights


def checked_inputs() -> Dict[str, torch.Tensor]:
    inputs = reference_inputs()
    expected = load_json('checksums.json')['inputs']
    for name, tensor in inputs.items():
        if digest({name: tensor}) != expected[name]:
            raise AssertionError(f'Regenerated {name} differs from the authors\' input')
    return inputs


def materialise(target: str, families: Optional[Iterable[str]] = None) -> str:
    """Lays the compact data out like the authors' reference folder under ``target``.

    JSON files keep their names and formats (downstream logs re-expanded) and the
    ``*_random.pth`` weights are regenerated and checked; the ``*_io.pth`` files are not
    recreated (their outputs are kept only in compact form: use :func:`load_outputs`).
    """
    for family in families or FAMILIES:
        src, dst = family_dir(DATA_DIR, family), family_dir(target, family)
        os.makedirs(dst, exist_ok=True)
        for name in sorted(os.listdir(src)):
            if name.endswith('.json') and name not in ('downstream_log_params.json',
                                                       'checksums.json'):
                shutil.copyfile(osp.join(src, name), osp.join(dst, name))
        with open(osp.join(dst, 'downstream_log_params.json'), 'w') as f:
            json.dump(downstream_logs(family), f)
        for arch in PARITY_VARIANTS:
            torch.save(checked_random_weights(family, arch),
                       osp.join(dst, f'{FAMILIES[family][1]}_{arch}_random.pth'))
    return target
