"""LiverLesionCADLib.workflow (the panel's logic) against a real MRML scene and a SYNTHETIC DICOM study:
notice only for synthetic cards, label choices from the card, per-phase offsets kept as parameter-node
text, phase fill, Classify summary and the 'Add to training set' prediction / edited flag."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib import workflow  # noqa: E402
from slicercad.engine.registry import save_model  # noqa: E402
from slicercad.errors import InputError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from slicercad.liver.classes import PRESETS  # noqa: E402
from slicercad.liver.phases import PHASES  # noqa: E402
from slicercad.liver.task import LIVER_LESION, build_model, model_card  # noqa: E402
from slicercad.synth.study import write_phantom_study  # noqa: E402
from SlicerCADLib.dicom_nodes import volume_files  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402

torch.set_num_threads(1)
SECRET = b"site-secret-for-tests-0123456789"
CFG = {"channels": [8, 16, 16], "roi_px": 32}


def panel(**values):
    """A stand-in for the parameter node with the wrapper's defaults (empty Path reads as '.')."""
    fields = dict({f: None for f in workflow.PHASE_FIELDS}, lesionPoints=None,
                  modelPath=Path(), device="cpu", alpha=0.1, overrideAlpha=False, overlay="Grad-CAM",
                  resultsTable=None, phaseOffsets="", datasetFolder=Path(), label="metastasis", annotator="")
    fields.update(values)
    return SimpleNamespace(**fields)


def write_card(folder, synthetic=True):
    torch.manual_seed(0)
    card = model_card(CFG, 1.0, f"workflow-{synthetic}", {}, synthetic=synthetic)
    return save_model(build_model(LIVER_LESION.config(CFG)), card, folder)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    return folder, write_phantom_study(folder, "liver_mri", seed=5)


def mark(scene, lesion, name="L1"):
    ras = lps_to_ras(lesion["center_lps"])
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    points.AddControlPoint(ras.tolist(), name)
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"{name} diameter")
    line.AddControlPoint((ras - [lesion["diameter_mm"] / 2, 0, 0]).tolist())
    line.AddControlPoint((ras + [lesion["diameter_mm"] / 2, 0, 0]).tolist())
    return points, line


def test_notice_only_for_synthetic_cards_and_labels_from_the_card(tmp_path):
    synthetic = write_card(tmp_path / "a", synthetic=True)
    real = write_card(tmp_path / "b", synthetic=False)
    assert workflow.model_notice(synthetic) == workflow.SYNTHETIC_NOTICE
    assert workflow.model_notice(real) == ""
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for nothing in (Path(), "", tmp_path / "missing.json", broken, synthetic.with_suffix(".safetensors")):
        assert workflow.model_notice(nothing) == ""
    assert workflow.label_choices(synthetic) == tuple(json.loads(synthetic.read_text())["classes"])
    assert workflow.label_choices(synthetic) == PRESETS["report"]
    assert workflow.label_choices(Path()) == PRESETS["extended"]
    assert set(workflow.LABEL_CHOICES) == set().union(*PRESETS.values())


def test_offsets_round_trip_as_text_and_reject_bad_entries():
    text = workflow.with_offset("", "L1", "T2", "1.5,-2,0")
    text = workflow.with_offset(text, "L2", "arterial", (0.0, 0.0, 7.0))
    assert workflow.parse_offsets(text) == {"L1": {"T2": (1.5, -2.0, 0.0)}, "L2": {"arterial": (0.0, 0.0, 7.0)}}
    assert workflow.offset_of(text, "L1", "T2") == (1.5, -2.0, 0.0)
    assert workflow.offset_of(text, "L1", "ADC") == (0.0, 0.0, 0.0)
    cleared = workflow.with_offset(text, "L1", "T2", (0, 0, 0))
    assert "L1" not in workflow.parse_offsets(cleared)
    assert workflow.coordinates_text((1, 2.5, -3)) == "1.0,2.5,-3.0"
    cases = [('{"L1": {"T3": [0, 0, 1]}}', "phaseOffsets[L1][T3]"), ('{"L1": {"T2": [0, 1]}}', "phaseOffsets[L1][T2]"),
             ('{"L1": {"T2": [0, "x", 1]}}', "phaseOffsets[L1][T2]"), ('{"L1": [0, 0, 1]}', "phaseOffsets[L1]"),
             ("[1, 2]", "phaseOffsets"), ("{oops", "phaseOffsets"), ('{"L1": {"T2": [0, NaN, 1]}}', "phaseOffsets[L1][T2]")]
    for bad, source in cases:
        with pytest.raises(InputError) as info:
            workflow.parse_offsets(bad)
        assert info.value.source == source, bad
    with pytest.raises(InputError, match="lesion"):
        workflow.with_offset(text, "", "T2", (1, 0, 0))


def test_fill_phases_from_loaded_study_and_offsets_reach_the_lesions(scene, study):
    folder, truth = study
    load_study(scene, folder)
    p = panel()
    summary = workflow.fill_phases(scene, p)
    assert "not found" not in summary
    volumes = workflow.phase_volumes(p)
    assert set(volumes) == set(PHASES)
    for phase, node in volumes.items():
        uid = pydicom.dcmread(volume_files(node)[0], stop_before_pixels=True).SeriesInstanceUID
        assert truth["truth"][uid] == phase
    scene.RemoveNode(p.t2)
    q = panel()
    summary = workflow.fill_phases(scene, q)
    assert summary.endswith("not found: T2") and q.t2 is None and q.adc is p.adc
    p.lesionPoints, _line = mark(scene, truth["lesions"][0])
    assert workflow.lesion_names(p) == ["L1"]
    p.phaseOffsets = workflow.with_offset(p.phaseOffsets, "L1", "T2", (0.0, 4.0, 0.0))
    (lesion,) = workflow.panel_lesions(p)
    assert list(lesion.offset_lps("T2")) == [0.0, 4.0, 0.0] and list(lesion.offset_lps("ADC")) == [0.0, 0.0, 0.0]
    assert workflow.pick_lesion([lesion], "L1") is lesion
    with pytest.raises(InputError) as info:
        workflow.pick_lesion([lesion], "L9")
    assert info.value.source == "L9"


def test_classify_summary_then_export_records_prediction_and_edited(scene, study, tmp_path):
    folder, truth = study
    load_study(scene, folder)
    lesion = truth["lesions"][0]
    points, _line = mark(scene, lesion)
    p = panel(modelPath=write_card(tmp_path / "model"), lesionPoints=points)
    assert not workflow.ready_to_classify(p)
    workflow.fill_phases(scene, p)
    assert workflow.ready_to_classify(p)
    last = {}
    summary = workflow.classify_panel(p, last)
    workflow.classify_panel(p, last)
    assert p.resultsTable.GetNumberOfRows() == 2          # re-runs add rows
    result = workflow.stored_result(p, workflow.pick_lesion(workflow.panel_lesions(p), "L1"), last)
    assert len(last) == 1 and result is not None        # keyed by points node + lesion as marked
    top = max(result["probabilities"].values())
    assert summary.splitlines()[0].startswith(f"L1: {result['predicted_class']} ({top:.2f})")
    assert result["notice"] and summary.splitlines()[-1] == result["notice"]   # the card says synthetic

    prediction, edited = workflow.export_prediction(result, result["predicted_class"])
    assert not edited and prediction["probabilities"] == result["probabilities"]
    other = next(c for c in PRESETS["report"] if c != result["predicted_class"])
    assert workflow.export_prediction(result, other)[1] is True
    assert workflow.export_prediction(None, other) == (None, False)

    with pytest.raises(InputError) as info:
        workflow.add_panel_lesion(p, "L1", SECRET, last)
    assert info.value.source == "datasetFolder"
    p.datasetFolder, p.annotator, p.label = tmp_path / "ds", "reader-1", "hcc"
    with pytest.raises(InputError) as info:                # not a class of this (report) model
        workflow.add_panel_lesion(p, "L1", SECRET, last)
    assert info.value.source == "label"
    with pytest.raises(InputError) as info:
        workflow.add_panel_lesion(p, "L1", b"", last)
    assert info.value.source == "siteSecret"
    p.label = other
    message = workflow.add_panel_lesion(p, "L1", SECRET, last)
    row = json.loads((tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()[0])
    provenance = row["lesions"][0]["provenance"]
    assert row["case_id"] in message and row["lesions"][0]["label"] == other
    assert provenance["edited"] is True and provenance["model_prediction"]["class"] == result["predicted_class"]
    assert provenance["annotator"] == "reader-1"


def test_result_summary_lists_warnings_and_notice():
    results = [{"lesion_id": "A", "predicted_class": "cyst", "probabilities": {"cyst": 0.8, "metastasis": 0.2},
                "warnings": ["no hepatobiliary phase", "ROI padded"], "notice": "synthetic model"},
               {"lesion_id": "B", "predicted_class": "metastasis", "probabilities": {"cyst": 0.35, "metastasis": 0.65},
                "warnings": [], "notice": "synthetic model"}]
    assert workflow.result_summary(results).splitlines() == [
        "A: cyst (0.80) - no hepatobiliary phase; ROI padded", "B: metastasis (0.65)", "synthetic model"]
    assert workflow.result_summary([]) == ""
