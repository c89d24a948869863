"""The bundled LiverLesionCAD demo model (Resources/Models/liver_lesion_demo): integrity, loading,
and skill on the SYNTHETIC phantom test set against the majority baseline and random weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from slicercad.engine.registry import BUNDLED_DIR, list_models, load_model, sha256_file
from slicercad.liver import task  # noqa: F401  (registers the liver tasks)
from slicercad.liver.dataset import build_dataset
from slicercad.liver.phases import PHASES
from slicercad.liver.controls import randomised_copy
from slicercad.liver.fitting import predict_proba
from slicercad.synth.liver_lesions import CLASSES
from slicercad.synth.liver_lesions_phantom import generate_lesions

CARD = BUNDLED_DIR / "liver_lesion_demo.json"
N_TEST = 90
N_PRODUCT = 30
# A floor, not a measurement: the card's own balanced accuracy (metrics.phantom_test, 250 lesions, ~0.62) is
# the figure to quote; randomised copies give 0.333 (one class for everything), as does the majority class.
# The floor sits between the two, so a model that learned nothing fails and this one passes.
MIN_BALANCED_ACCURACY = 0.50


@pytest.fixture(scope="module")
def demo():
    torch.set_num_threads(1)
    return load_model(CARD, task="liver_lesion")


@pytest.fixture(scope="module")
def test_items():
    return generate_lesions(N_TEST, seed=2, split="test")


@pytest.fixture(scope="module")
def test_set(test_items):
    return build_dataset(test_items, CLASSES, seed=1)


def test_card_sha256_matches_weights_and_file_is_small():
    card = json.loads(CARD.read_text())
    weights = BUNDLED_DIR / card["weights"]
    assert sha256_file(weights) == card["sha256"]
    assert weights.stat().st_size < 2 * 1024 * 1024


def test_card_says_synthetic_and_reports_baselines():
    card = json.loads(CARD.read_text())
    assert card["training_data"]["synthetic"] is True
    m = card["metrics"]
    assert m["synthetic"] is True
    assert m["phantom_test"]["balanced_accuracy"] > m["phantom_test"]["majority_baseline_balanced_accuracy"]
    assert 0.0 < m["logistic_regression_roi_means"]["balanced_accuracy"] <= 1.0
    assert [p for p in card["input_spec"]["phases"] if p in PHASES] == list(PHASES)


def test_loads_through_registry(demo):
    model, card = demo
    assert not model.training
    assert card["classes"] == list(CLASSES)
    assert any(m["name"] == "liver_lesion_demo" and m["source"] == "bundled" and m["synthetic"]
               for m in list_models("liver_lesion"))


def _balanced_accuracy(model, temperature, ds):
    proba = predict_proba(model, temperature, ds)
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)
    return balanced_accuracy_score(ds.labels, proba.argmax(1))


def test_classifies_phantom_test_lesions_above_majority_baseline(demo, test_set):
    model, card = demo
    assert _balanced_accuracy(model, card["temperature"], test_set) >= MIN_BALANCED_ACCURACY


def test_randomised_weights_copy_does_not(demo, test_set):
    model, card = demo
    for seed in range(3):
        assert _balanced_accuracy(randomised_copy(model, seed), card["temperature"], test_set) < MIN_BALANCED_ACCURACY


def test_card_metrics_are_the_product_paths(demo, test_items, test_set):
    """The card's metrics equal what the product path (``classify_lesions``, what the panel and the batch
    script call) gives: its stored per-lesion predictions reproduce its metrics, and the product re-run
    on the first lesions gives those predictions -- and the evaluation path's probabilities."""
    from sklearn.metrics import accuracy_score

    from slicercad.liver.dataset import phantom_acquisition
    from slicercad.liver.inference import classify_lesions

    model, card = demo
    m = card["metrics"]["phantom_test"]
    labels, pred = np.array(m["labels"]), np.array(m["predicted"])
    assert len(pred) == m["n"] == card["training_data"]["n_test"]
    assert accuracy_score(labels, pred) == m["accuracy"]
    assert balanced_accuracy_score(labels, pred) == m["balanced_accuracy"]
    proba = predict_proba(model, card["temperature"], test_set)
    for i in range(N_PRODUCT):
        item = test_items[i]
        (r,) = classify_lesions(model, card, item.images, [test_set.lesions[i]], phantom_acquisition(item),
                                with_cam=False)
        assert r["lesion_id"] == m["lesion_ids"][i] and test_set.labels[i] == labels[i]
        assert r["predicted_index"] == pred[i]
        assert np.allclose(list(r["probabilities"].values()), proba[i], atol=1e-5)


def test_card_model_config_is_how_it_was_trained():
    from slicercad.liver.task import LIVER_LESION, RECIPE

    card = json.loads(CARD.read_text())
    cfg, training = card["model_config"], card["training_data"]
    assert cfg == LIVER_LESION.config({k: v for k, v in cfg.items()})
    assert cfg["use_masks"] is False and cfg["n_lesions"] == training["n_train"]
    assert cfg["data_seed"] == training["train_seed"] and cfg["split"] == "train"
    assert training["recipe"] == {**RECIPE, "seed": training["seed"]}
    assert card["input_spec"]["channel_units"]["ADC"].startswith("apparent diffusion coefficient in 1e-3")


def test_card_reports_both_offset_modes_through_the_product_path(demo, test_items, test_set):
    """Reader offsets (the phantom's true shift + 1.5 mm) and zero offsets (no registration): both on the card,
    both re-run here through ``classify_lesions`` on the first lesions."""
    from slicercad.liver.dataset import phantom_acquisition
    from slicercad.liver.inference import classify_lesions
    from slicercad.liver.roi import Lesion

    model, card = demo
    zero = card["metrics"]["phantom_test_zero_offsets"]
    assert zero["n"] == card["metrics"]["phantom_test"]["n"] and "no per-phase offsets" in zero["offsets"]
    assert card["metrics"]["logistic_regression_roi_means"]["class_weight"] == "balanced"
    for block in (card["metrics"]["phantom_test"], zero):
        assert block["ci"].startswith("95 %") and len(block["by_size"]) == 3
        lo, hi = block["balanced_accuracy_ci95"]
        assert lo <= block["balanced_accuracy"] <= hi
    for i in range(10):
        les = test_set.lesions[i]
        (r,) = classify_lesions(model, card, test_items[i].images,
                                [Lesion(les.lesion_id, les.center, les.diameter_mm, les.coordinate_system, {})],
                                phantom_acquisition(test_items[i]), with_cam=False)
        assert r["predicted_index"] == zero["predicted"][i] and r["offsets_mm"] == {}


def test_card_declares_the_roi_it_was_trained_on():
    from slicercad.liver.roi import RoiSpec, roi_spec_from_card

    card = json.loads(CARD.read_text())
    assert roi_spec_from_card(card) == RoiSpec(size_px=64, fov_mm=None, fov_factor=3.0, min_fov_mm=48.0)
    assert card["model_config"]["fov_factor"] == card["input_spec"]["roi"]["fov_factor"] == 3.0
