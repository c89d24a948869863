"""SYNTHETIC liver-lesion phantom: determinism, stated rates and ranges, geometry, patients with correlated
lesions, field-strength and b-value physics, baseline difficulty."""
import numpy as np
import pytest
import SimpleITK as sitk
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from slicercad.liver.baseline import evaluate_baseline, fit_baseline, roi_mean_features
from slicercad.liver.dataset import build_dataset, phantom_lesion_input
from slicercad.liver.phases import PHASES
from slicercad.synth.anatomy import t1w_at_field
from slicercad.synth.liver_lesions import (ACQUISITION, CLASSES, EXTENDED_CLASSES, EXTENDED_PRIORS, MALIGNANT,
                                           REPORT_PRIORS, VARIANT_RATES, patient_labels, sample_lesion,
                                           sample_patient)
from slicercad.synth.liver_lesions_phantom import generate_lesions, render_lesion


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
    for items, split in ((train_items, "train"), (test_items, "test")):
        seen = {(i.field_strength_t, i.b_value) for i in items}
        assert seen <= {p for p, _ in ACQUISITION[split]["protocols"]}
        assert {f for f, _ in seen} == {1.5, 3.0} and {b for _, b in seen} == {800.0, 1000.0}   # a mix in both
        for pid in {i.patient_id for i in items}:                  # one protocol per patient
            assert len({(i.field_strength_t, i.b_value) for i in items if i.patient_id == pid}) == 1
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


def _icc(groups, values) -> float:
    """One-way random-effects intraclass correlation ICC(1) of ``values`` clustered by ``groups``."""
    groups, values = np.asarray(groups), np.asarray(values, float)
    ids = np.unique(groups)
    n = np.array([np.sum(groups == g) for g in ids])
    means = np.array([values[groups == g].mean() for g in ids])
    msb = np.sum(n * (means - values.mean()) ** 2) / (len(ids) - 1)
    msw = sum(((values[groups == g] - m) ** 2).sum() for g, m in zip(ids, means)) / (len(values) - len(ids))
    k0 = (n.sum() - (n ** 2).sum() / n.sum()) / (len(ids) - 1)
    return float((msb - msw) / (msb + (k0 - 1) * msw))


@pytest.mark.parametrize("classes,priors", [(CLASSES, REPORT_PRIORS), (EXTENDED_CLASSES, EXTENDED_PRIORS)])
def test_patients_have_several_lesions_with_labels_correlated_within_the_patient(classes, priors):
    rng = np.random.default_rng(0)
    patients = [patient_labels(rng, classes, priors) for _ in range(4000)]
    flat = [c for p in patients for c in p]
    for c in classes:                                              # lesion-level fractions = the priors
        assert abs(flat.count(c) / len(flat) - priors[c] / sum(priors.values())) < 0.015, c
    malignant = [p for p in patients if any(c in MALIGNANT for c in p)]
    assert np.mean([sum(c in MALIGNANT for c in p) for p in malignant]) > 3.0
    assert len({c for p in malignant for c in p if c in MALIGNANT}) == len(set(MALIGNANT) & set(classes))
    assert all(len({c for c in p if c in MALIGNANT}) == 1 for p in malignant)        # one primary per patient
    assert 0.1 < 1 - len(malignant) / len(patients) < 0.5          # benign-only patients exist
    assert np.mean([any(c not in MALIGNANT for c in p) for p in malignant]) > 0.3   # benign co-occurring
    groups = [k for k, p in enumerate(patients) for _ in p]
    assert _icc(groups, [c in MALIGNANT for c in flat]) > 0.25      # independent labels give ~0


def test_rendered_patients_cluster_labels(train_items):
    pids = [i.patient_id for i in train_items]
    assert len(set(pids)) < len(pids) / 2.5
    assert _icc(pids, [i.label == "metastasis" for i in train_items]) > 0.2


def _paired(base: dict, changed: dict):
    """One lesion rendered twice with the same random draws: the patient updated by ``base``, then by
    ``base`` and ``changed``."""
    rng = np.random.default_rng(5)
    patient = sample_patient(rng, ACQUISITION["train"])
    les = sample_lesion(rng, "metastasis", patient)
    les["diameter_mm"] = 12.0
    return [render_lesion(np.random.default_rng(9), dict(patient, **c), les, np.zeros(3), "p", "l", "train")
            for c in (base, {**base, **changed})], patient


def _snr(image) -> float:
    """Median signal over the noise sigma from second differences (cancel the smooth bias and texture)."""
    a = sitk.GetArrayFromImage(image)
    d2 = a[:, :, 2:] - 2 * a[:, :, 1:-1] + a[:, :, :-2]
    return float(np.median(a) / (1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6.0)))


def test_field_strength_changes_snr_t1_contrast_and_hbp_enhancement():
    (at3, at15), _ = _paired({"field_strength_t": 3.0}, {"field_strength_t": 1.5})
    for phase in ("T1_pre", "T2"):
        ratio = _snr(at15.images[phase]) / _snr(at3.images[phase])
        assert 0.4 < ratio < 0.6, (phase, ratio)                   # SNR ~ B0: 1.5 / 3 = 0.5
    assert float(t1w_at_field(0.6, 1.7, 3.0)) == pytest.approx(1.7)   # parameters are given at 3 T
    hbp3, hbp15 = (float(t1w_at_field(1.0, 1.9, f)) - 1 for f in (3.0, 1.5))
    assert 0.6 < hbp15 / hbp3 < 0.85                               # shorter native T1 at 1.5 T: less enhancement
    assert abs(float(t1w_at_field(0.5, 0.5, 1.5)) - 1) < 0.5 - 0.01   # less native T1 contrast at 1.5 T
    med = {k: {p: np.median(sitk.GetArrayViewFromImage(x.images[p])) for p in ("T1_pre", "hepatobiliary")}
           for k, x in (("3", at3), ("1.5", at15))}
    relative = {k: m["hepatobiliary"] / m["T1_pre"] for k, m in med.items()}     # the gains cancel
    assert relative["3"] / relative["1.5"] > 1.08


def test_dwi_follows_exp_minus_b_adc_and_adc_moves_with_dwi(train_items):
    (b800, b1000), patient = _paired({"b_value": 800.0, "snr": {"b0": 400.0, "t1": 30.0, "t2": 20.0}},
                                     {"b_value": 1000.0})
    a800, a1000 = (sitk.GetArrayFromImage(x.images["DWI"]) for x in (b800, b1000))
    assert a800.shape == a1000.shape
    log_ratio = np.log(a800 / a1000) / (200.0 / 1000.0)            # ln(S800 / S1000) / (1000 - 800) s/mm^2
    liver_adc = patient["liver_adc"] * patient["adc_calibration"]
    assert abs(np.median(log_ratio) - liver_adc) < 0.03             # the parenchyma's ADC (1e-3 mm^2/s)
    for x in (b800, b1000):                                        # the ADC channel: ln(S0 / Sb) / b
        assert abs(np.median(sitk.GetArrayViewFromImage(x.images["ADC"])) - liver_adc) < 0.05
    assert abs(np.median(sitk.GetArrayViewFromImage(b800.images["DWI"])) /
               np.median(sitk.GetArrayViewFromImage(b1000.images["DWI"])) - np.exp(0.2 * liver_adc)) < 0.03
    for item in train_items:                                       # one acquisition: the same shift and grid
        assert np.array_equal(item.shifts_mm["ADC"], item.shifts_mm["DWI"])
        adc, dwi = item.images["ADC"], item.images["DWI"]
        assert (adc.GetOrigin(), adc.GetDirection(), adc.GetSpacing()) == \
            (dwi.GetOrigin(), dwi.GetDirection(), dwi.GetSpacing())
        reader = phantom_lesion_input(item, rng=np.random.default_rng(3))  # the reader's centres move together too
        assert np.array_equal(reader.offset_lps("ADC"), reader.offset_lps("DWI"))


def test_no_single_trivial_feature_predicts_the_label(train_items, test_items):
    tr, te = build_dataset(train_items, CLASSES), build_dataset(test_items, CLASSES, seed=1)
    ftr, fte = roi_mean_features(tr), roi_mean_features(te)
    scores = {}
    for k, name in enumerate(list(tr.phases) + ["diameter"]):      # each phase's lesion mean, log diameter
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        scores[name] = balanced_accuracy_score(te.labels, lr.fit(ftr[:, [k]], tr.labels).predict(fte[:, [k]]))
    assert scores["diameter"] < 0.45, scores                       # chance is 1/3: sizes overlap between classes
    assert max(scores.values()) < 0.7, scores                      # the CNN reaches ~0.8 on all phases
