"""The bundled RenalMassCAD demo model (Resources/Models/renal_mass_demo): integrity, loading as the panel / CLI
default, its card's validity ranges, and card metrics equal to the product path's (``inference.assess_masses``
re-run on the card's held-out SYNTHETIC phantom cases)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from slicercad.engine.registry import sha256_file
from slicercad.renal.bundle import demo_model_path
from slicercad.renal.constants import PHASES, SIZE_LIMIT_MM
from slicercad.renal.study import MODELS

CARD = demo_model_path()
N_PRODUCT_PATIENTS = 3


@pytest.fixture(scope="module")
def demo():
    from slicercad.renal.inference import load_bundle

    torch.set_num_threads(1)
    return load_bundle(None)                      # the default of the panel and `slicercad renal assess`


def test_card_sha256_matches_weights_and_file_is_small():
    card = json.loads(CARD.read_text())
    weights = CARD.parent / card["weights"]
    assert sha256_file(weights) == card["sha256"]
    assert weights.stat().st_size < 2 * 1024 * 1024


def test_card_states_its_validity_ranges_and_synthetic_training():
    card = json.loads(CARD.read_text())
    spec = card["input_spec"]
    assert spec["phases"] == list(PHASES) and spec["units"].startswith("HU")
    assert spec["valid_ranges"]["diameter_mm"][1] == SIZE_LIMIT_MM
    dist = spec["training_distribution"]
    assert dist["synthetic"] is True and card["training_data"]["synthetic"] is True
    assert dist["diameter_mm"][1] <= SIZE_LIMIT_MM and dist["n_benign"] == card["training_data"]["n_benign"]
    assert set(card["cutoffs"]) == set(MODELS) | {"combined", "image_only"}
    assert card["metrics"]["synthetic"] is True and card["metrics"]["phantom_test"]["synthetic"] is True


def test_loads_as_the_default(demo):
    bundle, card = demo
    assert card["name"] == "renal_mass_demo" and not bundle.training
    assert set(bundle.nets) == set(MODELS)


def test_card_metrics_are_reproduced_from_its_stored_predictions():
    m = json.loads(CARD.read_text())["metrics"]["phantom_test"]
    y, p = np.array(m["labels"]), np.array(m["p_combined"])
    assert len(y) == m["n_masses"] and m["n_benign"] == int((y == 0).sum())
    assert roc_auc_score(y, p) == m["combined"]["auc"]
    calls = np.array(m["calls"])
    assert np.array_equal(calls, (p >= m["combined"]["cutoff"]).astype(int))
    assert np.mean(calls == y) == m["combined"]["accuracy"]
    for model in MODELS:
        assert roc_auc_score(y, m["probabilities"][model]) == m["auc"][model]["auc"]
    io = m["image_only"]                          # the fall-back without age / sex, evaluated on the same masses
    assert roc_auc_score(y, io["p"]) == io["auc"] and io["cutoff"] == json.loads(CARD.read_text())["cutoffs"][
        "image_only"]
    assert np.mean((np.array(io["p"]) >= io["cutoff"]) == y) == io["accuracy"]
    assert m["majority_baseline_accuracy"] == max(y.mean(), 1 - y.mean())
    assert set(m["baselines"]) == {"roi_mean_hu_lr", "clinical_lr"}


def test_card_metrics_are_the_product_paths(demo):
    """``assess_masses`` -- what the panel and the batch CLI call -- on the card's first held-out patients gives
    the stored per-mass probabilities and calls."""
    from slicercad.renal.dataset import case_mass
    from slicercad.renal.inference import assess_masses
    from slicercad.renal.phantom import generate_cases

    bundle, card = demo
    m = card["metrics"]["phantom_test"]
    stored = {mid: k for k, mid in enumerate(m["mass_ids"])}
    cases = generate_cases(N_PRODUCT_PATIENTS, card["training_data"]["test_seed"])
    checked = 0
    for c in cases:
        (r,) = assess_masses(bundle, card, c.images, [case_mass(c)],
                             {c.mass_id: {"age_years": c.age_years, "male": c.male}}, with_cam=False)
        if r["status"] != "scored":
            assert c.mass_id not in stored
            continue
        k = stored[c.mass_id]
        assert m["labels"][k] == c.malignant and m["patient_ids"][k] == c.patient_id
        assert r["p_combined"] == pytest.approx(m["p_combined"][k], abs=1e-5)
        assert int(r["call"] == "malignant") == m["calls"][k]
        for model in MODELS:
            assert r["probabilities"][model] == pytest.approx(m["probabilities"][model][k], abs=1e-5)
        (r0,) = assess_masses(bundle, card, c.images, [case_mass(c)], {}, with_cam=False)
        assert r0["model_used"] == "image_only"
        assert r0["p_combined"] == pytest.approx(m["image_only"]["p"][k], abs=1e-5)
        checked += 1
    assert checked >= N_PRODUCT_PATIENTS


def test_cli_assess_defaults_to_the_bundled_model(tmp_path, demo):
    import csv

    from slicercad.cli import main
    from slicercad.renal.phantom import render_case, write_case_dicom

    case = render_case(np.random.default_rng(5), "clear_cell_rcc", 24.0, "PCLI", "m1", age_years=64, male=1)
    write_case_dicom(case, tmp_path / "s")
    with open(tmp_path / "masses.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["study", "mass_id", "x", "y", "z", "coordinate_system", "diameter_mm"],
                                  ["s", "m1", *case.center_lps, "LPS", 24.0]])
    assert main(["renal", "assess", "--masses", str(tmp_path / "masses.csv"), "--out", str(tmp_path / "o.csv")]) == 0
    (row,) = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert row["model_sha256"] == demo[1]["sha256"] and row["synthetic_training_data"] == "True"
    assert row["status"] == "scored" and row["model_used"] == "combined"
