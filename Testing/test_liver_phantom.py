"""SYNTHETIC liver-lesion phantom: determinism, stated rates and ranges, geometry, baseline difficulty."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.liver.baseline import evaluate_baseline, fit_baseline
from slicercad.liver.dataset import build_dataset
from slicercad.liver.phases import PHASES
from slicercad.synth.liver_lesions import (ACQUISITION, CLASSES, EXTENDED_CLASSES, VARIANT_RATES, sample_lesion,
                                           sample_patient)
from slicercad.synth.liver_lesions_phantom import generate_lesions


@pytest.fixture(scope="module")
def train_items():
    return generate_lesions(90, seed=3)


@pytest.fixture(scope="module")
def test_items():
    return generate_lesions(60, seed=4, split="test")


def test_deterministic_by_seed_and_labelled_synthetic():
    a, b, c = (generate_lesions(3, seed=s) for s in (7, 7, 8))
    for x, y in zip(a, b):
        assert x.label == y.label and x.lesion_id == y.lesion_id and x.synthetic
        for p in PHASES:
            assert np.array_equal(sitk.GetArrayViewFromImage(x.images[p]), sitk.GetArrayViewFromImage(y.images[p]))
    assert not np.array_equal(sitk.GetArrayViewFromImage(a[0].images["T2"]), sitk.GetArrayViewFromImage(c[0].images["T2"]))


def test_sizes_shifts_grids_and_shifted_test_acquisition(train_items, test_items):
    for item in train_items + test_items:
        assert 3.0 <= item.diameter_mm <= 40.0 and set(item.images) == set(PHASES)
        assert np.allclose(item.shifts_mm["hepatobiliary"], 0.0)
        assert max(np.linalg.norm(s) for s in item.shifts_mm.values()) <= 10.0 + 1e-9
        assert item.images["DWI"].GetSpacing()[0] > item.images["hepatobiliary"].GetSpacing()[0]
    assert {i.b_value for i in train_items} == {ACQUISITION["train"]["b_value"]}
    assert {i.b_value for i in test_items} == {ACQUISITION["test"]["b_value"]}
    labels = [i.label for i in train_items]
    assert labels.count("metastasis") > len(labels) / 2 and set(labels) <= set(CLASSES)
    assert not {i.patient_id for i in train_items} & {i.patient_id for i in test_items}


def test_variant_rates_and_overlapping_ranges():
    rng = np.random.default_rng(0)
    patient = sample_patient(rng, ACQUISITION["train"])
    draws = {c: [sample_lesion(rng, c, patient) for _ in range(600)] for c in EXTENDED_CLASSES}
    flash = np.mean([d["variant"] == "flash_filling" for d in draws["hemangioma"]])
    assert abs(flash - VARIANT_RATES["hemangioma"]["flash_filling"]) < 0.05
    necrotic = np.mean([d["variant"] == "necrotic" for d in draws["metastasis"]])
    assert abs(necrotic - VARIANT_RATES["metastasis"]["necrotic"]) < 0.05
    assert {d["variant"] for d in draws["hcc"]} >= {"hypovascular", "hbp_hyper", "typical"}
    adc = {c: [d["adc"][1] for d in draws[c]] for c in draws}
    t2 = {c: [d["t2"][1] for d in draws[c]] for c in draws}
    for a, b in (("cyst", "hemangioma"), ("hemangioma", "metastasis"), ("metastasis", "hcc")):
        assert min(max(adc[a]), max(adc[b])) > max(min(adc[a]), min(adc[b])), f"ADC ranges of {a}/{b} overlap"
        assert min(max(t2[a]), max(t2[b])) > max(min(t2[a]), min(t2[b])), f"T2 ranges of {a}/{b} overlap"
    assert np.median(adc["cyst"]) > np.median(adc["hemangioma"]) > np.median(adc["metastasis"])
    sizes = [d["diameter_mm"] for d in draws["metastasis"]]
    assert min(sizes) >= 3.0 and max(sizes) <= 40.0 and np.mean(np.array(sizes) < 10) > 0.3


def test_lesion_sits_at_roi_centre_and_adc_orders_cysts_above_metastases(train_items):
    ds = build_dataset(train_items, CLASSES)
    c = (ds.x.shape[-1] - 1) / 2
    centroids = np.array([np.argwhere(m).mean(0) for m in ds.masks])
    assert np.all(np.abs(centroids - c) < 0.2 * ds.x.shape[-1])
    adc = PHASES.index("ADC")
    lesion_adc = np.array([x[adc][m].mean() for x, m in zip(ds.x, ds.masks)])
    cyst, met = ds.labels == CLASSES.index("cyst"), ds.labels == CLASSES.index("metastasis")
    assert lesion_adc[cyst].mean() > lesion_adc[met].mean()


def test_logistic_baseline_on_roi_means_stays_below_95_percent(train_items, test_items):
    tr, te = build_dataset(train_items, CLASSES), build_dataset(test_items, CLASSES, seed=1)
    result = evaluate_baseline(fit_baseline(tr), te)
    assert result["synthetic"] and not result["too_easy"]
    assert result["accuracy"] < 0.95 and 0.0 < result["balanced_accuracy"] <= 1.0
