"""TI CNN smoke: the engine trains the task, the bundled model loads with its SYNTHETIC card, the
CLI writes the records, the evaluation runs (smoke) with its controls."""
import json

import numpy as np
import pytest

from slicercad.engine.registry import BUNDLED_DIR, load_model
from slicercad.ti import task  # noqa: F401
from slicercad.ti.cli import CSV_FIELDS
from slicercad.ti.correct import RECORD_FIELDS, correct_scout
from slicercad.ti.phantom import make_scout, write_scout_dicom
from slicercad.ti.scout import TIScout


@pytest.fixture(scope="module")
def bundled():
    return load_model(BUNDLED_DIR / "ti_offset_demo.json", task="ti_offset")


def test_bundled_model_is_small_synthetic_and_documented(bundled):
    model, card = bundled
    assert (BUNDLED_DIR / "ti_offset_demo.safetensors").stat().st_size < 2_000_000
    assert card["training_data"]["synthetic"] is True
    assert card["input_spec"]["offset_bin_edges_ms"] == [-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0]
    assert card["input_spec"]["valid_ranges"]["field_strength_t"] == [1.5, 3.0]
    assert card["metrics"]["frame_accuracy"] > 1 / 6 + 0.05     # better than chance on held-out phantoms


def test_card_metrics_are_measured_on_validation_scouts_not_the_test_seed(bundled):
    """The card's metrics come from VALIDATION_SEED scouts, disjoint from the scouts the model trained on
    and from the TEST_SEED scouts of `make reproduce-ti` (whose CNN rows are then the card's held-out check);
    CONTROL: the test seed's scouts would be named differently."""
    from slicercad.ti.evaluate import TEST_SEED, VALIDATION_SEED

    _, card = bundled
    m, cfg = card["metrics"], card["model_config"]
    n = m["n_patients"]
    assert m["test_data"] == f"SYNTHETIC phantom, {n} scouts, seed {VALIDATION_SEED}"
    assert f"validation seed {VALIDATION_SEED}" in m["card_split"] and "recipe was chosen on test-seed" in m["card_split"]
    assert m["test_data"] != f"SYNTHETIC phantom, {n} scouts, seed {TEST_SEED}"        # CONTROL
    trained = {cfg["data_seed"] * 1_000_003 + i for i in range(cfg["n_patients"])}    # task.phantom_samples
    validation, test = set(range(VALIDATION_SEED, VALIDATION_SEED + n)), set(range(TEST_SEED, TEST_SEED + n))
    assert not trained & validation and not trained & test and not validation & test


def test_bundled_model_is_built_with_the_task_recipe_and_input(bundled):
    """The card says the recipe on the TaskSpec trained it, on the input the product path feeds; a card of
    a whole-frame model (no crop) is refused rather than fed the cropped input."""
    from slicercad.errors import InputError
    from slicercad.engine.tasks import get_task
    from slicercad.ti import constants as C
    from slicercad.ti.correct import frame_probabilities
    from slicercad.ti.task import DEFAULT_CONFIG, RECIPE

    model, card = bundled
    assert get_task("ti_offset").recipe == RECIPE and get_task("ti_offset_open").recipe == RECIPE
    assert card["epochs_run"] == RECIPE["epochs"]
    assert card["input_spec"]["crop_fraction"] == C.CNN_CROP_FRACTION
    assert card["model_config"]["n_patients"] == DEFAULT_CONFIG["n_patients"]
    whole = {**card, "input_spec": {k: v for k, v in card["input_spec"].items() if k != "crop_fraction"}}
    with pytest.raises(InputError, match="central"):
        frame_probabilities(model, whole, make_scout(1, n_frames=4).frames)


def test_correct_scout_fuses_and_fills_the_record(bundled):
    model, card = bundled
    ph = make_scout(11, snr=50)
    scout = TIScout(ph.frames, ph.ti_ms, "test", pixel_spacing_mm=ph.pixel_spacing_mm,
                    meta={"rr_ms": 900.0, "minutes_since_injection": 12.0})
    rec = correct_scout(scout, model, card)
    assert set(RECORD_FIELDS) <= set(rec)
    assert rec["method"] in ("fused", "physics", "cnn") and rec["cnn_null_ti_ms"] is not None
    assert rec["recommended_ti_ms"] is not None and rec["synthetic_model"] is True
    json.dumps(rec)


def test_cli_correct_dicom_and_images(tmp_path):
    from PIL import Image

    from slicercad.cli import main

    ph = make_scout(12, snr=40, n_frames=14, shape=(96, 96))
    write_scout_dicom(ph, tmp_path / "dcm", ti_in="ImageComments", seed=3)
    out, csv = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["ti", "correct", str(tmp_path / "dcm"), "--json", str(out), "--csv", str(csv)]) == 0
    (rec,) = json.loads(out.read_text())
    assert rec["series_instance_uid"] and rec["n_frames"] == 14 and rec["ti_source"] == "ImageComments"
    assert abs(rec["null_ti_ms"] - ph.myo_null_ms) < 40
    assert csv.read_text().splitlines()[0] == ",".join(CSV_FIELDS)
    img = tmp_path / "img"
    img.mkdir()
    for k, f in enumerate(ph.frames[:6]):
        Image.fromarray(np.clip(f / ph.frames.max() * 255, 0, 255).astype(np.uint8)).save(img / f"{k:02d}.png")
    tis = ",".join(f"{t:g}" for t in ph.ti_ms[:6])
    assert main(["ti", "correct", str(img), "--ti", tis, "--json", str(out)]) == 0   # the CNN reads images
    (rec,) = json.loads(out.read_text())
    assert rec["n_frames"] == 6 and rec["ti_source"] == "user (--ti)" and rec["cnn_null_ti_ms"] is not None
    # physics alone on 6 unscaled 8-bit frames without pixel spacing finds no myocardium: an error, not a TI
    assert main(["ti", "correct", str(img), "--ti", tis, "--model", "none", "--json", str(tmp_path / "x.json")]) == 2
    assert main(["ti", "correct", str(img), "--ti", "100,200", "--json", str(out)]) == 2


def test_reproduce_smoke_has_every_row_and_the_controls(tmp_path):
    from slicercad.ti.evaluate import reproduce

    result = reproduce(tmp_path, smoke=True)
    t = result["table"]
    for key in ("frame_clean", "photo_4k", "photo_3mp", "series_cnn", "series_physics", "series_fused",
                "operator_alone", "operator_cnn", "random_weights_frame"):
        assert key in t and {"in_range", "under", "over", "in_range_ci"} <= set(t[key])
    assert t["control_shuffled_ti_flagged"] >= 0.75
    assert "SYNTHETIC" in (tmp_path / "results.md").read_text()
    assert result["table"]["frame_clean"]["n"] > 0 and "epochs" in result["setup"]


def test_randomised_weights_control_is_near_chance_and_far_below_the_model(bundled):
    """The control must fail: randomised weights put frames in range about as often as a uniformly random
    bin would (chance computed from the frames' true offsets), far below the trained model."""
    from slicercad.ti.constants import OFFSET_BIN_CENTRES_MS
    from slicercad.ti.evaluate import evaluate, outcome, test_scouts

    model, card = bundled
    scouts = test_scouts(6)
    t = evaluate(model, card, scouts, photo_profiles=(), n_boot=50)
    chance = 100 * np.mean([np.mean(outcome(ph.ti_ms[np.abs(ph.offsets_ms()) <= 60][:, None]
                                            - np.array(OFFSET_BIN_CENTRES_MS)[None], ph.myo_null_ms) == 0)
                            for ph in scouts])
    assert abs(t["random_weights_frame"]["in_range"] - chance) < 15
    assert t["frame_clean"]["in_range"] > t["random_weights_frame"]["in_range"] + 30


def test_card_metrics_equal_the_product_path(bundled):
    """The card's per-frame metrics are recomputed through the product path (``frame_probabilities``, the
    function ``correct_scout`` serves) on the card's validation scouts."""
    from slicercad.ti.evaluate import VALIDATION_SEED, evaluate_cnn_quick

    model, card = bundled
    m = card["metrics"]
    again = evaluate_cnn_quick(model, card, m["n_patients"], VALIDATION_SEED)
    assert again["n"] == m["n"]
    for key in ("in_range", "under", "over", "frame_accuracy"):
        assert again[key] == pytest.approx(m[key], abs=1e-3), key


def test_card_validity_range_and_vendor_are_checked(bundled):
    from slicercad.ti.correct import correct_frames

    model, card = bundled
    ph = make_scout(6, snr=60, n_frames=12)
    out = correct_frames(ph.frames, ph.ti_ms, ph.pixel_spacing_mm, model, card,
                         meta={"field_strength_t": 7.0, "manufacturer": "SYNTHETIC"})
    assert out["cnn"] is None and out["method"] == "physics" and any("CNN left out" in w for w in out["warnings"])
    out = correct_frames(ph.frames, ph.ti_ms, ph.pixel_spacing_mm, model, card,
                         meta={"field_strength_t": 1.5, "manufacturer": "ACME MR"})
    assert out["cnn"] is not None and any("SYNTHETIC phantoms only" in w for w in out["warnings"])
