"""A short CPU training of the EMOv2-1M classifier on the generated shapes set learns.

configs/demo/emov2_1m_shapes-cls_demo.py: four shape kinds (circle, square, triangle,
star) of random colour, size, rotation and place on textured backgrounds, one per image,
balanced classes: chance top-1 is 25%. The backbone starts from the shapes-pretrained
stand-in for ImageNet weights, the head from random weights (top-1 near chance).
"""
import pytest

# 40 epochs on a CPU: make test-all.
pytestmark = [pytest.mark.slow, pytest.mark.extended]


def test_classifier_learns_shapes(demo_training):
    run = demo_training('classifier_emov2')  # the session's shared run (trained_models.py)
    before, after = run.before['accuracy/top1'], run.after['accuracy/top1']
    print(f'\nemov2_1m_shapes-cls_demo.py: top-1 {before:.1f} -> {after:.1f}')
    assert before < 40
    assert after > 60
