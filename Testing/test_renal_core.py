"""RenalMassCAD core: pinned quantities, SYNTHETIC phantom physics, the sample path and its flags, the smoke
experiment, the bundle through DICOM -> assess CLI, age / sex from real DICOM tags."""
import csv
import json

import numpy as np
import pytest

from slicercad.errors import InputError, PhaseError
from slicercad.liver.roi import Lesion
from slicercad.renal import constants
from slicercad.renal.dataset import case_mass, mass_sample, window
from slicercad.renal.phantom import (FLAG_TYPES, MASS_TYPES, TISSUE_HU, draw_population, flag_case, generate_cases,
                                     render_case)


def test_pinned_quantities():
    assert constants.PHASES == ("unenhanced", "corticomedullary", "nephrographic", "excretory")
    assert constants.SIZE_LIMIT_MM == 40.0
    assert constants.HU_WINDOW == (-160.0, 240.0)
    assert (constants.FAT_HU, constants.FAT_FRACTION, constants.ENHANCEMENT_HU) == (-10.0, 0.10, 15.0)
    assert (constants.CV_FOLDS, constants.CORE_FRACTION) == (5, 0.6)
    assert window([-500, -160, 40, 240, 900]).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_population_follows_kits23():
    pop = draw_population(3000, seed=0, second_mass_fraction=0.0)
    benign = np.array([1 - d["malignant"] for d in pop])
    assert abs(benign.mean() - 28 / 236) < 0.02
    sizes = np.array([d["diameter_mm"] for d in pop])
    assert sizes.min() >= 10.0 and sizes.max() <= 40.0
    males = np.array([d["male"] for d in pop])
    assert males[benign == 0].mean() > males[benign == 1].mean() + 0.1   # KiTS23: 64 % vs 43 % male
    types = {d["mass_type"] for d in pop}
    assert types == set(MASS_TYPES)
    assert all(MASS_TYPES[d["mass_type"]][0] == d["malignant"] for d in pop)


def _core(case, phase):
    s = mass_sample(case.images, case_mass(case))
    return s.features[phase]["mean_hu"]


def test_phantom_enhancement_physics():
    rng = np.random.default_rng(0)
    c = render_case(rng, "clear_cell_rcc", 30.0)
    assert TISSUE_HU["cortex"][1] > TISSUE_HU["medulla"][1]            # corticomedullary differentiation
    assert TISSUE_HU["collecting"][3] > 400                            # excreted contrast
    s = mass_sample(c.images, case_mass(c))
    hu = s.features
    assert hu["corticomedullary"]["delta_hu"] > 50 and hu["excretory"]["mean_hu"] < hu["corticomedullary"]["mean_hu"]
    p = render_case(np.random.default_rng(1), "papillary_rcc", 30.0)
    assert _core(p, "corticomedullary") < hu["corticomedullary"]["mean_hu"]
    assert _core(p, "excretory") > _core(p, "corticomedullary")        # slow, progressive
    a = render_case(np.random.default_rng(2), "fat_poor_aml", 30.0)
    assert MASS_TYPES["fat_poor_aml"][1][0] > MASS_TYPES["clear_cell_rcc"][1][0]   # high unenhanced attenuation
    assert not mass_sample(a.images, case_mass(a)).flags
    for ph, img in c.images.items():                                   # each phase its own grid
        assert img.GetSpacing()[2] == {"unenhanced": 5.0, "corticomedullary": 2.5, "nephrographic": 2.5,
                                       "excretory": 5.0}[ph]


def test_flags_fat_cyst_and_over_4cm():
    fat = mass_sample(*(lambda c: (c.images, case_mass(c)))(flag_case("classic_aml")))
    assert any("macroscopic fat" in f for f in fat.flags) and not fat.scorable
    cyst = mass_sample(*(lambda c: (c.images, case_mass(c)))(flag_case("hyperdense_cyst")))
    assert any("non-enhancing" in f for f in cyst.flags) and not any("fat" in f for f in cyst.flags)
    big = render_case(np.random.default_rng(3), "clear_cell_rcc", 45.0)
    s = mass_sample(big.images, case_mass(big))
    assert any("> 40 mm" in f for f in s.flags)
    assert set(FLAG_TYPES) == {"classic_aml", "hyperdense_cyst"}


def test_sample_path_and_bad_input():
    c = render_case(np.random.default_rng(4), "oncocytoma", 20.0)
    s = mass_sample(c.images, case_mass(c))
    assert s.x.shape == (4, 3, 48, 48) and s.x.min() >= 0 and s.x.max() <= 1
    with pytest.raises(PhaseError, match="excretory"):
        mass_sample({k: v for k, v in c.images.items() if k != "excretory"}, case_mass(c))
    with pytest.raises(InputError, match="outside"):
        mass_sample(c.images, Lesion("far", (500.0, 0.0, 0.0), 20.0))


@pytest.fixture(scope="module")
def cases():
    return generate_cases(16, 5, benign_fraction=0.4, second_mass_fraction=0.2)


def test_smoke_reproduce(cases):
    from slicercad.renal.study import reproduce
    from slicercad.renal.tables import results_markdown

    r = reproduce(seed=1, folds=2, recipe={"epochs": 1}, n_boot=50, log=None, cases=cases)
    assert r["n_masses"] > r["n_patients"]                      # some patients have two masses
    assert r["synthetic"] and set(r["models"]) >= {"unenhanced", "corticomedullary", "nephrographic", "excretory",
                                                  "multiphase", "combined", "roi_mean_hu_lr", "clinical_lr",
                                                  "random_weights_corticomedullary",
                                                  "permuted_labels_corticomedullary", "image_only",
                                                  "permuted_labels_combined", "random_weights_multiphase"}
    assert set(r["controls"]) == {m for m in r["models"] if m.startswith(("random_weights_", "permuted_labels_"))}
    assert "vif" in r["regression"]["collinearity"] and all("p_holm" in v for v in r["paired_auc"].values())
    assert isinstance(r["excluded_flagged_by_type"], dict)
    assert all(0.0 <= v["auc"] <= 1.0 and 0.0 <= v["youden_accuracy"] <= 1.0 for v in r["models"].values())
    assert "corticomedullary - excretory" in r["paired_auc"]
    assert all(r["flag_cases"].values())
    assert "SYNTHETIC" in results_markdown(json.loads(json.dumps(r, default=float)))


def test_bundle_dicom_assess_cli(tmp_path, cases):
    from slicercad.cli import main
    from slicercad.engine.registry import save_model
    from slicercad.renal.bundle import build_bundle
    from slicercad.renal.inference import assess_masses
    from slicercad.renal.phantom import write_case_dicom

    bundle, card = build_bundle(cases, recipe={"epochs": 1})
    card_path = save_model(bundle, card, tmp_path / "model")
    case = cases[0]
    write_case_dicom(case, tmp_path / "s0", patient={"PatientAge": None, "PatientBirthDate": "19500601"})
    big = render_case(np.random.default_rng(9), "clear_cell_rcc", 45.0, "PBIG", "big")
    write_case_dicom(big, tmp_path / "s1", patient={"PatientSex": "O"})
    with open(tmp_path / "masses.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "mass_id", "x", "y", "z", "coordinate_system", "diameter_mm", "age", "sex"])
        w.writerow(["s0", case.mass_id, *case.center_lps, "LPS", case.diameter_mm, "", ""])
        w.writerow(["s1", "big", *big.center_lps, "LPS", 45.0, "", ""])
        w.writerow(["s1", "small_no_sex", *big.center_lps, "LPS", 30.0, "", ""])
    out = tmp_path / "out.csv"
    assert main(["renal", "assess", "--model", str(card_path), "--masses", str(tmp_path / "masses.csv"),
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert rows[0]["status"] == "scored" and rows[0]["model_used"] == "combined"
    assert rows[0]["age_years"] == "73.0000"                        # 1950-06-01 -> 2024-01-05
    assert rows[1]["status"] == "flagged, not scored" and "> 40 mm" in rows[1]["flags"] and not rows[1]["p_combined"]
    assert rows[2]["model_used"] == "image_only" and "sex missing" in rows[2]["notes"]
    r = assess_masses(bundle, card, case.images, [case_mass(case)], {case.mass_id: {"age_years": 60, "male": 1}})[0]
    assert set(r["cams"]) == set(constants.PHASES) and r["cams"]["corticomedullary"].shape == (48, 48)
    with pytest.raises(PhaseError, match="nephrographic"):
        assess_masses(bundle, card, {k: v for k, v in case.images.items() if k != "nephrographic"}, [case_mass(case)])


def test_age_and_sex_from_real_dicom_tags():
    from pydicom.data import get_testdata_file

    from slicercad.renal.patient import age_from_dates, clinical_from_dataset, clinical_from_file

    path = get_testdata_file("CT_small.dcm")
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    info = clinical_from_file(path)
    assert (str(ds.PatientAge), str(ds.PatientSex)) == ("000Y", "O")        # anonymisation placeholders
    assert info["age_years"] is None and info["male"] is None and "placeholder" in info["age_source"]
    assert age_from_dates("19600310", "20240309") == 63.0 and age_from_dates("19600310", "20240310") == 64.0
    d = clinical_from_dataset({"PatientSex": "O", "PatientBirthDate": "19800101", "StudyDate": "20200101"})
    assert d["male"] is None and d["age_years"] == 40.0 and d["age_source"] == "PatientBirthDate + StudyDate"
    with pytest.raises(InputError, match="before"):
        age_from_dates("20200101", "20100101")


def test_inception_option_needs_a_local_file_and_never_downloads(tmp_path):
    from slicercad.errors import ModelError
    from slicercad.renal.model import inception_v3

    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match="torchvision"):
            inception_v3(tmp_path / "imagenet.safetensors")
        return
    with pytest.raises(ModelError, match="not found"):
        inception_v3(tmp_path / "missing.safetensors")


def test_engine_tasks_registered():
    import torch

    from slicercad.engine.tasks import get_task

    for name, channels in (("renal_mass_phase", 1), ("renal_mass_multiphase", 4)):
        task = get_task(name)
        net = task.build_model(task.config())
        assert net(torch.zeros(2, channels, 48, 48)).shape == (2, 2)
        assert task.spec_for(task.config())["valid_ranges"]["diameter_mm"][1] == constants.SIZE_LIMIT_MM
    bundle = get_task("renal_mass_bundle")
    assert set(bundle.build_model(bundle.config()).nets) == set(constants.PHASES) | {"multiphase"}
