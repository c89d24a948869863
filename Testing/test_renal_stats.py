"""RenalMassCAD statistics: collinearity (r, VIF) beside the regression table, Holm-adjusted paired p-values,
controls that fail when off chance (not merely when a CI misses 0.5), the permutation p floor, and the
cross-validation that scores the image-only model and runs permuted labels through the whole fit."""
from types import SimpleNamespace

import numpy as np

from slicercad.renal import study
from slicercad.renal.clinical import permutation_p_text
from slicercad.engine.metrics import holm
from slicercad.renal.logistic import collinearity
from slicercad.renal.tables import results_markdown


def test_collinearity_flags_correlated_predictors():
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    X = np.column_stack([a, a + 0.1 * rng.normal(size=400), rng.normal(size=400)])
    col = collinearity(X, ["a", "b", "c"], ["a", "b"])
    assert list(col["correlation"]) == ["a ~ b"] and col["correlation"]["a ~ b"] > 0.99
    assert col["vif"]["a"] > 50 and col["vif"]["b"] > 50 and col["vif"]["c"] < 1.1


def test_holm_and_permutation_floor():
    got = holm({"x": 0.01, "y": 0.04, "z": 0.03, "n": None})
    assert got == {"x": 0.03, "y": 0.06, "z": 0.06, "n": None}
    assert permutation_p_text(1 / 51, 50).startswith("p <= 0.02") and permutation_p_text(0.2, 50) == "p = 0.2"


def _fake(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(int)
    ds = SimpleNamespace(labels=y, patient_ids=[f"p{i}" for i in range(n)], age=rng.normal(60, 10, n),
                         male=(rng.random(n) < 0.6).astype(float), size_cm=rng.uniform(1, 4, n))
    signal = np.clip(0.5 + 0.3 * (y - 0.5) + 0.15 * rng.normal(size=n), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, n)
    names = study.MODELS + study.LOGISTIC_MODELS
    scores = {m: np.clip(signal + 0.1 * rng.normal(size=n), 0.01, 0.99) for m in names}
    scores.update({study.RANDOM_PREFIX + m: noise for m in study.MODELS})
    scores.update({study.PERMUTED_PREFIX + m: noise for m in names})
    scores[study.PERMUTED_PREFIX + "combined"] = scores["combined"]    # a control that leaks the labels
    calls = {m: (s >= 0.5).astype(int) for m, s in scores.items()}
    return {"scores": scores, "calls": calls}, ds


def test_a_leaking_control_fails_and_the_output_shows_it():
    cv, ds = _fake()
    r = study.evaluate(cv, ds, n_boot=100)
    leak = r["controls"][study.PERMUTED_PREFIX + "combined"]
    assert leak["auc"] > 0.6 and not leak["at_chance"]
    assert all(v["at_chance"] for k, v in r["controls"].items() if k != study.PERMUTED_PREFIX + "combined")
    assert set(r["controls"]) >= {study.RANDOM_PREFIX + m for m in study.MODELS}
    assert all("p_holm" in v and (v["p_holm"] is None or v["p_holm"] >= v["p_bootstrap"])
               for v in r["paired_auc"].values())
    assert set(r["regression"]["collinearity"]["vif"]) == set(study.COMBINED_FEATURES)
    r.update(n_masses=len(ds.labels), n_benign=int((ds.labels == 0).sum()), n_patients=len(ds.labels), folds=5,
             split="patient-level", excluded_flagged=0, excluded_flagged_by_type={})
    md = results_markdown(r)
    assert "NOT AT CHANCE" in md and "VIF" in md and "p (Holm)" in md and "none" in md


def test_cross_validate_scores_image_only_and_permutes_the_whole_fit(monkeypatch):
    calls = []

    def fake_fit(ds, tr, inner, seed=0, recipe=study.RECIPE, labels=None):
        calls.append((recipe["epochs"], labels is not None))
        y = ds.labels[tr] if labels is None else labels
        return {"nets": {m: None for m in study.MODELS}, "cutoffs": {m: 0.5 for m in study.MODELS},
                "logistic": {name: study.nested_fit(X, y, inner)
                             for name, X in study.logistic_designs({p: ds.x[tr, 0] for p in study.PHASES},
                                                                   ds, tr).items()}}

    monkeypatch.setattr(study, "fit_training_set", fake_fit)
    monkeypatch.setattr(study, "case_scores", lambda net, x, which: np.clip(x[:, 0], 0.01, 0.99))
    monkeypatch.setattr(study, "random_net", lambda which, recipe, seed: None)
    cv_fake, ds = _fake(80, 1)
    ds.x = np.asarray(cv_fake["scores"]["combined"])[:, None]
    ds.mean_hu = np.random.default_rng(2).normal(size=(80, 4))
    cv = study.cross_validate(ds, folds=2, seed=0, log=None)
    assert np.isfinite(cv["scores"]["image_only"]).all()
    assert np.isfinite(cv["scores"][study.PERMUTED_PREFIX + "combined"]).all()
    assert calls == [(study.RECIPE["epochs"], False), (study.CONTROL_EPOCHS, True)] * 2
