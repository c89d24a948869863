"""The quantities AnomalyCT defines, pinned by behaviour (``Scripts/mutation_check.py`` changes each and expects a
failure here): the map smoothing, the reference's std shrinkage and floor, the map-based case score's top
fraction, the hyperdense threshold, the quantisation and the stated limits of the normal-variation and
random-weights controls (the map threshold's percentile is pinned in ``test_anomaly_reference.py``)."""
import numpy as np
import pytest
import torch

from slicercad.anomaly import reference as R
from slicercad.anomaly.baselines import hu_threshold_scores, hyperdense_level, top_fraction_mean
from slicercad.anomaly.experiment import NORMAL_VARIATION_LIMIT
from slicercad.anomaly.experiment_report import verdicts
from slicercad.anomaly.scoring import quantise


def test_map_smoothing_is_a_unit_gaussian_of_one_voxel():
    delta = np.zeros((1, 21, 21, 21), np.float32)
    delta[0, 10, 10, 10] = 1.0
    out = R.smooth_in_mask(delta, np.ones(delta.shape, bool))
    assert out[0, 10, 10, 10] == pytest.approx((2 * np.pi) ** -1.5, rel=1e-3)       # sigma 1 voxel, 3D
    assert out[0, 10, 10, 11] / out[0, 10, 10, 10] == pytest.approx(np.exp(-0.5), rel=1e-3)


def test_reference_std_is_shrunk_by_four_pseudo_normals_and_floored_at_half_the_median():
    rng = np.random.default_rng(0)
    raw = rng.normal(0.0, 1.0, (6, 1, 8, 8))
    raw[:, 0, 0, 0] = 5.0                                     # a voxel with zero variance among the normals
    mean, std, floor, prior = R.voxel_stats(raw)
    assert std[0, 0, 0] == pytest.approx(np.sqrt(4 * prior["var"].item() / (6 + 4)))
    assert floor == pytest.approx(0.5 * np.median(std))


def test_map_score_is_the_mean_of_the_top_one_percent_with_at_least_five_voxels():
    values = np.arange(1000, dtype=float)[None]
    mask = np.ones_like(values, bool)
    assert top_fraction_mean(values, mask)[0] == pytest.approx(np.mean(np.arange(990, 1000)))    # top 10 of 1000
    small = np.arange(100, dtype=float)[None]
    assert top_fraction_mean(small, np.ones_like(small, bool))[0] == pytest.approx(97.0)         # top 5 of 100


def test_hyperdense_threshold_is_62_hu_in_the_brain_window():
    assert hyperdense_level() == pytest.approx(62.0 / 80.0)
    hu = np.array([61.0, 61.9, 62.2, 70.0, 90.0])
    x = np.zeros((1, 3, 1, 1, len(hu)), np.float32)
    x[0, 0, 0, 0] = np.clip(hu / 80.0, 0, 1)                  # brain window 0..80 HU
    x[0, 2] = 1.0
    assert hu_threshold_scores(x)[0] == 3


def test_quantisation_has_256_levels():
    q = quantise(torch.tensor([0.0, 1.0 / 256, 0.5, 255.5 / 256, 1.0]))
    assert q.tolist() == pytest.approx([0.0, 1.0 / 256, 0.5, 255.0 / 256, 255.0 / 256])


def _result(rate, random_auc):
    flagged = {"atrophy": {"glow_map": {"rate": rate}}}
    return {"normal_variation_limit": NORMAL_VARIATION_LIMIT,
            "normal_variation_flagged": flagged, "random_methods": ["glow_random"],
            "case_auc": {"glow_random": {"all": {"auc": random_auc}}}}


def test_control_limits_are_15_percent_flagged_and_chance_within_0_1():
    assert verdicts(_result(0.15, 0.6))["normal_variation"]["atrophy"]["glow_map"] == "PASS"
    assert verdicts(_result(0.1875, 0.6))["normal_variation"]["atrophy"]["glow_map"] == "FAIL"     # 3 of 16
    assert verdicts(_result(0.0, 0.6))["random_at_chance"]["glow_random"] == "PASS"
    assert verdicts(_result(0.0, 0.62))["random_at_chance"]["glow_random"] == "FAIL"
    assert verdicts(_result(0.0, 0.38))["random_at_chance"]["glow_random"] == "FAIL"
