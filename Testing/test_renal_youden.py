"""Youden cut-offs of the renal logistic models come from out-of-fold probabilities within the training folds
(nested), never from in-sample fitted probabilities: the helper, and ``study.cross_validate`` end to end with
stand-in CNN scores (no training). Each check is shown to fail on the in-sample version."""
import numpy as np
import pytest

from slicercad.renal import study
from slicercad.renal.dataset import RenalDataset
from slicercad.renal.logistic import (inner_splits, nested_fit, newton_fit, oof_predictions, predict,
                                      repeated_cv, youden_cutoff)


def _noise(n=60, k=7, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 != 0).astype(int)
    return rng.normal(size=(n, k)), y, [f"p{i}" for i in range(n)]


def test_a_case_label_never_moves_its_own_cutoff_score():
    X, y, groups = _noise()
    splits = inner_splits(y, groups, 5, seed=0)
    _, cut = nested_fit(X, y, splits)
    i = 7
    y_flip = y.copy()
    y_flip[i] = 1 - y_flip[i]
    _, cut_flip = nested_fit(X, y_flip, splits)
    assert cut_flip["oof"][i] == cut["oof"][i]               # case i was scored by a fit that did not see it
    in_sample = predict(newton_fit(X, y), X)[i]
    in_sample_flip = predict(newton_fit(X, y_flip), X)[i]
    assert abs(in_sample_flip - in_sample) > 1e-3            # the in-sample version fails this check
    assert cut["cutoff"] == youden_cutoff(y, oof_predictions(X, y, splits))["cutoff"]


def test_in_sample_cutoffs_are_optimistic_on_noise_and_nested_ones_are_not():
    j_in, j_nested = [], []
    for seed in range(5):                                    # 7 noise predictors, 40 cases (as a small fold)
        X, y, groups = _noise(n=40, seed=seed)
        j_nested.append(nested_fit(X, y, inner_splits(y, groups, 5, seed=0))[1]["j"])
        j_in.append(youden_cutoff(y, predict(newton_fit(X, y), X))["j"])
    assert np.mean(j_in) > 0.4 and np.mean(j_in) > np.mean(j_nested) + 0.2   # fitted probabilities look useful
    X, y, groups = _noise(seed=1)
    cv = repeated_cv(X, y, groups, [f"x{k}" for k in range(7)], folds=5, repeats=4)
    assert abs(cv["youden_correct"].mean() - 0.5) < 0.2     # held-out accuracy at the nested cut-off: chance-like


def _fake_dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 != 0).astype(int)
    x = rng.normal(size=(n, 4, 1, 2, 2)).astype(np.float32) + 0.6 * y[:, None, None, None, None]
    return RenalDataset(x, y, [f"P{i}" for i in range(n)], [f"M{i}" for i in range(n)], rng.normal(60, 10, n),
                        rng.integers(0, 2, n).astype(float), rng.uniform(1, 4, n), rng.normal(size=(n, 4)) + y[:, None],
                        ["t"] * n, [])


def _stand_in_cnn(monkeypatch):
    """CNN scores that need no training: a fixed function of the phase's voxels."""
    monkeypatch.setattr(study, "train_slices", lambda *a, **k: None)
    monkeypatch.setattr(study, "build_net", lambda *a, **k: None)

    def scores(net, x, which):
        v = x.mean(axis=(1, 2, 3, 4)) if which == "multiphase" else x[:, study.PHASES.index(which)].mean(axis=(1, 2, 3))
        return 1.0 / (1.0 + np.exp(-2.0 * v))

    monkeypatch.setattr(study, "case_scores", scores)
    return scores


def test_cross_validate_calls_use_nested_cutoffs(monkeypatch):
    scores_of = _stand_in_cnn(monkeypatch)
    ds = _fake_dataset()
    cv = study.cross_validate(ds, folds=3, seed=0, log=None)
    differs = 0
    for f, (tr, te) in enumerate(study.outer_folds(ds.labels, ds.patient_ids, 3, 0)):
        inner = study.outer_folds(ds.labels[tr], [ds.patient_ids[i] for i in tr], 2, 100 + f)
        s_tr = {p: scores_of(None, ds.x[tr], p) for p in study.PHASES}
        X_tr = study.combined_design(s_tr, ds, tr)
        oof = oof_predictions(X_tr, ds.labels[tr], inner)
        nested = youden_cutoff(ds.labels[tr], oof)["cutoff"]
        assert np.array_equal(cv["calls"]["combined"][te], cv["scores"]["combined"][te] >= nested)
        in_sample = youden_cutoff(ds.labels[tr], predict(newton_fit(X_tr, ds.labels[tr]), X_tr))["cutoff"]
        differs += not np.array_equal(cv["calls"]["combined"][te], cv["scores"]["combined"][te] >= in_sample)
        X_hu = ds.mean_hu[tr]
        hu_cut = youden_cutoff(ds.labels[tr], oof_predictions(X_hu, ds.labels[tr], inner))["cutoff"]
        assert np.array_equal(cv["calls"]["roi_mean_hu_lr"][te], cv["scores"]["roi_mean_hu_lr"][te] >= hu_cut)
    assert differs >= 1                                      # the in-sample cut-off would have given other calls


def test_nested_fit_refuses_a_one_class_inner_fold():
    X, y, _ = _noise(n=12)
    with pytest.raises(Exception, match="one class"):
        nested_fit(X, y, [(np.flatnonzero(y == 1), np.flatnonzero(y == 0))])
