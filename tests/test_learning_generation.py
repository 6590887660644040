"""A few CPU minutes of diffusion training make a tiny D-EMO generate the classes' colours.

configs/dit/demo-tiny_shapes32.py trains a 4-block D-EMO in pixel space on the generated
shapes (9 classes = 3 shapes x 3 colours; a sample is right only if shape and colour
are). A small CNN trained on the real images judges the generated ones: the class
accuracy is near chance (1/9) before training and far above it after, and the
classifier-feature FD (FID's formula on that CNN's features, not FID) drops towards the
real validation images' own value. 1000 iterations learn the colour of each class, not
yet its shape (see the README's sample grid), so the accuracy rises to about a third.
"""
import os.path as osp

import pytest

from emo_mm.generation.demo_data import make_class_shapes
from helpers import REPO, train_and_test

pytestmark = pytest.mark.slow  # trains for minutes; not in make test-fast

CHANCE = 1 / 9


@pytest.fixture(scope='module', autouse=True)
def shapes(monkeypatch_module):
    make_class_shapes(osp.join(REPO, 'data', 'demo_gen_shapes'))
    monkeypatch_module.chdir(REPO)  # the config uses data/ relative to the repository


def _train(config, tmp_path, max_iters):
    before, after = train_and_test(osp.join(REPO, 'configs', 'dit', config), str(tmp_path),
                                   dict(max_iters=max_iters))
    print(f'\n{config}: class accuracy {before["gen/class_acc"]:.3f} -> '
          f'{after["gen/class_acc"]:.3f} (chance {CHANCE:.3f}); classifier-feature FD '
          f'{before["gen/classifier_feature_fd"]:.2f} -> {after["gen/classifier_feature_fd"]:.2f}'
          f' (real validation images: {after["gen/real_val_fd"]:.2f}); judge accuracy on real '
          f'images {after["gen/judge_val_acc"]:.3f}')
    return before, after


def test_demo_generates_the_classes(tmp_path):
    before, after = _train('demo-tiny_shapes32.py', tmp_path, 1000)
    # measured (seed 0, 1000 iterations): class accuracy 0.111 -> 0.356 (2 threads) / 0.339
    # (1 thread), classifier-feature FD 32311 -> 88.8 / 52.4 (real validation images 0.21);
    # seed 1: 0.339, FD 32.8; judge 0.967; 160 s on 2 cores.
    # 180 samples: the accuracy's standard error is about 0.035.
    assert before['gen/judge_val_acc'] > 0.9
    assert before['gen/class_acc'] < 0.2
    assert after['gen/class_acc'] > 0.25
    assert after['gen/classifier_feature_fd'] < 0.1 * before['gen/classifier_feature_fd']


@pytest.mark.extended
def test_dit_block_at_equal_parameters(tmp_path):
    """The same run with DiT's block (574,572 parameters against D-EMO's 598,848)."""
    before, after = _train('dit-tiny_shapes32.py', tmp_path, 1000)
    # measured (seed 0): class accuracy 0.111 -> 0.233, classifier-feature FD -> 306
    assert before['gen/class_acc'] < 0.2
    assert after['gen/class_acc'] > 0.16
