"""Evaluation metrics against independent calculations on small, known inputs."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from slicercad.engine.metrics import (bootstrap_weights, evaluate_classification, evaluate_regression,
                                      evaluate_segmentation, jsonable, size_bins, weighted_auc)
from slicercad.errors import InputError

CLASSES = ["cyst", "hemangioma", "metastasis"]


def _softmax_data(n, seed, signal=1.5, weights=(0.15, 0.1, 0.75)):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=weights)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_confusion_and_per_class_match_counting():
    y, p = _softmax_data(200, 1)
    r = evaluate_classification([CLASSES[i] for i in y], p, CLASSES, n_boot=50)
    pred = p.argmax(1)
    cm = np.array(r["confusion_matrix"])
    for t in range(3):
        for q in range(3):
            assert cm[t, q] == np.sum((y == t) & (pred == q))
    for c, name in enumerate(CLASSES):
        tp = np.sum((y == c) & (pred == c))
        assert r["per_class"][name]["recall"] == pytest.approx(tp / np.sum(y == c))
        assert r["per_class"][name]["precision"] == pytest.approx(tp / max(1, np.sum(pred == c)))
    assert r["accuracy"] == pytest.approx(np.mean(pred == y))
    recalls = [np.mean(pred[y == c] == c) for c in range(3)]
    assert r["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_majority_guess_scores_baseline_and_chance_balanced_accuracy():
    y, _ = _softmax_data(400, 2)
    p = np.tile([0.1, 0.1, 0.8], (len(y), 1))
    r = evaluate_classification(y, p, CLASSES, n_boot=0)
    assert r["majority_baseline"]["class"] == "metastasis"
    assert r["accuracy"] == pytest.approx(r["majority_baseline"]["accuracy"])
    assert r["accuracy"] > 0.6 and r["balanced_accuracy"] == pytest.approx(1 / 3)


def test_auc_and_bootstrap_ci():
    y, p = _softmax_data(300, 3, weights=(1 / 3, 1 / 3, 1 / 3))
    r = evaluate_classification(y, p, CLASSES, n_boot=300, seed=4)
    for c, name in enumerate(CLASSES):
        roc = r["roc"]["per_class"][name]
        assert roc["auc"] == pytest.approx(roc_auc_score(y == c, p[:, c]))
        lo, hi = roc["ci95"]
        assert lo < roc["auc"] < hi and hi - lo < 0.2
    assert r["roc"]["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    weights = bootstrap_weights(len(y), y % 2 + 2 * (np.arange(len(y)) // 7), n_boot=5, rng=0)
    rounded = np.round(p[:, 1], 2)  # rounding makes ties
    for w, value in zip(weights, weighted_auc(y == 1, rounded, weights)):
        assert value == pytest.approx(roc_auc_score(y == 1, rounded, sample_weight=w))
    again = evaluate_classification(y, p, CLASSES, n_boot=300, seed=4)
    assert again["roc"]["macro_auc_ci95"] == r["roc"]["macro_auc_ci95"]


def test_ece_small_when_calibrated_large_when_overconfident():
    rng = np.random.default_rng(5)
    n = 4000
    p = rng.dirichlet([1, 1, 1], size=n)
    y = np.array([rng.choice(3, p=row) for row in p])
    calibrated = evaluate_classification(y, p, CLASSES, n_boot=0)["calibration"]
    sharp = p ** 6
    sharp /= sharp.sum(1, keepdims=True)
    overconfident = evaluate_classification(y, sharp, CLASSES, n_boot=0)["calibration"]
    assert calibrated["ece"] < 0.03 < 0.1 < overconfident["ece"]
    assert sum(b["count"] for b in calibrated["bins"]) == n


def test_size_bins_edges_and_per_bin_metrics():
    names = [name for name, _ in size_bins([0], (10, 20))]
    assert names == ["<10 mm", "10–20 mm", "≥20 mm"]
    masks = dict(size_bins([9.99, 10.0, 19.99, 20.0, 35.0], (10, 20)))
    assert masks["<10 mm"].tolist() == [True, False, False, False, False]
    assert masks["10–20 mm"].tolist() == [False, True, True, False, False]
    assert masks["≥20 mm"].tolist() == [False, False, False, True, True]
    y, p = _softmax_data(150, 6)
    sizes = np.random.default_rng(6).uniform(3, 40, len(y))
    r = evaluate_classification(y, p, CLASSES, sizes_mm=sizes, n_boot=20)
    assert sum(b["n"] for b in r["by_size"]) == len(y)
    small = sizes < 10
    assert r["by_size"][0]["accuracy"] == pytest.approx(np.mean(p[small].argmax(1) == y[small]))


def test_bad_inputs_name_the_row():
    y, p = _softmax_data(10, 7)
    with pytest.raises(InputError, match="row 3"):
        evaluate_classification(["cyst"] * 3 + ["polyp"] + ["cyst"] * 6, p, CLASSES)
    bad = p.copy()
    bad[4] = [0.5, 0.5, 0.5]
    with pytest.raises(InputError, match="row 4.*sum to 1"):
        evaluate_classification(y, bad, CLASSES)
    with pytest.raises(InputError, match="shape"):
        evaluate_classification(y, p[:, :2], CLASSES)
    with pytest.raises(InputError, match="row 2"):
        evaluate_classification(y, p, CLASSES, sizes_mm=[5, 5, float("nan")] + [5] * 7)


def test_regression_bland_altman():
    rng = np.random.default_rng(8)
    t = rng.uniform(50, 150, 200)
    e = t + 3.0 + rng.normal(0, 2.0, t.size)
    r = evaluate_regression(t, e, n_boot=200)
    d = e - t
    assert r["mae"] == pytest.approx(np.mean(np.abs(d)))
    assert r["bias"] == pytest.approx(d.mean())
    assert r["loa_upper"] - r["loa_lower"] == pytest.approx(2 * 1.96 * d.std(ddof=1))
    assert r["mae_ci95"][0] < r["mae"] < r["mae_ci95"][1]
    assert r["bland_altman"]["diff"] == pytest.approx(d.tolist())
    with pytest.raises(InputError, match="row 1"):
        evaluate_regression([1, float("inf")], [1, 2])


def test_segmentation_dice_and_surface_distance():
    ref = np.zeros((24, 24, 12), bool)
    ref[6:14, 6:14, 3:8] = True
    shifted = np.roll(ref, 2, axis=0)
    r = evaluate_segmentation([shifted, ref, np.zeros_like(ref)], [ref, ref, ref],
                              spacings_mm=[(0.5, 1, 1), (1, 1, 1), (1, 1, 1)], sizes_mm=[5, 15, 25])
    inter = np.sum(shifted & ref)
    assert r["cases"][0]["dice"] == pytest.approx(2 * inter / (shifted.sum() + ref.sum()), rel=1e-5)
    assert r["cases"][0]["hd95_mm"] == pytest.approx(2 * 0.5)
    assert r["cases"][1] == {"dice": pytest.approx(1.0), "hd95_mm": 0.0, "assd_mm": 0.0}
    assert r["cases"][2]["dice"] == 0.0 and r["cases"][2]["hd95_mm"] is None
    assert r["hd95_mm"]["n"] == 2 and [b["n"] for b in r["by_size"]] == [1, 1, 1]
    with pytest.raises(InputError, match="case 0"):
        evaluate_segmentation([ref[:, :, :5]], [ref])


def test_jsonable_replaces_non_finite():
    assert jsonable({"a": np.float32(np.nan), "b": [np.int64(2), float("inf")]}) == {"a": None, "b": [2, None]}


def test_accuracy_and_balanced_accuracy_cis_bracket_the_estimates_and_match_sklearn_per_resample():
    from sklearn.metrics import balanced_accuracy_score

    from slicercad.engine.metrics import _accuracy_cis

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    proba = np.eye(3)[pred] * 0.8 + 0.2 / 3
    m = evaluate_classification(y, proba, ["a", "b", "c"], n_boot=400, seed=1)
    for key in ("accuracy", "balanced_accuracy"):
        lo, hi = m[f"{key}_ci95"]
        assert lo < m[key] < hi and hi - lo < 0.2
    for row in np.random.default_rng(0).integers(0, 300, (5, 300)):  # the weighted bootstrap equals sklearn
        w = np.bincount(row, minlength=300).astype(float)              # on the resampled cases
        one = _accuracy_cis(y, pred, 3, np.repeat(w[None], 10, axis=0))["balanced_accuracy_ci95"]
        assert one[0] == pytest.approx(balanced_accuracy_score(y[row], pred[row]))
    perfect = evaluate_classification(y, np.eye(3)[y], ["a", "b", "c"], n_boot=100)
    assert perfect["accuracy_ci95"] == [1.0, 1.0] and perfect["balanced_accuracy_ci95"] == [1.0, 1.0]
