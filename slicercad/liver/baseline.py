"""Logistic-regression baseline on per-phase lesion ROI means (issue 4: is the phantom too easy?).

Features: for each phase, the mean of the normalised ROI inside the disk of the measured diameter
(what a reader's circular ROI measures, and what the product knows: lesion-to-parenchyma ratio,
ADC in 1e-3 mm^2/s), plus log diameter.
If this reaches >= 95% accuracy on the shifted test set the phantom is too easy.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TOO_EASY = 0.95


def roi_mean_features(ds) -> np.ndarray:
    """[N, phases + 1]: per-phase mean inside each lesion's measured-diameter disk, then log(diameter mm)."""
    m = (ds.masks if getattr(ds, "disks", None) is None else ds.disks)[:, None].astype(np.float32)
    means = (ds.x * m).sum((-1, -2)) / np.maximum(m.sum((-1, -2)), 1.0)
    return np.c_[means, np.log(ds.diameters_mm)]


def fit_baseline(ds, class_weight=None, seed: int = 0):
    """Standardise + multinomial logistic regression (scikit-learn) on ``roi_mean_features``."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight=class_weight,
                                                               random_state=seed))
    return model.fit(roi_mean_features(ds), ds.labels)


def evaluate_baseline(model, ds) -> dict:
    """Accuracy, balanced accuracy and the majority-class baseline on ``ds`` (SYNTHETIC data)."""
    pred = model.predict(roi_mean_features(ds))
    majority = np.bincount(ds.labels, minlength=len(ds.classes)).max() / len(ds.labels)
    acc = float(accuracy_score(ds.labels, pred))
    return {"accuracy": acc, "balanced_accuracy": float(balanced_accuracy_score(ds.labels, pred)),
            "majority_baseline": float(majority), "n": int(len(ds.labels)), "too_easy": acc >= TOO_EASY,
            "synthetic": True}
