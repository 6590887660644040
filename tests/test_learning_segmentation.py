"""Short CPU trainings of the segmentation demo configs (generated data) learn.

Thresholds sit well below the measured runs (docs/get_started.md) and above what the
untrained models reach: a near-constant map (ADE20K format, 5 classes) and "all
background" (HRF format: mDice 47.6, background Dice 95, vessel 0).
"""
import pytest

pytestmark = pytest.mark.slow  # trains real configs for minutes; not in make test-fast


@pytest.mark.parametrize('name', [  # EMOv1's run: make test-all
    'deeplabv3_emov2', pytest.param('deeplabv3_emov1', marks=pytest.mark.extended)])
def test_ade20k_format_learns(name, demo_training):
    """5 classes: chance mIoU is about 1/9 (a constant prediction), measured below."""
    run = demo_training(name)  # the session's shared run (tests/trained_models.py)
    before, after = run.before, run.after
    print(f'\n{name}: mIoU {before["mIoU"]:.1f} -> {after["mIoU"]:.1f}, '
          f'aAcc {before["aAcc"]:.1f} -> {after["aAcc"]:.1f}')
    assert before['mIoU'] < 10
    assert after['mIoU'] > 20
    assert after['mIoU'] > 2.5 * before['mIoU']


@pytest.mark.demo_family('uemo')
def test_uemo_learns_vessels(demo_training):
    """U-EMO (the full 21M UNet of configs/uemo_hrf.py) from scratch on the vessel set."""
    run = demo_training('uemo')
    before, after = run.before, run.after
    print(f'\nuemo_demo.py: mDice {before["mDice"]:.1f} -> {after["mDice"]:.1f}, '
          f'mAcc {before["mAcc"]:.1f} -> {after["mAcc"]:.1f}')
    assert before['mDice'] < 50
    assert after['mDice'] > 55  # vessels found: vessel Dice above ~15
