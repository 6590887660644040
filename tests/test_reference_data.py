"""The compact reference data in tests/data stands for the authors' files.

Weights and inputs are regenerated from the authors' seeded recipe; they must hash to the
authors' checksums. With EMO_MM_REFERENCE pointing at the authors' folder, tests/data must
also be exactly what tools/dev/make_test_reference.py derives from it.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import reference_data
from helpers import REPO


@pytest.mark.parametrize('family', ['emov2', 'emov1'])
@pytest.mark.parametrize('arch', reference_data.PARITY_VARIANTS)
def test_regenerated_weights_are_the_authors(family, arch):
    weights = reference_data.checked_random_weights(family, arch)  # raises on a mismatch
    manifest = reference_data.state_dict_manifest(family, arch)['classification']
    assert {k: list(v.shape) for k, v in weights.items()} == manifest
    # the checksum covers every bit: one flipped mantissa bit changes it
    key = next(iter(weights))
    flipped = dict(weights, **{key: weights[key].clone()})
    flipped[key].view(torch.int32)[(0, ) * flipped[key].dim()] ^= 1
    assert reference_data.digest(flipped) != reference_data.digest(weights)


def test_regenerated_inputs_are_the_authors():
    inputs = reference_data.checked_inputs()
    assert {k: tuple(v.shape) for k, v in inputs.items()} == reference_data.INPUT_SHAPES


def test_compact_outputs_cover_every_map():
    for family, maps in (('emov2', ['det_ws10', 'det_ws7', 'seg_ws10']), ('emov1', ['det'])):
        for arch in reference_data.PARITY_VARIANTS:
            outputs = reference_data.load_outputs(family, arch)
            assert outputs['cls_logits'].shape == (2, 1000)
            assert sorted(outputs['maps']) == sorted(f'{m}_out{i}' for m in maps
                                                     for i in range(1, 5))
            for entry in outputs['maps'].values():
                positions = entry['positions']
                assert len(set(map(tuple, positions.tolist()))) == reference_data.NUM_POSITIONS
                assert entry['values'].shape[-1] == reference_data.NUM_POSITIONS


def test_materialised_folder_reads_like_the_authors(reference_dir):
    logs = reference_data.downstream_logs()
    entry = logs['RetinaNet_1M_20240601_022554.log']
    assert sum(map(lambda shape: torch.Size(shape).numel(), entry['backbone'].values())) == \
        entry['n_params_backbone']
    for name in ('params_flops.json', 'emov2_1M_random.pth', 'downstream_log_params.json',
                 osp.join('emov1', 'emov1_2M_random.pth')):
        assert osp.isfile(osp.join(reference_dir, name)), name


@pytest.mark.skipif(not os.environ.get('EMO_MM_REFERENCE'),
                    reason='EMO_MM_REFERENCE (the authors\' reference folder) not set')
def test_tests_data_is_derived_from_the_authors_folder():
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'dev', 'make_test_reference.py'),
         os.environ['EMO_MM_REFERENCE'], '--check'], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
