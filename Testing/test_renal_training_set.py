"""RenalMassCAD 'Add to training set' against a real MRML scene (slicer-core): a SYNTHETIC 4-phase DICOM study ->
export (de-identified, audited) -> read back through the one sample path gives the panel's model input, per-phase
offsets and a re-measured 40 mm mass included; label, subtype and clinical fields travel; bad input is refused."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RenalMassCAD"))

from RenalMassCADLib.assess import phase_nodes_from_scene  # noqa: E402
from RenalMassCADLib.training import add_to_training_set  # noqa: E402
from slicercad.engine.audit import audit_export  # noqa: E402
from slicercad.errors import GeometryError, InputError, PhaseError  # noqa: E402
from slicercad.liver.roi import Lesion  # noqa: E402
from slicercad.renal.constants import PHASES  # noqa: E402
from slicercad.renal.dataset import case_mass, mass_sample  # noqa: E402
from slicercad.renal.phantom import render_case, write_case_dicom  # noqa: E402
from slicercad.renal.training_set import export_crop_mm, read_exported  # noqa: E402
from SlicerCADLib.source_tags import source_identifiers  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402
from SlicerCADLib.volumes import volume_node_to_sitk  # noqa: E402

SECRET = b"site-secret-for-tests-0123456789"


@pytest.fixture
def study(scene, tmp_path):
    case = render_case(np.random.default_rng(3), "oncocytoma", 22.0, "PTRAIN", "m1", age_years=61, male=0)
    write_case_dicom(case, tmp_path / "study", patient={"PatientName": "DOE^JANE", "PatientBirthDate": "19630412"})
    load_study(scene, tmp_path / "study")
    nodes, _ = phase_nodes_from_scene(scene)
    return case, nodes


def _remeasure(dataset, diameter_mm):
    path = dataset / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["lesions"][0]["diameter_mm"] = diameter_mm
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_exported_mass_gives_the_panel_model_input(study, tmp_path):
    case, nodes = study
    mass = case_mass(case, reader_offsets=True)                 # breath-hold shifts given as per-phase offsets
    assert any(np.any(mass.offset_lps(p)) for p in PHASES)
    result = {"mass_id": "m1", "status": "scored", "call": "malignant", "p_combined": 0.7, "model_used": "combined",
              "probabilities": {"corticomedullary": 0.6}, "provenance": {"model_sha256": "ab" * 32}}
    ds = tmp_path / "ds"
    row = add_to_training_set(ds, nodes, mass, "benign", "oncocytoma", "reader-1", SECRET, 61.0, 0,
                              {"age": "PatientAge", "sex": "PatientSex"}, result)
    lesion = row["lesions"][0]
    assert lesion["label"] == "benign" and row["age"] == 61.0 and row["sex"] == "F"
    record = lesion["provenance"]["acquisition"]["renal"]
    assert record["subtype"] == "oncocytoma" and (record["age_years"], record["male"]) == (61.0, 0)
    assert record["size_cm"] == pytest.approx(2.2) and record["flags"] == []
    assert lesion["provenance"]["edited"] is True                # the reader disagrees with the model's call
    assert lesion["provenance"]["model_prediction"]["p_combined"] == 0.7

    images = {p: volume_node_to_sitk(nodes[p]) for p in PHASES}   # what Assess cuts the sample from
    for diameter in (None, 40.0):
        shown = mass if diameter is None else Lesion("m1", mass.center, diameter, "LPS", mass.offsets_mm)
        panel = mass_sample(images, shown)
        if diameter is not None:
            _remeasure(ds, diameter)
        (back,) = read_exported(ds)
        assert back["label"] == "benign" and back["record"]["subtype"] == "oncocytoma"
        assert back["sample"].x.shape == panel.x.shape == (4, 3, 48, 48)
        assert np.allclose(back["sample"].x, panel.x, atol=1e-4)
        assert back["sample"].flags == panel.flags
    no_offsets = mass_sample(images, Lesion("m1", mass.center, 40.0, "LPS"))
    assert not np.allclose(back["sample"].x, no_offsets.x, atol=1e-2)   # the offsets were needed and kept

    meta = json.loads((ds / "cases" / row["case_id"] / "metadata.json").read_text())
    assert meta["crop"]["size_mm"] == export_crop_mm(22.0) == 100.0
    assert set(meta["crop"]["grids"]) == set(PHASES)
    assert meta["crop"]["grids"]["unenhanced"]["spacing_mm"] != meta["crop"]["grids"]["corticomedullary"]["spacing_mm"]
    source = [source_identifiers(node) for node in nodes.values()]
    assert source[0]["PatientID"] == "PTRAIN"
    assert audit_export(ds, source) == []
    assert "PTRAIN" not in (ds / "manifest.jsonl").read_text()


def test_bad_input_is_refused(study, tmp_path):
    case, nodes = study
    mass = case_mass(case)
    with pytest.raises(InputError, match="oncocytoma.*benign"):
        add_to_training_set(tmp_path / "ds", nodes, mass, "malignant", "oncocytoma", "r", SECRET)
    with pytest.raises(InputError, match="subtype"):
        add_to_training_set(tmp_path / "ds", nodes, mass, "benign", "cyst", "r", SECRET)
    with pytest.raises(InputError, match="annotator"):
        add_to_training_set(tmp_path / "ds", nodes, mass, "benign", "unknown", " ", SECRET)
    with pytest.raises(PhaseError, match="excretory"):
        add_to_training_set(tmp_path / "ds", {**nodes, "excretory": None}, mass, "benign", "unknown", "r", SECRET)
    with pytest.raises((InputError, GeometryError), match="outside"):
        add_to_training_set(tmp_path / "ds", nodes, Lesion("far", (500.0, 0.0, 0.0), 20.0), "benign", "unknown",
                            "r", SECRET)
    assert not (tmp_path / "ds" / "manifest.jsonl").exists()
