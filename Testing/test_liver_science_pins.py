"""Pins of every quantity the LiverLesionCAD method defines (issue 9 item 2, "the tests pin the science"):
sigma = f(diameter), alpha, ROI size and field of view, size-bin edges, phantom masks by partial volume,
sigma never below the measured diameter. Each assertion fails if its constant changes."""
import json

import numpy as np
import pytest

from slicercad.engine.registry import BUNDLED_DIR
from slicercad.liver.attention import DEFAULT_ALPHA, attention_from_diameter, attention_from_mask, sigma_from_diameter
from slicercad.liver.dataset import build_dataset
from slicercad.liver.inference import size_bin
from slicercad.liver.roi import RoiSpec
from slicercad.liver.task import DEFAULT_CONFIG
from slicercad.synth.liver_lesions import CLASSES
from slicercad.synth.liver_lesions_phantom import generate_lesions


def test_sigma_is_the_lesion_radius_in_roi_pixels():
    assert sigma_from_diameter(12.0, 0.75) == 8.0                  # d / 2 / spacing, not d / 1.5 nor d
    assert sigma_from_diameter(3.0, 0.75) == 2.0
    G = attention_from_diameter((65, 65), 20.0, 0.5)               # radius 20 px, centre pixel 32
    assert G[32, 32] == pytest.approx(1.0)
    assert G[32, 52] == pytest.approx(np.exp(-0.5), abs=1e-6)      # exp(-1/2) on the lesion edge
    assert G[32, 12] == pytest.approx(np.exp(-0.5), abs=1e-6)


def test_mask_attention_sigma_never_below_the_measured_diameter():
    rr, cc = np.mgrid[0:64, 0:64]
    tiny = (rr - 31.5) ** 2 + (cc - 31.5) ** 2 <= 1.0              # a 2-4 px mask of a 10 mm lesion
    G = attention_from_mask(tiny, 0.75, diameter_mm=10.0)
    assert np.allclose(G, attention_from_diameter((64, 64), 10.0, 0.75), atol=1e-6)
    big = (rr - 31.5) ** 2 + (cc - 31.5) ** 2 <= 12.0 ** 2         # mask larger than the measured 6 mm
    wide = attention_from_mask(big, 0.75, diameter_mm=6.0)
    assert (wide > 0.5).sum() > (attention_from_diameter((64, 64), 6.0, 0.75) > 0.5).sum()


def test_alpha_roi_size_and_field_of_view():
    assert DEFAULT_ALPHA == 0.1 and DEFAULT_CONFIG["alpha"] == 0.1 and DEFAULT_CONFIG["roi_px"] == 64
    spec = RoiSpec()
    assert spec.size_px == 64 and spec.fov_factor == 3.0 and spec.min_fov_mm == 48.0 and spec.fov_mm is None
    assert spec.field_of_view(10.0) == 48.0 and spec.field_of_view(16.0) == 48.0 and spec.field_of_view(30.0) == 90.0
    card = json.loads((BUNDLED_DIR / "liver_lesion_demo.json").read_text())
    assert card["input_spec"]["alpha"] == 0.1 and card["input_spec"]["roi_px"] == [64, 64]
    assert card["input_spec"]["attention_source"] == "diameter" and card["model_config"]["use_masks"] is False


def test_size_bin_edges_hold_their_lower_edge():
    assert [size_bin(d) for d in (3.0, 9.99, 10.0, 19.99, 20.0, 40.0)] == [
        "<10 mm", "<10 mm", "10-20 mm", "10-20 mm", ">=20 mm", ">=20 mm"]


def test_phantom_masks_are_partial_volume_cross_sections_small_lesions_included():
    items = generate_lesions(24, seed=2, split="test")
    ds = build_dataset(items, CLASSES, seed=1, attention="mask")
    spacing = np.array([RoiSpec().field_of_view(d) / 64 for d in ds.diameters_mm])
    equivalent = 2 * np.sqrt(ds.masks.sum((1, 2)) / np.pi) * spacing
    ratio = equivalent / ds.diameters_mm                           # cross-section vs longest diameter
    assert np.all(ratio > 0.7) and np.all(ratio < 1.1), ratio
    small = ds.diameters_mm < 5.0
    assert small.sum() >= 3 and ds.masks[small].sum((1, 2)).min() >= 8     # not 1-2 px
    peaks = np.array([np.unravel_index(np.argmax(g), g.shape) for g in ds.attention])
    assert np.all(np.abs(peaks - 31.5) <= 0.25 * 64)                  # mask centroid near the marked centre
