"""The panel reads the acquisition from DICOM (issue 9 item 3): field strength and the DWI series' b-value
from the volumes' tags, so a study at a field strength training never saw gets a warning in the row and
the summary, and one at the trained values none. SYNTHETIC DICOM study in a slicer-core scene; bundled
demo model, the acquisition it saw in training pinned to 3 T / b = 800 (what the phantom study is written with)."""
import sys
from pathlib import Path

import pydicom
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib import workflow  # noqa: E402
from LiverLesionCADLib.classify import (classify_scene, lesions_from_nodes, load_liver_model,  # noqa: E402
                                        phase_tags, result_rows)
from LiverLesionCADLib.phase_nodes import phase_nodes_from_scene  # noqa: E402
from slicercad.engine.registry import BUNDLED_DIR  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from slicercad.synth.study import write_phantom_study  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402

torch.set_num_threads(1)
ACQUISITION_WORDS = ("field_strength_t", "b_value")
TRAINED = {"field_strength_t": [3.0], "b_value": [800.0]}


def _study(folder, field_strength=None):
    truth = write_phantom_study(folder, "liver_mri", seed=5)
    if field_strength is not None:                  # the same study as a 1.5 T scanner writes it
        for path in Path(folder).rglob("*"):
            if path.is_file():
                ds = pydicom.dcmread(path)
                ds.MagneticFieldStrength = field_strength
                ds.save_as(path)
    return truth


def _classify(scene, folder, truth):
    nodes = phase_nodes_from_scene(list(load_study(scene, folder).volume_nodes.values()))
    les = truth["lesions"][0]
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    ras = lps_to_ras(les["center_lps"])
    points.AddControlPoint(ras.tolist(), "L1")
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L1 diameter")
    line.AddControlPoint((ras - [les["diameter_mm"] / 2, 0, 0]).tolist())
    line.AddControlPoint((ras + [les["diameter_mm"] / 2, 0, 0]).tolist())
    model, card = load_liver_model(BUNDLED_DIR / "liver_lesion_demo.json")
    card["input_spec"]["training_distribution"]["acquisition_seen"] = TRAINED
    results, table, _ = classify_scene(model, card, nodes, lesions_from_nodes(points, line), overlay=None)
    return nodes, results, result_rows(results, card)


@pytest.mark.parametrize("field_strength", [1.5, None])
def test_field_strength_and_b_value_read_from_dicom_warn_only_when_unseen(scene, tmp_path, field_strength):
    truth = _study(tmp_path, field_strength)
    nodes, (result,), (row,) = _classify(scene, tmp_path, truth)
    tags = phase_tags(nodes)
    assert tags["DWI"]["DiffusionBValue"] == 800.0 and "DiffusionBValue" not in tags["ADC"]
    assert result["acquisition"]["field_strength_t"] == (field_strength or 3.0)
    assert result["acquisition"]["b_value"] == 800.0                       # from the DWI series, not the ADC
    warned = [w for w in result["warnings"] if any(k in w for k in ACQUISITION_WORDS)]
    summary = workflow.result_summary([result])
    if field_strength == 1.5:
        assert any("field_strength_t=1.5 was not seen" in w for w in warned) and "field_strength_t=1.5" in summary
        assert "field_strength_t=1.5" in row["warnings"]
    else:
        assert warned == []
    assert "1e-6" in row["notes"] and "1e-6" in summary                   # the ADC unit note reaches the panel
    assert row["attention_source"] == "diameter"
