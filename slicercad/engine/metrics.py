"""Evaluation metrics for classification, regression and segmentation.

Every result is a plain dict (JSON-ready once NaN becomes null, see :func:`jsonable`) holding
the numbers and the curve data the report plots. Classification reports accuracy beside the
majority-class baseline and balanced accuracy, one-vs-rest ROC/AUC with bootstrap 95% CIs,
top-label calibration (reliability bins, ECE) and the same figures per lesion-size bin.

Every CI is a percentile bootstrap. Given ``groups`` (patient ids) it resamples whole patients
(cluster bootstrap): lesions of one patient are correlated, and resampling them one by one makes
the CIs too narrow by about the square root of the design effect.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance
from monai.metrics.calibration import calibration_binning
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                             mean_absolute_error, mean_squared_error,
                             precision_recall_fscore_support, roc_auc_score, roc_curve)

from ..errors import InputError
from .ci_settings import CI_LEVEL, MIN_BOOT, N_BOOT, SIZE_BIN_EDGES_MM



def jsonable(obj):
    """Recursively turn numpy types into Python ones and NaN/inf into None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def size_bins(sizes_mm, bins=SIZE_BIN_EDGES_MM) -> list[tuple[str, np.ndarray]]:
    """Name and boolean mask of each lesion-size bin: ``<10 mm``, ``10–20 mm``, ``≥20 mm``."""
    sizes = np.asarray(sizes_mm, dtype=float)
    edges = [float(b) for b in bins]
    if sorted(edges) != edges or len(set(edges)) != len(edges):
        raise InputError(f"size bin edges must increase strictly, got {list(bins)}", "bins")
    fmt = lambda v: f"{v:g}"  # noqa: E731
    out = [(f"<{fmt(edges[0])} mm", sizes < edges[0])]
    out += [(f"{fmt(lo)}–{fmt(hi)} mm", (sizes >= lo) & (sizes < hi)) for lo, hi in zip(edges, edges[1:])]
    out.append((f"≥{fmt(edges[-1])} mm", sizes >= edges[-1]))
    return out


def _check_sizes(sizes_mm, n):
    sizes = np.asarray(sizes_mm, dtype=float).reshape(-1)
    if sizes.shape[0] != n:
        raise InputError(f"expected {n} lesion sizes, got {sizes.shape[0]}", "sizes_mm")
    bad = np.flatnonzero(~np.isfinite(sizes) | (sizes < 0))
    if bad.size:
        raise InputError(f"size must be a finite number of mm >= 0, got {sizes[bad[0]]}", f"row {bad[0]}")
    return sizes


def label_indices(y_true, classes) -> np.ndarray:
    """Map labels given as class names or integer indices to indices into ``classes``."""
    names = [str(c) for c in classes]
    out = np.empty(len(y_true), dtype=int)
    for i, value in enumerate(y_true):
        if str(value) in names:
            out[i] = names.index(str(value))
        elif isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names):
            out[i] = int(value)
        else:
            raise InputError(f"label {value!r} is not one of the classes {names}", f"row {i}")
    return out


def _check_proba(proba, n, n_classes) -> np.ndarray:
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape != (n, n_classes):
        raise InputError(f"probabilities must have shape ({n}, {n_classes}), got {p.shape}", "proba")
    for i, row in enumerate(p):
        if not np.all(np.isfinite(row)) or row.min() < 0 or row.max() > 1:
            raise InputError(f"probabilities must be finite and within [0, 1], got {row.tolist()}", f"row {i}")
        if abs(row.sum() - 1.0) > 1e-2:
            raise InputError(f"probabilities must sum to 1, got {row.sum():.4f}", f"row {i}")
    return p


def _group_codes(groups, n) -> np.ndarray:
    """Patient ids as integer codes 0..G-1; a missing id is refused naming its row."""
    ids = np.asarray(groups, dtype=object).reshape(-1)
    if ids.shape[0] != n:
        raise InputError(f"expected {n} patient ids, got {ids.shape[0]}", "groups")
    for i, value in enumerate(ids):
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            raise InputError(f"patient id is missing (got {value!r})", f"row {i}")
    return np.unique(ids.astype(str), return_inverse=True)[1].reshape(-1)


def bootstrap_weights(n, groups=None, n_boot=N_BOOT, rng=None) -> np.ndarray:
    """(n_boot, n) multiplicity of each case in each bootstrap resample.

    Without ``groups`` n cases are drawn with replacement; with ``groups`` (one patient id per
    case) as many patients as there are, each bringing all its cases. ``rng``: Generator or seed.
    """
    rng = np.random.default_rng(rng)
    codes = np.arange(n) if groups is None else _group_codes(groups, n)
    if not n or not n_boot:
        return np.zeros((0, n))
    g = int(codes.max()) + 1
    draws = rng.integers(0, g, size=(n_boot, g)) + g * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * g).reshape(n_boot, g)
    return counts[:, codes].astype(float)


def weighted_auc(pos, score, weights) -> np.ndarray:
    """Mann–Whitney AUC of ``score`` for ``pos`` under each row of case ``weights`` (ties count half);
    NaN where a row gives one class no weight."""
    order = np.argsort(score, kind="stable")
    s, pos = np.asarray(score, dtype=float)[order], np.asarray(pos, dtype=bool)[order]
    w = np.atleast_2d(weights)[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])        # tie groups of the sorted scores
    w_pos, w_neg = (np.add.reduceat(w * m, starts, axis=1) for m in (pos, ~pos))
    below = np.cumsum(w_neg, axis=1) - w_neg
    den = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (w_pos * (below + 0.5 * w_neg)).sum(axis=1) / den, np.nan)


def _wmean(weights, values) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return weights @ np.asarray(values, dtype=float) / weights.sum(axis=1)


def percentile_ci(samples, level=CI_LEVEL) -> list:
    """[lower, upper] percentile interval of the finite bootstrap ``samples``; [None, None] if too few."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size < MIN_BOOT:
        return [None, None]
    tail = 50.0 * (1.0 - level)
    return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100.0 - tail))]


def _resampling(groups, n_boot, seed) -> dict:
    return {"n_boot": int(n_boot), "seed": int(seed), "ci_level": CI_LEVEL,
            "resampling_unit": "case" if groups is None else "patient"}


def _n_patients(codes):
    return None if codes is None else int(np.unique(codes).size)


def _roc(y, p, classes, weights) -> dict:
    per_class, boot_aucs = {}, []
    for c, name in enumerate(classes):
        pos = y == c
        if pos.all() or not pos.any():
            per_class[name] = {"auc": None, "ci95": [None, None], "fpr": [], "tpr": []}
            boot_aucs.append(np.full(len(weights), np.nan))
            continue
        fpr, tpr, _ = roc_curve(pos, p[:, c])
        samples = weighted_auc(pos, p[:, c], weights) if len(weights) else np.zeros(0)
        boot_aucs.append(samples)
        per_class[name] = {"auc": float(roc_auc_score(pos, p[:, c])), "ci95": percentile_ci(samples),
                           "fpr": fpr.tolist(), "tpr": tpr.tolist()}
    aucs = [v["auc"] for v in per_class.values() if v["auc"] is not None]
    macro = float(np.mean(aucs)) if len(aucs) == len(classes) else None
    macro_ci = (percentile_ci(np.mean(np.vstack(boot_aucs), axis=0)) if macro is not None and len(weights)
                else [None, None])
    return {"per_class": per_class, "macro_auc": macro, "macro_auc_ci95": macro_ci}


def _accuracy_cis(y, pred, n_classes, weights) -> dict:
    """Bootstrap CIs of accuracy and balanced accuracy (mean recall over the classes present)."""
    if not len(weights):
        return {"accuracy_ci95": [None, None], "balanced_accuracy_ci95": [None, None]}
    correct = pred == y
    recalls = [_wmean(weights[:, y == c], correct[y == c]) for c in range(n_classes) if np.any(y == c)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        balanced = np.nanmean(np.vstack(recalls), axis=0)
    return {"accuracy_ci95": percentile_ci(_wmean(weights, correct)),
            "balanced_accuracy_ci95": percentile_ci(balanced)}


def calibration(y, p, n_bins: int = 10) -> dict:
    """Top-label reliability bins and expected calibration error (ECE)."""
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    mean_p, mean_acc, counts = calibration_binning(torch.as_tensor(conf)[None, None],
                                                   torch.as_tensor(correct)[None, None], num_bins=n_bins)
    mean_p, mean_acc, counts = (t.reshape(-1).numpy() for t in (mean_p, mean_acc, counts))
    filled = counts > 0
    ece = float(np.sum(counts[filled] * np.abs(mean_acc[filled] - mean_p[filled])) / max(1, counts.sum()))
    bins = [{"lo": i / n_bins, "hi": (i + 1) / n_bins, "count": int(counts[i]),
             "confidence": float(mean_p[i]) if filled[i] else None,
             "accuracy": float(mean_acc[i]) if filled[i] else None} for i in range(n_bins)]
    return {"ece": ece, "n_bins": n_bins, "bins": bins}


def _classification_block(y, p, codes, classes, n_boot, rng) -> dict:
    n = len(y)
    if n == 0:
        return {"n": 0}
    pred = p.argmax(axis=1)
    labels = list(range(len(classes)))
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    counts = np.bincount(y, minlength=len(classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced = float(balanced_accuracy_score(y, pred))
    weights = bootstrap_weights(n, codes, n_boot, rng)
    return {
        "n": n,
        "n_patients": _n_patients(codes),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": balanced,
        **_accuracy_cis(y, pred, len(classes), weights),
        "majority_baseline": {"class": classes[int(counts.argmax())], "accuracy": float(counts.max() / n)},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "per_class": {name: {"precision": float(prec[c]), "recall": float(rec[c]), "f1": float(f1[c]),
                             "support": int(support[c])} for c, name in enumerate(classes)},
        "roc": _roc(y, p, classes, weights),
        "calibration": calibration(y, p),
    }


def evaluate_classification(y_true, proba, classes, sizes_mm=None, bins=SIZE_BIN_EDGES_MM, n_boot=N_BOOT, seed=0,
                            groups=None) -> dict:
    """Classification metrics overall and, when ``sizes_mm`` is given, per lesion-size bin.

    ``y_true`` holds class names or indices, ``proba`` is (N, C) with rows summing to 1.
    Bootstrap CIs use ``n_boot`` resamples drawn with ``seed``, of whole patients when ``groups``
    (one patient id per case) is given.
    """
    classes = [str(c) for c in classes]
    if len(classes) < 2:
        raise InputError(f"need at least two classes, got {classes}", "classes")
    y = label_indices(list(y_true), classes)
    p = _check_proba(proba, len(y), len(classes))
    codes = None if groups is None else _group_codes(groups, len(y))
    rng = np.random.default_rng(seed)
    result = {"task": "classification", "classes": classes, **_resampling(groups, n_boot, seed)}
    result.update(_classification_block(y, p, codes, classes, n_boot, rng))
    if sizes_mm is not None:
        sizes = _check_sizes(sizes_mm, len(y))
        result["by_size"] = [dict(bin=name, **_classification_block(y[m], p[m], _subset(codes, m), classes,
                                                                    n_boot, rng))
                             for name, m in size_bins(sizes, bins)]
    return result


def _subset(codes, mask):
    return None if codes is None else codes[mask]


def _regression_block(t, e, codes, n_boot, rng) -> dict:
    n = len(t)
    if n == 0:
        return {"n": 0}
    diff = e - t
    sd = float(np.std(diff, ddof=1)) if n > 1 else float("nan")
    weights = bootstrap_weights(n, codes, n_boot, rng)
    return {
        "n": n,
        "n_patients": _n_patients(codes),
        "mae": float(mean_absolute_error(t, e)),
        "mae_ci95": percentile_ci(_wmean(weights, np.abs(diff))),
        "rmse": float(math.sqrt(mean_squared_error(t, e))),
        "bias": float(diff.mean()),
        "sd_diff": sd,
        "loa_lower": float(diff.mean() - 1.96 * sd),
        "loa_upper": float(diff.mean() + 1.96 * sd),
        "pearson_r": float(np.corrcoef(t, e)[0, 1]) if n > 2 and t.std() > 0 and e.std() > 0 else None,
    }


def evaluate_regression(y_true, y_pred, sizes_mm=None, bins=SIZE_BIN_EDGES_MM, n_boot=N_BOOT, seed=0,
                        groups=None) -> dict:
    """MAE (bootstrap CI, over patients when ``groups`` is given), RMSE and Bland–Altman bias /
    limits of agreement (± 1.96 SD)."""
    t = np.asarray(y_true, dtype=float).reshape(-1)
    e = np.asarray(y_pred, dtype=float).reshape(-1)
    if t.shape != e.shape:
        raise InputError(f"{t.size} reference values but {e.size} predictions", "y_pred")
    bad = np.flatnonzero(~np.isfinite(t) | ~np.isfinite(e))
    if bad.size:
        raise InputError(f"values must be finite, got {t[bad[0]]} / {e[bad[0]]}", f"row {bad[0]}")
    codes = None if groups is None else _group_codes(groups, len(t))
    rng = np.random.default_rng(seed)
    result = {"task": "regression", **_resampling(groups, n_boot, seed)}
    result.update(_regression_block(t, e, codes, n_boot, rng))
    result["bland_altman"] = {"mean": ((t + e) / 2).tolist(), "diff": (e - t).tolist()}
    if sizes_mm is not None:
        sizes = _check_sizes(sizes_mm, len(t))
        result["by_size"] = [dict(bin=name, **_regression_block(t[m], e[m], _subset(codes, m), n_boot, rng))
                             for name, m in size_bins(sizes, bins)]
    return result


def _case_segmentation(pred, ref, spacing) -> dict:
    pred_t = torch.as_tensor(np.asarray(pred) > 0)[None, None]
    ref_t = torch.as_tensor(np.asarray(ref) > 0)[None, None]
    dice = float(compute_dice(pred_t, ref_t, include_background=True, ignore_empty=False).item())
    if not pred_t.any() or not ref_t.any():
        return {"dice": dice, "hd95_mm": None, "assd_mm": None}
    kw = {"include_background": True, "spacing": [float(s) for s in spacing]}
    hd95 = compute_hausdorff_distance(pred_t, ref_t, percentile=95, **kw).item()
    assd = compute_average_surface_distance(pred_t, ref_t, symmetric=True, **kw).item()
    return {"dice": dice, "hd95_mm": float(hd95), "assd_mm": float(assd)}


def _summary(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "median": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "median": float(np.median(v)), "n": int(v.size)}


_SEG_KEYS = ("dice", "hd95_mm", "assd_mm")


def _segmentation_block(cases, codes, n_boot, rng) -> dict:
    out = {"n": len(cases), "n_patients": _n_patients(codes),
           **{k: _summary([c[k] for c in cases]) for k in _SEG_KEYS}}
    weights = bootstrap_weights(len(cases), codes, n_boot, rng)
    out["dice"]["mean_ci95"] = percentile_ci(_wmean(weights, [c["dice"] for c in cases]))
    return out


def evaluate_segmentation(pred_masks, true_masks, spacings_mm=None, sizes_mm=None, bins=SIZE_BIN_EDGES_MM,
                          n_boot=N_BOOT, seed=0, groups=None) -> dict:
    """Dice, 95th-percentile Hausdorff and average symmetric surface distance (mm) per case, with a
    bootstrap CI of the mean Dice (over patients when ``groups`` is given).

    Masks are 2D or 3D arrays on the same grid per case; ``spacings_mm`` gives each case's
    voxel spacing in array-axis order (1 mm when omitted).
    """
    if len(pred_masks) != len(true_masks):
        raise InputError(f"{len(pred_masks)} predicted but {len(true_masks)} reference masks", "pred_masks")
    cases = []
    for i, (pm, tm) in enumerate(zip(pred_masks, true_masks)):
        pm, tm = np.asarray(pm), np.asarray(tm)
        if pm.shape != tm.shape or pm.ndim not in (2, 3):
            raise InputError(f"masks must be 2D/3D of one shape, got {pm.shape} and {tm.shape}", f"case {i}")
        spacing = (1.0,) * pm.ndim if spacings_mm is None else tuple(spacings_mm[i])
        if len(spacing) != pm.ndim or min(spacing) <= 0:
            raise InputError(f"spacing must be {pm.ndim} positive values in mm, got {spacing}", f"case {i}")
        cases.append(_case_segmentation(pm, tm, spacing))
    codes = None if groups is None else _group_codes(groups, len(cases))
    rng = np.random.default_rng(seed)
    result = {"task": "segmentation", **_resampling(groups, n_boot, seed), "cases": cases}
    result.update(_segmentation_block(cases, codes, n_boot, rng))
    if sizes_mm is not None:
        sizes = _check_sizes(sizes_mm, len(cases))
        result["by_size"] = [dict(bin=name, **_segmentation_block([c for c, keep in zip(cases, m) if keep],
                                                                  _subset(codes, m), n_boot, rng))
                             for name, m in size_bins(sizes, bins)]
    return result


def holm(pvalues: dict) -> dict:
    """Holm-Bonferroni adjusted p-values (step-down, monotone) of {name: p}; None stays None."""
    named = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda pk: pk[0])
    out, running, m = {k: None for k in pvalues}, 0.0, len(named)
    for i, (p, k) in enumerate(named):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out
