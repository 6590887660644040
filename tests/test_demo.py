"""`make demo` (tools/demo.py) prints the README's numbers, run after run.

The README states the demo's summary line once; this test runs tools/demo.py twice as a
user does (the second run reuses the generated set and the pretrained backbone) and asserts
that both runs print that line, to 3 decimals, on the kind of machine it was measured on
(2 CPU threads, the pinned torch build).
"""
import os
import os.path as osp
import re
import subprocess
import sys

import cv2
import pytest

from emo_mm.demo.run import DEMO_SEED
from helpers import REPO

pytestmark = pytest.mark.slow  # the whole demo, twice: minutes

SUMMARY = re.compile(r'bbox mAP \d\.\d{3} -> \d\.\d{3}, mAP@0\.5 (\d\.\d{3}) -> (\d\.\d{3}) '
                     r'\(untrained -> trained, \d+ epochs, seed \d+\)')


def readme_summary() -> str:
    """The demo's summary line as the README states it (exactly once)."""
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        found = {match.group(0) for match in SUMMARY.finditer(f.read())}
    assert len(found) == 1, f'the README should state one demo summary line, found {found}'
    return found.pop()


def run_demo_tool(work_dir: str) -> str:
    """stdout of `python tools/demo.py` on 2 threads (the README's numbers are theirs)."""
    result = subprocess.run([sys.executable, 'tools/demo.py', '--work-dir', work_dir],
                            cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='2'),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.timeout(1800)
def test_demo_reproduces_the_readme(tmp_path):
    stated = readme_summary()
    assert f'seed {DEMO_SEED})' in stated
    first = run_demo_tool(str(tmp_path / 'first'))
    summary = SUMMARY.search(first)
    assert summary, first[-2000:]
    before, after = map(float, summary.groups())
    assert after >= 0.5  # a detector that works on held-out images
    assert before < 0.05  # and did not before training
    grid = re.search(r'\[demo\] ground truth \| predictions on held-out images: (\S+)', first)
    image = cv2.imread(grid.group(1))
    assert image is not None and min(image.shape[:2]) >= 1000  # legible: enlarged images
    assert re.search(r'\[demo\] checkpoint: \S+\.pth', first)
    second = SUMMARY.search(run_demo_tool(str(tmp_path / 'second')))
    assert second and second.group(0) == summary.group(0)  # same seed, same numbers
    assert summary.group(0) == stated
