"""Bootstrap CIs pinned to their definition: 95 % level (coverage on data with known truth), 1000
resamples, whole patients resampled when patient ids are given, and the <10 / 10–20 / ≥20 mm bins."""
import inspect

import numpy as np
import pytest

from slicercad.engine.metrics import (CI_LEVEL, N_BOOT, SIZE_BIN_EDGES_MM, bootstrap_weights,
                                      evaluate_classification, evaluate_regression, evaluate_segmentation,
                                      percentile_ci, size_bins)
from slicercad.errors import InputError

N_DATASETS = 200


def test_constants_are_the_reported_ones_and_are_the_defaults():
    assert (CI_LEVEL, N_BOOT, SIZE_BIN_EDGES_MM) == (0.95, 1000, (10.0, 20.0))
    for fn in (evaluate_classification, evaluate_regression, evaluate_segmentation):
        params = inspect.signature(fn).parameters
        assert params["n_boot"].default == N_BOOT and params["bins"].default == SIZE_BIN_EDGES_MM
    assert inspect.signature(percentile_ci).parameters["level"].default == CI_LEVEL


def test_default_size_bins_hold_their_lower_edge():
    """The seed report's bins: <10 mm, 10–20 mm, ≥20 mm; exactly 10 mm and exactly 20 mm go up."""
    sizes = [0.0, 9.99, 10.0, 19.99, 20.0, 45.0]
    masks = size_bins(sizes)
    assert [name for name, _ in masks] == ["<10 mm", "10–20 mm", "≥20 mm"]
    assert [m.astype(int).tolist() for _, m in masks] == [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0],
                                                          [0, 0, 0, 0, 1, 1]]
    y = np.array([0, 1, 0, 1, 0, 1])
    r = evaluate_classification(y, np.eye(2)[y], ["a", "b"], sizes_mm=sizes, n_boot=0)
    assert [(b["bin"], b["n"]) for b in r["by_size"]] == [("<10 mm", 2), ("10–20 mm", 2), ("≥20 mm", 2)]


def test_mae_ci_covers_the_true_value_at_the_stated_level():
    """200 datasets of 80 independent errors ~ N(0, 1): true MAE = sqrt(2 / pi). A 95 % CI covers it in
    90–99 % of them; 25th/75th percentiles would cover about half."""
    true_mae = np.sqrt(2 / np.pi)
    covered = 0
    for seed in range(N_DATASETS):
        rng = np.random.default_rng(seed)
        t = rng.uniform(0, 10, 80)
        lo, hi = evaluate_regression(t, t + rng.normal(0, 1, t.size), seed=seed)["mae_ci95"]
        covered += lo <= true_mae <= hi
    assert 0.90 <= covered / N_DATASETS <= 0.99


def _clustered(seed, n_patients, per_patient, icc):
    """Values with mean 0, variance 1 and within-patient correlation ``icc``; patient ids."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), per_patient)
    x = np.sqrt(icc) * rng.normal(size=n_patients)[patients] + np.sqrt(1 - icc) * rng.normal(size=patients.size)
    return x, patients


def test_patient_bootstrap_covers_correlated_data_and_the_lesion_bootstrap_does_not():
    """50 patients x 4 lesions, within-patient correlation 0.5 (design effect 2.5): resampling patients
    keeps 95 % coverage of the true mean 0; resampling lesions undercovers (about 79 %)."""
    by_patient = by_lesion = 0
    for seed in range(N_DATASETS):
        x, patients = _clustered(seed, 50, 4, 0.5)
        for groups in (patients, None):
            w = bootstrap_weights(x.size, groups, rng=seed)
            lo, hi = percentile_ci(w @ x / w.sum(axis=1))
            if groups is None:
                by_lesion += lo <= 0 <= hi
            else:
                by_patient += lo <= 0 <= hi
    assert 0.90 <= by_patient / N_DATASETS <= 0.99
    assert by_lesion / N_DATASETS < 0.87


def test_patient_grouped_ci_width_is_lesion_width_times_root_design_effect():
    """Correct/incorrect calls correlated within patients: q_patient ~ Beta (mean 0.7, intraclass
    correlation rho = 0.25), 5 lesions each -> design effect 1 + (5 - 1) rho = 2. Tolerance 15 %
    (about 3.5 SD of the ratio over simulated datasets)."""
    rho, m, n_patients, mean = 0.25, 5, 300, 0.7
    rng = np.random.default_rng(11)
    s = 1 / rho - 1
    q = rng.beta(mean * s, (1 - mean) * s, n_patients)
    patients = np.repeat(np.arange(n_patients), m)
    y = rng.integers(0, 2, patients.size)
    pred = np.where(rng.random(patients.size) < q[patients], y, 1 - y)
    proba = np.where(pred[:, None] == np.arange(2), 0.8, 0.2)
    grouped = evaluate_classification(y, proba, ["a", "b"], groups=[f"P{g}" for g in patients], seed=1)
    lesion = evaluate_classification(y, proba, ["a", "b"], seed=1)
    assert (grouped["resampling_unit"], lesion["resampling_unit"]) == ("patient", "case")
    assert grouped["n_patients"] == n_patients and lesion["n_patients"] is None
    ratio = np.diff(grouped["accuracy_ci95"])[0] / np.diff(lesion["accuracy_ci95"])[0]
    assert ratio == pytest.approx(np.sqrt(1 + (m - 1) * rho), rel=0.15)
    for key in ("balanced_accuracy_ci95", "macro_auc_ci95"):
        block = grouped if key.startswith("bal") else grouped["roc"]
        other = lesion if key.startswith("bal") else lesion["roc"]
        assert np.diff(block[key])[0] > 1.2 * np.diff(other[key])[0]


def test_bootstrap_weights_move_whole_patients():
    patients = np.array(["p1", "p1", "p2", "p3", "p3", "p3"])
    w = bootstrap_weights(6, patients, n_boot=200, rng=0)
    assert w.shape == (200, 6)
    for codes in ([0, 1], [3, 4, 5]):
        assert np.all(w[:, codes] == w[:, codes[:1]])            # a patient's lesions travel together
    assert np.all(w[:, [0, 2, 3]].sum(axis=1) == 3)               # 3 patients drawn per resample
    lesion = bootstrap_weights(6, n_boot=200, rng=0)
    assert np.all(lesion.sum(axis=1) == 6) and np.any(lesion[:, 0] != lesion[:, 1])
    with pytest.raises(InputError, match="row 2.*patient id is missing"):
        bootstrap_weights(3, ["p1", "p1", ""])
    with pytest.raises(InputError, match="expected 3 patient ids"):
        evaluate_regression([1, 2, 3], [1, 2, 4], groups=["a", "b"])


def test_every_block_reports_its_unit_and_patient_count():
    rng = np.random.default_rng(4)
    patients = np.repeat(np.arange(30), 3)
    t = rng.uniform(0, 10, patients.size)
    sizes = rng.uniform(3, 40, patients.size)
    r = evaluate_regression(t, t + rng.normal(size=t.size), sizes_mm=sizes, groups=patients, n_boot=200)
    assert r["ci_level"] == CI_LEVEL and r["resampling_unit"] == "patient" and r["n_patients"] == 30
    for b in r["by_size"]:
        assert b["n_patients"] == len(set(patients[dict(size_bins(sizes))[b["bin"]]]))
    masks = [np.ones((4, 4), bool)] * 20
    seg = evaluate_segmentation(masks, masks, groups=np.repeat(np.arange(10), 2), n_boot=100)
    assert seg["dice"]["mean_ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert seg["n_patients"] == 10
