"""A short CPU training of V-EMO on the generated motion videos learns the motion.

The classes (move left / right / up / down, turn either way) are defined by motion only:
any single frame fits every class. So the same model and schedule trained on clips of one
repeated frame is the control: it must stay near chance (1/6) while real clips are
learned, which shows that the accuracy comes from V-EMO's temporal modelling.
"""
import pytest

pytestmark = pytest.mark.slow  # trains real configs for minutes; not in make test-fast


def _top1(demo_training, name):
    run = demo_training(name)  # the session's shared run (tests/trained_models.py)
    before, after = run.before, run.after
    print(f'\n{name}: top-1 {before["acc/top1"]:.3f} -> {after["acc/top1"]:.3f}')
    return before['acc/top1'], after['acc/top1']


def test_vemo_learns_motion(demo_training):
    before, after = _top1(demo_training, 'vemo')
    # chance is 1/6; runs over three seeds: docs/benchmark.md
    assert before < 0.3
    assert after > 0.55


def test_single_frames_stay_near_chance(demo_training):
    _, after = _top1(demo_training, 'vemo_single_frame')
    # chance is 1/6 (60 validation clips, 10 per class)
    assert after < 0.35
