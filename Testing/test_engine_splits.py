"""Patient-level splits: no patient on two sides for any seed; sample-level splits only with a warning."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slicercad.engine.splits import LeakageWarning, kfold, train_val_test_split
from slicercad.errors import InputError

patients_strategy = st.lists(st.integers(0, 14), min_size=6, max_size=60).filter(
    lambda ps: len(set(ps)) >= 5).map(lambda ps: [f"P{p}" for p in ps])


@settings(max_examples=60, deadline=None)
@given(patients=patients_strategy, seed=st.integers(0, 2**31 - 1),
       val=st.sampled_from([0.0, 0.2, 0.3]), test=st.sampled_from([0.0, 0.2]))
def test_three_way_split_never_shares_a_patient(patients, seed, val, test):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeakageWarning)
        parts = train_val_test_split(patients, val, test, seed)
    idx = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert sorted(idx.tolist()) == list(range(len(patients)))          # a partition of the samples
    sides = {k: {patients[i] for i in v} for k, v in parts.items()}
    assert not sides["train"] & sides["val"] and not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert len(sides["train"]) >= 1
    assert (len(parts["val"]) > 0) == (val > 0) and (len(parts["test"]) > 0) == (test > 0)


@settings(max_examples=40, deadline=None)
@given(patients=patients_strategy, seed=st.integers(0, 2**31 - 1), k=st.integers(2, 5))
def test_kfold_tests_every_sample_once_and_never_splits_a_patient(patients, seed, k):
    folds = kfold(patients, k, seed)
    assert len(folds) == k
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(patients)))
    for train, test in folds:
        assert not {patients[i] for i in train} & {patients[i] for i in test}
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(patients)))


def test_same_seed_same_split_and_seeds_differ():
    patients = [f"P{i // 3}" for i in range(90)]
    a, b = train_val_test_split(patients, 0.2, 0.2, seed=7), train_val_test_split(patients, 0.2, 0.2, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = train_val_test_split(patients, 0.2, 0.2, seed=8)
    assert not np.array_equal(a["test"], c["test"])


def test_sample_level_split_warns_about_leakage_and_splits_patients():
    patients = [f"P{i // 4}" for i in range(80)]
    with pytest.warns(LeakageWarning, match="same patient"):
        parts = train_val_test_split(patients, 0.25, 0.0, seed=0, by="sample",
                                     sample_ids=[f"L{i}" for i in range(80)])
    shared = {patients[i] for i in parts["train"]} & {patients[i] for i in parts["val"]}
    assert shared   # the leak the warning is about does happen
    with pytest.warns(LeakageWarning):
        assert len(kfold(patients, 4, 0, by="sample")) == 4


def test_bad_arguments_are_refused():
    patients = ["A", "B", "C"]
    with pytest.raises(InputError, match="val_fraction"):
        train_val_test_split(patients, 1.2)
    with pytest.raises(InputError, match="< 1"):
        train_val_test_split(patients, 0.6, 0.5)
    with pytest.raises(InputError, match="number of groups"):
        kfold(patients, 4)
    with pytest.raises(InputError, match="'by'"):
        kfold(patients, 2, by="lesion")
