"""Scripts/liver_batch.py in plain Python (slicer-core) on a SYNTHETIC DICOM study; lesion lists as
CSV with a coordinate-system column and as a Slicer .mrk.json (also read by the core without Slicer)."""
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from slicercad.engine.registry import save_model
from slicercad.errors import InputError
from slicercad.geometry import lps_to_ras
from slicercad.liver.lesion_files import read_lesions
from slicercad.liver.phases import PHASES
from slicercad.liver.task import LIVER_LESION, build_model, model_card
from slicercad.synth.study import write_phantom_study
from SlicerCADLib.markups import lesions_from_markups, save_markups_json

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CFG = {"channels": [8, 16, 16], "roi_px": 32}


def _batch_module():
    spec = importlib.util.spec_from_file_location("liver_batch", ROOT / "Scripts" / "liver_batch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    truth = write_phantom_study(root / "study", "liver_mri", seed=5)
    torch.manual_seed(0)
    card = save_model(build_model(LIVER_LESION.config(CFG)), model_card(CFG, 1.0, "liver-batch-test", {}), root / "m")
    return root, truth, card


def _write_csv(path, lesions, system):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["lesion_id", "x", "y", "z", "coordinate_system", "diameter_mm"])
        for i, les in enumerate(lesions):
            c = np.asarray(les["center_lps"], float)
            c = lps_to_ras(c) if system == "RAS" else c
            w.writerow([f"L{i + 1}", *c, system, les["diameter_mm"]])


def _write_mrk(scene, path, lesions):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    for i, les in enumerate(lesions):
        ras = lps_to_ras(np.asarray(les["center_lps"], float))
        points.AddControlPoint(ras.tolist(), f"M{i + 1}")
    save_markups_json(points, path, "RAS")
    lines = []
    for i, les in enumerate(lesions):
        line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"M{i + 1} diameter")
        ras = lps_to_ras(np.asarray(les["center_lps"], float))
        line.AddControlPoint((ras - [les["diameter_mm"] / 2, 0, 0]).tolist())
        line.AddControlPoint((ras + [les["diameter_mm"] / 2, 0, 0]).tolist())
        save_markups_json(line, path.with_name(f"line{i}.mrk.json"), "LPS")
        lines.append(line)
    return points, lines


def test_markups_json_read_without_slicer_matches_scene_reading(scene, inputs, tmp_path):
    _, truth, _ = inputs
    points, lines = _write_mrk(scene, tmp_path / "points.mrk.json", truth["lesions"])
    expected = lesions_from_markups(points, lines)
    merged = tmp_path / "all.mrk.json"
    doc = json.loads((tmp_path / "points.mrk.json").read_text())
    for i in range(len(lines)):
        doc["markups"] += json.loads((tmp_path / f"line{i}.mrk.json").read_text())["markups"]
    merged.write_text(json.dumps(doc))
    got = read_lesions(merged)
    assert [g.lesion_id for g in got] == [e.name for e in expected]
    for g, e in zip(got, expected):
        assert np.allclose(g.center_lps(), e.center_lps, atol=1e-3) and abs(g.diameter_mm - e.diameter_mm) < 1e-3
    with pytest.raises(InputError, match="no diameter") as info:
        read_lesions(tmp_path / "points.mrk.json")
    assert info.value.source == "M1"


def test_batch_csv_and_mrk_json_give_results_with_provenance_and_pngs(scene, inputs, tmp_path):
    root, truth, card_path = inputs
    lesions = truth["lesions"]
    _write_csv(tmp_path / "ras.csv", lesions, "RAS")
    _write_csv(tmp_path / "lps.csv", lesions, "LPS")
    out = tmp_path / "out"
    code = _batch_module().main(["--model", str(card_path), "--out", str(out),
                                 "--study", str(root / "study"), "--lesions", str(tmp_path / "ras.csv"),
                                 "--study", str(root / "study"), "--lesions", str(tmp_path / "lps.csv")])
    assert code == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * len(lesions)
    sha = json.loads(Path(card_path).read_text())["sha256"]
    for row in rows:
        assert row["model_sha256"] == sha and row["phases"].split() == list(PHASES) and row["alpha"] == "0.1"
        assert "synthetic" in row["notice"]
        assert "1e-6" in row["notes"] and row["attention_source"] == "diameter"   # ADC as scanners store it
        png = sitk.GetArrayFromImage(sitk.ReadImage(str(out / row["overlay_png"])))
        assert png.ndim == 3 and png.std() > 0
    half = len(lesions)
    for a, b in zip(rows[:half], rows[half:]):   # RAS and LPS lists of the same lesions agree
        assert a["class"] == b["class"] and a["p_cyst"] == b["p_cyst"]
    with pytest.raises(InputError, match="one list per study"):
        _batch_module().main(["--model", str(card_path), "--out", str(out), "--study", str(root / "study"),
                              "--study", str(root / "study"), "--lesions", str(tmp_path / "ras.csv")])
