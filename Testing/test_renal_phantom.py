"""SYNTHETIC renal phantom realism checks: unenhanced masses carry no enhancement texture, a type's enhancement
spread scales with its enhancement (few papillary RCCs fall under the 15 HU flag), and flagged masses are
reported by type and class with an 'indeterminate' wording."""
import numpy as np

from slicercad.renal.constants import ENHANCEMENT_HU
from slicercad.renal.dataset import case_mass, core_mask, mass_flags, mass_sample
from slicercad.renal.phantom import (MASS_TYPES, NOISE_HU, UNENHANCED_TEXTURE_SD_HU, draw_phase_means, render_case,
                                     texture_sd)
from slicercad.renal.study import flagged_by_type


def _core_sd(case, phase_index):
    s = mass_sample(case.images, case_mass(case))
    core = core_mask(s.hu.shape[-2:], s.diameter_mm, s.spacing_mm)
    return float(s.hu[phase_index][core].std())


def test_unenhanced_texture_is_small_and_scales_with_enhancement():
    for name, row in MASS_TYPES.items():
        assert texture_sd(row, 0) == UNENHANCED_TEXTURE_SD_HU < NOISE_HU
        assert texture_sd(row, 1 + int(np.argmax(np.asarray(row[1][1:]) - row[1][0]))) == row[2]
    cc = MASS_TYPES["clear_cell_rcc"]
    assert texture_sd(cc, 1) > texture_sd(cc, 2) > texture_sd(cc, 3)     # heterogeneity follows enhancement
    c = render_case(np.random.default_rng(11), "clear_cell_rcc", 34.0)
    a = render_case(np.random.default_rng(12), "fat_poor_aml", 34.0)
    sd_cc, sd_aml = _core_sd(c, 0), _core_sd(a, 0)
    assert abs(sd_cc - sd_aml) < 4.0                 # unenhanced: both near the image noise, no tumour texture
    assert _core_sd(c, 1) > 1.5 * sd_cc              # enhancement texture only once contrast arrives


def test_enhancement_spread_scales_with_the_type():
    rng = np.random.default_rng(0)
    peak = {}
    for name in ("papillary_rcc", "chromophobe_rcc", "clear_cell_rcc"):
        m = np.array([draw_phase_means(rng, MASS_TYPES[name]) for _ in range(3000)])
        peak[name] = (m[:, 1:] - m[:, :1]).max(axis=1)
    assert np.mean(peak["papillary_rcc"] < ENHANCEMENT_HU) < 0.03      # shared 20 HU SD: ~11 %
    assert np.mean(peak["chromophobe_rcc"] < ENHANCEMENT_HU) < 0.005
    assert 6.0 < peak["papillary_rcc"].std() < 16.0 < peak["clear_cell_rcc"].std()


def test_flag_wording_and_flagged_by_type():
    feats = {"fat_fraction": 0.0, "peak_enhancement_hu": 8.0}
    (text,) = mass_flags(feats, 20.0)
    assert "indeterminate" in text and "hypovascular RCC" in text and "a cyst, e.g." not in text

    class DS:
        flags = [("m1", [text], "papillary_rcc", 1), ("m2", [text, "mass 45.0 mm > 40 mm: outside"],
                                                       "papillary_rcc", 1), ("m3", [text], "oncocytoma", 0)]
    by = flagged_by_type(DS)
    assert by["papillary_rcc"]["n"] == 2 and by["papillary_rcc"]["malignant"] == 2
    assert by["papillary_rcc"]["flags"] == {"hypo-/non-enhancing": 2, "over 40 mm": 1}
    assert by["oncocytoma"] == {"n": 1, "malignant": 0, "flags": {"hypo-/non-enhancing": 1}}
