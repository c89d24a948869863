"""RenalMassCAD input checks: placeholder / out-of-range age -> image-only model, the card's diameter range, CT-in-HU
check, out-of-distribution and padded-ROI notes, renal phases from timing on 'auto' (capped confidence) and the
renal_ct default of the batch, ImageNet normalisation of the Inception option, lazy Lib package."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from slicercad.dicom.tags import SeriesTags
from slicercad.errors import InputError
from slicercad.liver.roi import Lesion
from slicercad.phases import RENAL_BY_TIMING_CONFIDENCE, assign_phases
from slicercad.renal.dataset import case_mass
from slicercad.renal.inference import COMBINED_FEATURES, IMAGE_ONLY_FEATURES, MODELS, assess_masses, check_hu
from slicercad.renal.patient import clinical_from_dataset, clinical_from_file
from slicercad.renal.phantom import render_case

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def product():
    from slicercad.renal.task import RenalModelSet, input_spec

    torch.manual_seed(0)
    spec = {**input_spec(), "training_distribution": {"age_years": [25.0, 88.0],
                                                      "core_mean_hu": {"unenhanced": [20.0, 60.0]}}}
    card = {"name": "renal_inputs_test", "input_spec": spec, "training_data": {"synthetic": True}, "temperature": 1.0,
            "sha256": "0" * 64, "combined_model": {"features": list(COMBINED_FEATURES), "coefficients": [0.1] * 8},
            "image_only_model": {"features": list(IMAGE_ONLY_FEATURES), "coefficients": [0.1] * 5},
            "cutoffs": {m: 0.5 for m in (*MODELS, "combined", "image_only")}}
    case = render_case(np.random.default_rng(3), "clear_cell_rcc", 24.0, "PIN", "m1")
    return RenalModelSet().eval(), card, case


def test_placeholder_age_and_real_tags():
    from pydicom.data import get_testdata_file

    ct = clinical_from_file(get_testdata_file("CT_small.dcm"))           # PatientAge '000Y', PatientSex 'O'
    assert ct["age_years"] is None and ct["male"] is None and "placeholder" in ct["age_source"]
    mr = clinical_from_file(get_testdata_file("MR_small.dcm"))           # no age, no birth date, sex 'F'
    assert mr["age_years"] is None and mr["male"] == 0 and mr["age_source"] == "missing"
    mr2 = clinical_from_file(get_testdata_file("MR2_J2KI.dcm"))          # born 1950-01-12, study 2004-08-26
    assert mr2["age_years"] == 54.0 and mr2["male"] == 1 and mr2["age_source"] == "PatientBirthDate + StudyDate"
    d = clinical_from_dataset({"PatientAge": "000Y", "PatientBirthDate": "19600101", "StudyDate": "20200601"})
    assert d["age_years"] == 60.0 and "placeholder" in d["age_source"]


@pytest.mark.parametrize("age", [0.0, 5.0, 95.0])
def test_age_outside_training_range_uses_image_only(product, age):
    bundle, card, case = product
    (r,) = assess_masses(bundle, card, case.images, [case_mass(case)], {"m1": {"age_years": age, "male": 1}},
                         with_cam=False)
    assert r["model_used"] == "image_only" and r["age_years"] is None
    assert any("outside the model's training range [25, 88]" in n for n in r["notes"])
    (ok,) = assess_masses(bundle, card, case.images, [case_mass(case)], {"m1": {"age_years": 60.0, "male": 1}},
                          with_cam=False)
    assert ok["model_used"] == "combined"


def test_diameter_range_hu_check_and_notes(product, tmp_path):
    from slicercad.renal.inference import write_csv

    bundle, card, case = product
    tiny = Lesion("tiny", case.center_lps, 3.0, "LPS")
    edge = Lesion("edge", case.center_lps, 24.0, "LPS")
    img = case.images["unenhanced"]
    corner = img.TransformIndexToPhysicalPoint((1, 1, img.GetSize()[2] // 2))
    edge.center = tuple(corner)
    rows = assess_masses(bundle, card, case.images, [tiny, case_mass(case), edge], {}, with_cam=False)
    assert rows[0]["status"] == "flagged, not scored" and "diameter_mm=3.0" in rows[0]["flags"][0]
    assert rows[1]["status"] == "scored" and not rows[1]["padded"]
    assert rows[2]["padded"] and any("ROI padded" in n for n in rows[2]["notes"])
    out = write_csv(tmp_path / "r.csv", rows).read_text().splitlines()
    assert "padded" in out[0].split(",") and ",yes," in out[3] and ",no," in out[2]
    hot = {p: sitk.Add(sitk.Cast(v, sitk.sitkFloat32), 1024.0) for p, v in case.images.items()}   # raw stored values
    with pytest.raises(InputError, match="does not look like CT in HU"):
        assess_masses(bundle, card, hot, [case_mass(case)], {}, with_cam=False)
    check_hu(case.images)
    shifted = dict(case.images, unenhanced=sitk.Add(sitk.Cast(img, sitk.sitkFloat32), 60.0))
    (r,) = assess_masses(bundle, card, shifted, [case_mass(case)], {}, with_cam=False)
    assert any("unenhanced core" in n and "outside the training distribution" in n for n in r["notes"])


def _ct(description, t, n):
    return f"v{n}", SeriesTags(modality="CT", series_description=description, acquisition_time=t, series_number=n,
                               contrast_bolus_agent="" if n == 1 else "Iopamidol")


def test_auto_recognises_renal_from_timing_with_capped_confidence():
    renal = [_ct("Abdomen 5.0 B30f", 40000.0 + d, n) for n, d in enumerate((0, 80, 145, 525), start=1)]
    got = assign_phases(renal, "auto")
    assert [a.phase for a in got] == ["unenhanced", "corticomedullary", "nephrographic", "excretory"]
    assert all(a.confidence <= RENAL_BY_TIMING_CONFIDENCE and "from timing alone" in a.reason for a in got)
    liver = [_ct("Abdomen 5.0 B30f", 40000.0 + d, n) for n, d in enumerate((0, 80, 117, 225), start=1)]
    assert [a.phase for a in assign_phases(liver, "auto")] == ["unenhanced", "arterial", "portal", "delayed"]
    named = [_ct(f"Kidney {p}", 40000.0 + d, n) for n, (p, d) in
             enumerate((("plain", 0), ("cortico", 80), ("nephro", 145), ("excretory", 525)), start=1)]
    assert all(a.confidence > RENAL_BY_TIMING_CONFIDENCE for a in assign_phases(named, "auto"))


def test_batch_and_study_loader_default_to_renal_ct():
    import inspect

    from slicercad.cli import build_parser
    from slicercad.renal.inference import assess_csv
    from slicercad.renal.study_io import load_renal_study

    args = build_parser("renal").parse_args(["renal", "assess", "--masses", "m.csv", "--out", "o.csv"])
    assert args.protocol == "renal_ct"
    assert inspect.signature(assess_csv).parameters["protocol"].default == "renal_ct"
    assert inspect.signature(load_renal_study).parameters["protocol"].default == "renal_ct"


def test_imagenet_normalisation_only_with_imagenet_weights():
    from slicercad.renal.model import IMAGENET_MEAN, IMAGENET_STD, _InceptionWrapper

    seen = []

    class Stub(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.mean(dim=(2, 3))[:, :2]

    x = torch.full((1, 1, 8, 8), 0.5)
    _InceptionWrapper(Stub(), 1, imagenet_normalise=True)(x)
    _InceptionWrapper(Stub(), 1)(x)
    want = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(seen[0][0, :, 0, 0], want) and torch.allclose(seen[1], torch.full_like(seen[1], 0.5))


def test_lib_package_imports_nothing_at_load():
    code = ("import sys; sys.path.insert(0, 'RenalMassCAD'); import RenalMassCADLib; "
            "assert not any(m.startswith('SlicerCADLib') for m in sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
