"""Short CPU trainings of the segmentation demo configs (generated data) learn.

ADE20K format, measured on 2 CPU cores (150 iterations, batch 4, from scratch; seeds
0 / 1 / 2): EMOv2-1M mIoU 5.7 -> 41.2, 4.5 -> 42.2, 4.5 -> 45.5 (5 classes; the untrained
models predict near-constant maps); EMOv1-1M 5.3 -> 32.7 (seed 0). 100 iterations were not
enough on every machine (12.6 once in CI).

HRF format (U-EMO, 150 iterations, batch 4 of 48x48 crops; seeds 0 / 1): mDice
47.6 -> 80.2, 47.6 -> 62.4. 47.6 is "all background" (background Dice 95, vessel 0).
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


def test_uemo_learns_vessels(demo_training):
    """U-EMO (the full 21M UNet of configs/uemo_hrf.py) from scratch on the vessel set."""
    run = demo_training('uemo')
    before, after = run.before, run.after
    print(f'\nuemo_demo.py: mDice {before["mDice"]:.1f} -> {after["mDice"]:.1f}, '
          f'mAcc {before["mAcc"]:.1f} -> {after["mAcc"]:.1f}')
    assert before['mDice'] < 50
    assert after['mDice'] > 55  # vessels found: vessel Dice above ~15
