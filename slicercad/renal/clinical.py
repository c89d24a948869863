"""The real-data clinical reference: age + sex + radiographic size -> malignancy on KiTS23 solid masses <= 4 cm.

``clinical_baseline(path)``: selection (``kits23.select_small_solid``), the statsmodels coefficient /
odds-ratio / p-value table on all selected masses, its agreement with an unpenalised scikit-learn fit,
repeated stratified 5-fold CV (10 repeats; one mass per KiTS23 case, so folds are by patient):
``auc`` = the mean over repeats of the pooled out-of-fold AUC, its 95 % CI from a patient bootstrap of
the out-of-fold predictions (each resample's AUC averaged over repeats; the refits are not redone), the
mean fold AUC, accuracy at the Youden cut-off chosen on each training fold, and the permuted-label control:
the whole pipeline on ``N_PERMUTATIONS`` = 50 label permutations; its ``auc_ci95`` is the 2.5-97.5 %
range of their CV AUCs (the null distribution, which must cover 0.5), with the permutation p-value of the
real AUC, (1 + #{permuted >= real}) / (1 + N) -- at least 1 / (N + 1), so a real AUC above every permuted
one is reported as p <= 1 / (N + 1) (``p_text``). The AUC CI does not refit the model per resample: it
understates the uncertainty (``ci_note``). Real patient data: not synthetic.
"""
from __future__ import annotations

import numpy as np

from ..engine.metrics import bootstrap_weights, percentile_ci, weighted_auc
from .constants import CLINICAL_FEATURES, CV_FOLDS, CV_REPEATS
from .kits23 import DEFAULT_SEX_POLICY, SOURCE, load_kits23, select_small_solid
from .logistic import agreement, fit_table, repeated_cv

N_BOOT = 2000
N_PERMUTATIONS = 50


def cv_auc_summary(oof, y, groups, n_boot=N_BOOT, seed=0) -> dict:
    """Mean-over-repeats out-of-fold AUC and its patient-bootstrap CI."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=int)
    per_repeat = [float(roc_auc_score(y, row)) for row in oof]
    W = bootstrap_weights(len(y), groups, n_boot, seed)
    boot = np.nanmean(np.vstack([weighted_auc(y == 1, row, W) for row in oof]), axis=0)
    return {"auc": float(np.mean(per_repeat)), "auc_ci95": percentile_ci(boot), "auc_per_repeat": per_repeat,
            "resampling_unit": "patient", "n_boot": int(n_boot)}


def clinical_cv(X, y, groups, folds=CV_FOLDS, repeats=CV_REPEATS, seed=0, n_boot=N_BOOT) -> dict:
    cv = repeated_cv(X, y, groups, CLINICAL_FEATURES, folds, repeats, seed)
    out = cv_auc_summary(cv["oof"], y, groups, n_boot, seed)
    out["ci_note"] = ("patient bootstrap of the out-of-fold predictions without refitting the model per resample: "
                      "it leaves out the fitting variability and understates the uncertainty")
    out.update(fold_auc_mean=float(np.mean(cv["fold_auc"])), fold_auc_sd=float(np.std(cv["fold_auc"], ddof=1)),
               youden_accuracy=float(cv["youden_correct"].mean()), folds=int(folds), repeats=int(repeats))
    return out


def design(masses):
    X = np.array([[m.age_years, m.male, m.size_cm] for m in masses], dtype=float)
    y = np.array([m.malignant for m in masses], dtype=int)
    return X, y, [m.case_id for m in masses]


def permutation_p_text(p: float, n_permutations: int) -> str:
    """'p <= 1/(N+1)' when no permuted AUC reached the real one (the smallest p N permutations can give)."""
    floor = 1.0 / (1 + int(n_permutations))
    if p <= floor + 1e-12:
        return f"p <= {floor:.2g} (the minimum with {n_permutations} permutations)"
    return f"p = {p:.2g}"


def permutation_control(X, y, groups, names, real_auc, folds=CV_FOLDS, repeats=CV_REPEATS, seed=0,
                        n_permutations=N_PERMUTATIONS) -> dict:
    """The CV pipeline on permuted labels (see module doc)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed + 1000)
    aucs = []
    for _ in range(int(n_permutations)):
        yp = rng.permutation(y)
        oof = repeated_cv(X, yp, groups, names, folds, repeats, seed)["oof"]
        aucs.append(float(np.mean([roc_auc_score(yp, row) for row in oof])))
    aucs = np.asarray(aucs)
    lo, hi = (float(v) for v in np.percentile(aucs, [2.5, 97.5]))
    p = float((1 + np.sum(aucs >= real_auc)) / (1 + len(aucs)))
    return {"p_text": permutation_p_text(p, len(aucs)),
            "n_permutations": int(n_permutations), "auc": float(aucs.mean()), "auc_ci95": [lo, hi],
            "interval": "2.5-97.5 percentile of the permuted-label CV AUCs", "covers_0.5": bool(lo <= 0.5 <= hi),
            "p_value_real_auc": p}


def clinical_baseline(path, sex_policy=DEFAULT_SEX_POLICY, folds=CV_FOLDS, repeats=CV_REPEATS, seed=0,
                      n_boot=N_BOOT, n_permutations=N_PERMUTATIONS) -> dict:
    sel = select_small_solid(load_kits23(path), sex_policy, source=path)
    X, y, groups = design(sel.masses)
    table = fit_table(X, y, CLINICAL_FEATURES)
    out = {"data": SOURCE, "synthetic": False, "kits23_path": str(path), "sex_policy": sex_policy,
           "recoded_sex": [list(r) for r in sel.recoded_sex], **sel.counts(),
           "predictors": list(CLINICAL_FEATURES),
           "units": {"age_years": "per year", "male": "male vs female", "size_cm": "per cm (radiographic size)"},
           "majority_baseline_accuracy": float(max(y.mean(), 1 - y.mean()))}
    out.update(clinical_cv(X, y, groups, folds, repeats, seed, n_boot))
    out["regression"] = table
    out["coefficients"] = {k: {f: v[f] for f in ("coef", "odds_ratio", "odds_ratio_ci95", "p")}
                           for k, v in table["predictors"].items()}
    out["sklearn_agreement"] = agreement(table, X, y, CLINICAL_FEATURES)
    out["permuted_label_control"] = permutation_control(X, y, groups, CLINICAL_FEATURES, out["auc"], folds, repeats,
                                                        seed, n_permutations)
    return out
