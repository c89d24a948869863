"""RenalMassCADLib against a real MRML scene (slicer-core): DICOM study -> phase nodes, age/sex from tags,
mass markups, Assess -> results table with provenance and > 4 cm flagged, Grad-CAM overlay, bad input."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "RenalMassCAD"))

from RenalMassCADLib.assess import (assess_scene, check_phase_nodes, clinical_from_nodes, load_renal_model,  # noqa: E402
                                    masses_from_nodes, phase_nodes_from_scene)
from slicercad.errors import InputError, ModelError, PhaseError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from slicercad.renal.constants import PHASES  # noqa: E402
from slicercad.renal.phantom import render_case, write_case_dicom  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402
from SlicerCADLib.tables import _read_columns  # noqa: E402


def _cols(node):
    return {k: v["values"] for k, v in _read_columns(node.GetTable()).items()}

torch.set_num_threads(1)


def _bundle(tmp_path):
    from slicercad.engine.registry import save_model
    from slicercad.renal.inference import COMBINED_FEATURES, IMAGE_ONLY_FEATURES, MODELS
    from slicercad.renal.task import RenalModelSet, input_spec

    torch.manual_seed(0)
    card = {"name": "renal_test", "task": "renal_mass_bundle", "kind": "classification",
            "model_config": {"channels": [16, 32, 64], "dropout": 0.2}, "input_spec": input_spec(),
            "classes": ["benign", "malignant"], "temperature": 1.0, "training_data": {"synthetic": True},
            "metrics": {}, "combined_model": {"features": list(COMBINED_FEATURES), "coefficients": [0.1] * 8},
            "image_only_model": {"features": list(IMAGE_ONLY_FEATURES), "coefficients": [0.1] * 5},
            "cutoffs": {m: 0.5 for m in (*MODELS, "combined", "image_only")}}
    return save_model(RenalModelSet(), card, tmp_path / "model")


def _marks(scene, centre_lps, diameter, name):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    points.AddControlPoint(lps_to_ras(centre_lps).tolist(), name)
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"{name} diameter")
    ras = lps_to_ras(centre_lps)
    line.AddControlPoint((ras - [diameter / 2, 0, 0]).tolist())
    line.AddControlPoint((ras + [diameter / 2, 0, 0]).tolist())
    return points, line


def test_assess_in_scene(scene, tmp_path):
    case = render_case(np.random.default_rng(0), "clear_cell_rcc", 24.0, "PLIB", "m1", age_years=70, male=1)
    write_case_dicom(case, tmp_path / "study", patient={"PatientAge": None, "PatientBirthDate": "19700201"})
    load_study(scene, tmp_path / "study")
    nodes, assignments = phase_nodes_from_scene(scene)
    assert set(nodes) == set(PHASES) and all(a.confidence > 0.5 for a in assignments.values())
    info = clinical_from_nodes(nodes)
    assert info["age_years"] == 53.0 and info["male"] == 1 and info["age_source"] == "PatientBirthDate + StudyDate"
    points, line = _marks(scene, case.center_lps, case.diameter_mm, "m1")
    masses = masses_from_nodes(points, line)
    assert np.allclose(masses[0].center_lps(), case.center_lps, atol=1e-3)
    assert masses[0].diameter_mm == pytest.approx(24.0, abs=1e-3)
    from slicercad.liver.roi import Lesion

    big = Lesion("big", case.center_lps, 45.0)
    bundle, card = load_renal_model(_bundle(tmp_path))
    results, table, overlay = assess_scene(bundle, card, nodes, masses + [big], info["age_years"], info["male"])
    cols = _cols(table)
    assert list(cols["mass"]) == ["m1", "big"]
    assert cols["status"][0] == "scored" and cols["model_used"][0] == "combined"
    assert cols["over_4cm"][1] == "yes" and "not scored" in cols["flags"][1] and cols["p_combined"][1] is None
    assert list(cols["padded_roi"]) == ["no", "no"]
    assert all(len(s) == 64 for s in cols["model_sha256"]) and cols["synthetic_training_data"][0] == "True"
    assert overlay is not None and overlay.GetImageData().GetPointData().GetScalars().GetRange()[1] > 0
    _, table2, _ = assess_scene(bundle, card, nodes, masses, None, None, table_node=table)
    cols = _cols(table2)
    assert len(cols["mass"]) == 3 and cols["model_used"][2] == "image_only"
    assert "missing" in cols["notes"][2]


def test_bad_input(scene, tmp_path):
    with pytest.raises(PhaseError, match="missing"):
        check_phase_nodes({"unenhanced": None})
    with pytest.raises(InputError, match="no mass"):
        masses_from_nodes(None, None)
    a = render_case(np.random.default_rng(1), "papillary_rcc", 20.0, "PA", "a")
    b = render_case(np.random.default_rng(2), "papillary_rcc", 20.0, "PB", "b")
    write_case_dicom(a, tmp_path / "a")
    write_case_dicom(b, tmp_path / "b")
    load_study(scene, tmp_path / "a")
    nodes_a, _ = phase_nodes_from_scene(scene)
    load_study(scene, tmp_path / "b")
    all_nodes = [n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode")]
    mixed = dict(nodes_a)
    mixed["excretory"] = [n for n in all_nodes if n not in nodes_a.values()][-1]
    with pytest.raises(PhaseError, match="different patients"):
        check_phase_nodes(mixed)
    from slicercad.dicom.write import write_series

    write_series(a.images["excretory"], tmp_path / "mr", modality="MR", series_description="T1 SYNTHETIC",
                 patient={"PatientID": a.patient_id})
    before = set(scene.GetNodesByClass("vtkMRMLScalarVolumeNode"))
    load_study(scene, tmp_path / "mr")
    (mr,) = [n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if n not in before]
    with pytest.raises(InputError, match="Modality 'MR', not CT"):
        check_phase_nodes(dict(nodes_a, excretory=mr))
    bad = tmp_path / "model" / "renal_test.json"
    _bundle(tmp_path)
    (tmp_path / "model" / "renal_test.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        load_renal_model(bad)


def test_mass_from_segments_through_the_panel_path(scene, tmp_path):
    """The panel's segment route: a sphere painted on the nephrographic grid -> a mass (centroid, equivalent
    diameter) -> Assess, as the points + line route; unknown / empty segments are refused by name."""
    from RenalMassCADLib.assess import masses_from_segmentation

    from SlicerCADLib.segmentations import label_array_to_segment
    from SlicerCADLib.volumes import volume_node_to_sitk

    case = render_case(np.random.default_rng(5), "oncocytoma", 26.0, "PSEG", "s1", age_years=60, male=0)
    write_case_dicom(case, tmp_path / "study")
    load_study(scene, tmp_path / "study")
    nodes, _ = phase_nodes_from_scene(scene)
    ref = nodes["nephrographic"]
    grid = volume_node_to_sitk(ref)
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.GetSize()[::-1]), indexing="ij")
    pts = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    lps = np.array([grid.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in pts])
    sphere = (np.linalg.norm(lps - np.asarray(case.center_lps), axis=1) <= 13.0).reshape(k.shape)
    seg, _ = label_array_to_segment(sphere, ref, name="Mass A")
    label_array_to_segment(np.zeros_like(sphere), ref, seg, name="Empty")
    (mass,) = masses_from_segmentation(seg, ref, "Mass A")
    assert mass.lesion_id == "Mass A" and np.allclose(mass.center_lps(), case.center_lps, atol=1.0)
    assert mass.diameter_mm == pytest.approx(26.0, abs=2.0)
    bundle, card = load_renal_model(_bundle(tmp_path))
    results, table, _ = assess_scene(bundle, card, nodes, [mass], 60.0, 0)
    assert results[0]["status"] == "scored" and _cols(table)["mass"] == ["Mass A"]
    with pytest.raises(InputError, match="no segment called"):
        masses_from_segmentation(seg, ref, "Mass B")
    with pytest.raises(InputError, match="empty"):
        masses_from_segmentation(seg, ref, "")
