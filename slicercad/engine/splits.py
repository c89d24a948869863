"""Patient-level train/val/test splits and k-fold (scikit-learn group splitters).

Samples are grouped by patient so no patient lands on two sides. Splitting by lesion or
image set (as some source reports did) is available only through ``by="sample"``, which
emits a :class:`LeakageWarning`.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from ..errors import InputError

BY = ("patient", "sample")


class LeakageWarning(UserWarning):
    """Samples of one patient may fall on both sides of a split."""


def _groups(patients, sample_ids, by: str) -> np.ndarray:
    if by not in BY:
        raise InputError(f"split 'by' must be one of {BY}, got {by!r}", "split")
    patients = np.asarray([str(p) for p in patients])
    if by == "patient":
        return patients
    warnings.warn("splitting by sample (lesion/image set), not by patient: the same patient can "
                  "appear in training and test, which inflates every reported metric",
                  LeakageWarning, stacklevel=3)
    ids = np.arange(len(patients)) if sample_ids is None else np.asarray([str(s) for s in sample_ids])
    if len(set(ids.tolist())) != len(ids):
        raise InputError("sample ids must be unique to split by sample", "split")
    return ids


def _fraction(value, name):
    if not 0 <= value < 1:
        raise InputError(f"{name} must be in [0, 1), got {value}", name)
    return float(value)


def _pick(idx, groups, fraction, seed):
    """Split positions ``idx`` into (rest, picked) with about ``fraction`` of the groups picked."""
    n_groups = len(set(groups[idx].tolist()))
    if fraction == 0 or n_groups < 2:
        return idx, idx[:0]
    n_pick = min(n_groups - 1, max(1, int(round(fraction * n_groups))))
    splitter = GroupShuffleSplit(n_splits=1, test_size=n_pick, random_state=seed)
    rest, picked = next(splitter.split(idx, groups=groups[idx]))
    return idx[rest], idx[picked]


def train_val_test_split(patients, val_fraction: float = 0.2, test_fraction: float = 0.0,
                         seed: int = 0, by: str = "patient", sample_ids=None) -> dict:
    """Indices ``{"train", "val", "test"}`` (sorted int arrays) for samples with these patients.

    Fractions count patients (groups), not samples. ``by="sample"`` splits by ``sample_ids``
    instead and warns about leakage.
    """
    groups = _groups(patients, sample_ids, by)
    val_fraction = _fraction(val_fraction, "val_fraction")
    test_fraction = _fraction(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1:
        raise InputError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}",
                         "split")
    idx = np.arange(len(groups))
    rest, test = _pick(idx, groups, test_fraction, seed)
    rel_val = val_fraction / (1 - test_fraction)
    train, val = _pick(rest, groups, rel_val, seed + 1)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def kfold(patients, k: int = 5, seed: int = 0, by: str = "patient", sample_ids=None) -> list:
    """``k`` (train, test) index pairs; every sample is tested once, groups never straddle."""
    groups = _groups(patients, sample_ids, by)
    n_groups = len(set(groups.tolist()))
    if not 2 <= k <= n_groups:
        raise InputError(f"k must be between 2 and the number of groups ({n_groups}), got {k}", "kfold")
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(groups, groups=groups)]
