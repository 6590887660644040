"""`make demo` runs its recipe (emo_mm.demo.run.run_demo) and prints the README's numbers.

The README states the demo's summary line once; this test runs the recipe exactly as
tools/demo.py does, twice (the second run reuses the generated set and the pretrained
backbone, as a user's second `make demo` does), and asserts that both runs print that line,
to 3 decimals, on the kind of machine it was measured on (2 CPU threads, the pinned torch
build).
"""
import os.path as osp
import re

import cv2
import pytest

from emo_mm.demo.run import DEMO_SEED, run_demo
from helpers import REPO

pytestmark = pytest.mark.slow  # the whole demo, twice: minutes

SUMMARY = re.compile(r'bbox mAP \d\.\d{3} -> \d\.\d{3}, mAP@0\.5 \d\.\d{3} -> \d\.\d{3} '
                     r'\(untrained -> trained, \d+ epochs, seed \d+\)')


def readme_summary() -> str:
    """The demo's summary line as the README states it (exactly once)."""
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        found = set(SUMMARY.findall(f.read()))
    assert len(found) == 1, f'the README should state one demo summary line, found {found}'
    return found.pop()


def test_demo_reproduces_the_readme(tmp_path, monkeypatch):
    stated = readme_summary()
    assert f'seed {DEMO_SEED})' in stated
    monkeypatch.chdir(REPO)  # the demo configs' data paths are relative to the repository
    first = run_demo(work_dir=str(tmp_path / 'first'), verbose=False)
    assert first.after['bbox_mAP_50'] >= 0.5  # a detector that works on held-out images
    assert first.before['bbox_mAP_50'] < 0.05  # and did not before training
    grid = cv2.imread(first.grid)
    assert grid is not None and min(grid.shape[:2]) >= 1000  # legible: enlarged images
    assert osp.isfile(first.checkpoint)
    second = run_demo(work_dir=str(tmp_path / 'second'), verbose=False)
    assert second.summary() == first.summary()  # same seed, same numbers
    assert first.summary() == stated
