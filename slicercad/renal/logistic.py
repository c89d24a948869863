"""Logistic regression shared by the clinical baseline and the combined image + clinical model.

- ``fit_table``: unpenalised maximum-likelihood fit with statsmodels (``Logit``): coefficient, standard
  error, Wald z, two-sided p, 95 % Wald CI, odds ratio exp(b) and its CI, per predictor (per unit of the
  predictor as given: per year of age, male vs female, per cm of size, per unit of a CNN probability).
- ``sklearn_fit``: the same model with scikit-learn (``penalty=None``), the agreement check.
- ``youden_cutoff``: the cut-off maximising Youden's J = sensitivity + specificity - 1 over the observed
  scores (a score >= cut-off is called malignant); ties in J go to the highest cut-off.
- ``nested_fit``: a logistic model fitted on a training set and its Youden cut-off chosen on the
  **out-of-fold** probabilities of an inner patient-level split of that training set (each training case
  scored by a fit that did not see it) -- never on the in-sample fitted probabilities, whose J is optimistic
  (with 7 predictors and few benign cases, markedly so).
- ``repeated_cv``: repeated stratified k-fold (patient-grouped: ``StratifiedGroupKFold``; ``StratifiedKFold``
  when every patient has one case) out-of-fold
  probabilities; the model is refitted on each training fold only, its cut-off by ``nested_fit``.
statsmodels and scikit-learn are imported inside the functions.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError
from .constants import CV_FOLDS, CV_REPEATS


def _check(X, y, names):
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=int).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.size or X.shape[1] != len(names):
        raise InputError(f"X must be [n, {len(names)}] for predictors {list(names)}, y [n]; got {X.shape}, {y.shape}",
                         "logistic")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        raise InputError(f"predictor {names[bad[0][1]]!r} is not finite in row {bad[0][0]}", "logistic")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise InputError("the outcome needs both classes (0 = benign, 1 = malignant)", "logistic")
    return X, y


def fit_table(X, y, names) -> dict:
    """statsmodels Logit with an intercept; {"n", "n_events", "converged", "llf", "aic", "predictors": {...}}."""
    import statsmodels.api as sm

    X, y = _check(X, y, names)
    design = sm.add_constant(X, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = sm.Logit(y, design).fit(disp=0, maxiter=200, method="newton")
        except np.linalg.LinAlgError as exc:
            raise InputError(f"the logistic model cannot be fitted ({exc}): a predictor is constant or collinear",
                             "logistic") from exc
    ci = np.asarray(res.conf_int(0.05))
    ex = lambda v: float(np.exp(np.clip(v, -700, 700)))   # noqa: E731 - an OR of a separated term is huge, not an error
    rows = {}
    for k, name in enumerate(("intercept",) + tuple(names)):
        b, se = float(res.params[k]), float(res.bse[k])
        rows[name] = {"coef": b, "se": se, "z": float(res.tvalues[k]), "p": float(res.pvalues[k]),
                      "ci95": [float(ci[k, 0]), float(ci[k, 1])], "odds_ratio": ex(b),
                      "odds_ratio_ci95": [ex(ci[k, 0]), ex(ci[k, 1])]}
    return {"n": int(y.size), "n_events": int(y.sum()), "converged": bool(res.mle_retvals.get("converged", True)),
            "llf": float(res.llf), "aic": float(res.aic), "method": "statsmodels Logit (unpenalised ML), Wald CIs",
            "predictors": rows}


def sklearn_fit(X, y, names):
    """Unpenalised scikit-learn logistic regression: (intercept, coefficients) and the fitted estimator."""
    from sklearn.linear_model import LogisticRegression

    X, y = _check(X, y, names)
    est = LogisticRegression(penalty=None, solver="lbfgs", max_iter=10000, tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return float(est.intercept_[0]), est.coef_[0].astype(float), est


def newton_fit(X, y, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """Unpenalised ML logistic coefficients [intercept, b...] by Newton-Raphson (numpy; the CV refits use it:
    equal to ``sklearn_fit`` and statsmodels within 1e-6, Testing/test_renal_clinical.py). Falls back to
    scikit-learn when Newton does not converge (near separation)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    A = np.column_stack([np.ones(len(X)), X])
    beta = np.zeros(A.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ beta, -30, 30)))
        H = A.T @ (A * (p * (1 - p))[:, None])
        try:
            step = np.linalg.solve(H + 1e-12 * np.eye(len(beta)), A.T @ (y - p))
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            return beta
    b0, b, _ = sklearn_fit(X, y.astype(int), [f"x{k}" for k in range(X.shape[1])])
    return np.r_[b0, b]


def predict(beta, X) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(beta[0] + np.asarray(X, float) @ beta[1:], -30, 30)))


def collinearity(X, names, corr_of=None) -> dict:
    """Pearson correlations between the columns ``corr_of`` (default all) and each predictor's variance inflation
    factor VIF = 1 / (1 - R^2) of its least-squares fit on the other predictors (with an intercept)."""
    X = np.asarray(X, float)
    names = list(names)
    idx = [names.index(n) for n in (corr_of or names)]
    r = np.corrcoef(X[:, idx], rowvar=False)
    corr = {f"{names[a]} ~ {names[b]}": float(r[i, j]) for i, a in enumerate(idx) for j, b in enumerate(idx) if j > i}
    vif = {}
    for k, name in enumerate(names):
        others = np.column_stack([np.ones(len(X)), np.delete(X, k, axis=1)])
        resid = X[:, k] - others @ np.linalg.lstsq(others, X[:, k], rcond=None)[0]
        ss = float(((X[:, k] - X[:, k].mean()) ** 2).sum())
        r2 = 1.0 - float(resid @ resid) / ss if ss > 0 else 1.0
        vif[name] = float(1.0 / max(1e-12, 1.0 - r2))
    return {"correlation": corr, "vif": vif}


def agreement(table: dict, X, y, names) -> dict:
    """Largest |statsmodels - scikit-learn| coefficient difference (intercept included)."""
    b0, b, _ = sklearn_fit(X, y, names)
    sm_coef = np.array([table["predictors"][n]["coef"] for n in ("intercept",) + tuple(names)])
    sk_coef = np.r_[b0, b]
    return {"sklearn_coefficients": dict(zip(("intercept",) + tuple(names), sk_coef.tolist())),
            "max_abs_difference": float(np.max(np.abs(sm_coef - sk_coef)))}


def youden_cutoff(y, score) -> dict:
    """{"cutoff", "j", "sensitivity", "specificity"} of Youden's rule (see module doc)."""
    y = np.asarray(y, dtype=int).reshape(-1)
    s = np.asarray(score, dtype=float).reshape(-1)
    if y.size != s.size or set(np.unique(y).tolist()) != {0, 1}:
        raise InputError("Youden's cut-off needs scores for both classes", "youden")
    cuts = np.unique(s)[::-1]                          # highest cut-off first: ties keep the highest
    pred = s[None, :] >= cuts[:, None]
    sens = pred[:, y == 1].mean(axis=1)
    spec = (~pred[:, y == 0]).mean(axis=1)
    j = sens + spec - 1.0
    k = int(np.flatnonzero(j >= j.max() - 1e-12)[0])
    return {"cutoff": float(cuts[k]), "j": float(j[k]), "sensitivity": float(sens[k]), "specificity": float(spec[k])}


def accuracy_at(y, score, cutoff) -> float:
    y = np.asarray(y, dtype=int)
    return float(np.mean((np.asarray(score, float) >= cutoff).astype(int) == y))


def oof_predictions(X, y, splits) -> np.ndarray:
    """Out-of-fold probabilities of the logistic model over ``splits`` [(train idx, test idx)] covering every case."""
    X, y = np.asarray(X, float), np.asarray(y, int)
    oof = np.full(len(y), np.nan)
    for tr, te in splits:
        if len(set(y[tr].tolist())) < 2:
            raise InputError("an inner training fold holds one class only: too few benign or malignant cases for "
                             "the nested Youden cut-off", "youden")
        oof[te] = predict(newton_fit(X[tr], y[tr]), X[te])
    if not np.isfinite(oof).all():
        raise InputError("the inner splits do not score every training case", "youden")
    return oof


def nested_fit(X, y, splits) -> tuple:
    """(coefficients fitted on all of X, y; Youden dict of the inner out-of-fold probabilities + "oof") -- see
    the module doc. ``splits``: the inner patient-level split of this training set."""
    beta = newton_fit(X, y)
    oof = oof_predictions(X, y, splits)
    return beta, {**youden_cutoff(y, oof), "oof": oof, "chosen_on": "inner out-of-fold probabilities"}


def inner_splits(y, groups, folds=CV_FOLDS, seed=0) -> list:
    """[(train idx, test idx)] of one stratified patient-grouped split of a training set (folds capped at the
    smaller class's size, at least 2)."""
    y = np.asarray(y, dtype=int)
    k = max(2, min(int(folds), int(min(np.bincount(y, minlength=2)))))
    return [(tr, te) for _, tr, te in cv_splits(y, groups, k, 1, seed)]


def cv_splits(y, groups, folds=CV_FOLDS, repeats=CV_REPEATS, seed=0) -> list:
    """[(repeat, train idx, test idx)] of repeated stratified patient-grouped k-fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y, dtype=int)
    groups = np.asarray([str(g) for g in groups])
    n_minority = int(min(np.bincount(y, minlength=2)))
    if folds < 2 or n_minority < folds:
        raise InputError(f"{folds}-fold stratified CV needs >= {folds} cases of each class, "
                         f"the smaller class has {n_minority}", "cv")
    out = []
    for r in range(int(repeats)):
        # one case per patient: StratifiedKFold is the same split family, and much faster
        unique = len(set(groups.tolist())) == len(groups)
        kind = StratifiedKFold if unique else StratifiedGroupKFold
        splitter = kind(n_splits=int(folds), shuffle=True, random_state=seed + r)
        for tr, te in splitter.split(np.zeros(len(y)), y, None if unique else groups):
            out.append((r, np.sort(tr), np.sort(te)))
    return out


def repeated_cv(X, y, groups, names, folds=CV_FOLDS, repeats=CV_REPEATS, seed=0) -> dict:
    """Out-of-fold probabilities [repeats, n] (refit on each training fold), per-fold AUCs and the
    Youden cut-off of each training fold (``nested_fit``: inner out-of-fold) applied to its test fold."""
    from sklearn.metrics import roc_auc_score

    X, y = _check(X, y, names)
    oof = np.full((int(repeats), len(y)), np.nan)
    fold_auc, correct = [], np.zeros((int(repeats), len(y)))
    groups = np.asarray([str(g) for g in groups])
    for r, tr, te in cv_splits(y, groups, folds, repeats, seed):
        beta, cut = nested_fit(X[tr], y[tr], inner_splits(y[tr], groups[tr], folds, seed + 1000 + r))
        p_te = predict(beta, X[te])
        oof[r, te] = p_te
        correct[r, te] = (p_te >= cut["cutoff"]).astype(int) == y[te]
        if len(set(y[te].tolist())) == 2:
            fold_auc.append(float(roc_auc_score(y[te], p_te)))
    return {"oof": oof, "fold_auc": fold_auc, "youden_correct": correct}
