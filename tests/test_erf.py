"""tools/analysis_tools/erf.py: the effective-receptive-field picture and what it should show
at init."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import load_tool

erf_tool = load_tool('analysis_tools/erf')


@pytest.fixture(scope='module')
def erfs(tmp_path_factory):
    out = tmp_path_factory.mktemp('erf') / 'erf.png'
    # 160x160: the stage-3 map (10x10) spans 2x2 windows of 7, so contiguous windows differ
    # from the spanning ones (at 112 the map is one window and both are global attention).
    maps = erf_tool.main(['--arch', '1M', '--stage', '3', '--input-size', '160',
                          '--samples', '4', '--out', str(out)])
    return maps, out


def test_writes_a_png_with_one_panel_per_variant(erfs):
    maps, out = erfs
    assert list(maps) == ['spanning', 'window', 'emov1']
    with Image.open(out) as image:
        assert image.format == 'PNG'
        width, height = image.size
        assert width > 2 * height > 200  # three panels side by side
        pixels = np.asarray(image.convert('RGB'))
    assert pixels.std() > 10  # not a blank canvas


def test_maps_peak_near_the_centre(erfs):
    maps, _ = erfs
    for variant, erf in maps.items():
        assert erf.shape == (160, 160) and np.isfinite(erf).all() and erf.max() > 0
        row, col = np.unravel_index(np.argmax(erf), erf.shape)
        assert abs(row - 80) <= 24 and abs(col - 80) <= 24, (variant, row, col)


def test_spanning_attention_covers_more_than_windows_alone(erfs):
    maps, _ = erfs
    spanning, window = maps['spanning'], maps['window']
    print({v: (erf_tool.area_fraction(m), erf_tool.area_above(m)) for v, m in maps.items()})
    assert erf_tool.area_fraction(spanning, 0.9) > erf_tool.area_fraction(window, 0.9)
    assert erf_tool.area_above(spanning) > erf_tool.area_above(window)


def test_spanning_and_window_variants_share_their_weights():
    spanning = erf_tool.build_backbone('spanning', '1M', stage=3, seed=3)
    window = erf_tool.build_backbone('window', '1M', stage=3, seed=3)
    a, b = spanning.state_dict(), window.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_area_measures():
    erf = np.zeros((10, 10))
    erf[5, 5] = 9.
    erf[0, :] = 0.1  # 10 pixels with 1 / 10 of the mass
    assert erf_tool.area_fraction(erf, 0.5) == pytest.approx(0.01)
    assert erf_tool.area_fraction(erf, 0.955) == pytest.approx(0.07)
    assert erf_tool.area_above(erf, 0.01) == pytest.approx(0.11)


def test_bad_checkpoint_argument_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match='VARIANT=PATH'):
        erf_tool.main(['--checkpoint', 'nonsense', '--out', str(tmp_path / 'x.png')])
    with pytest.raises(SystemExit, match='does not exist'):
        erf_tool.main(['--checkpoint', 'spanning=missing.pth', '--out', str(tmp_path / 'x.png')])
