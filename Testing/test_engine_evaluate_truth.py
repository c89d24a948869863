"""From results to a report: the results CSVs that ``slicercad liver classify`` and the panel / batch
script write (``p_<class>``, lesion id) joined with a truth list, CIs resampling whole patients."""
import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib.classify import result_rows  # noqa: E402
from slicercad.engine import evaluate_cli  # noqa: E402
from slicercad.engine.evaluate_cli import evaluate_file  # noqa: E402
from slicercad.errors import InputError  # noqa: E402
from slicercad.liver.inference import write_results_csv  # noqa: E402

CLASSES = ["cyst", "hemangioma", "metastasis"]


def _results(n_patients=40, per_patient=3, seed=0):
    """Classifier results shaped as ``classify_lesions`` returns them, and the truth behind them."""
    rng = np.random.default_rng(seed)
    results, truth = [], []
    for k in range(n_patients * per_patient):
        label = int(rng.choice(3, p=[0.2, 0.2, 0.6]))
        logits = rng.normal(size=3)
        logits[label] += 1.5
        p = np.exp(logits) / np.exp(logits).sum()
        lid, diameter = f"L{k:03d}", float(rng.uniform(4, 35))
        results.append({"lesion_id": lid, "predicted_class": CLASSES[int(p.argmax())],
                        "probabilities": dict(zip(CLASSES, p.tolist())), "diameter_mm": diameter,
                        "size_bin": "", "padded": False, "warnings": [], "notice": "SYNTHETIC",
                        "provenance": {"parameters": {"alpha": 0.1, "phases": ["arterial"]},
                                       "model_sha256": "0" * 64, "synthetic_training_data": True}})
        truth.append({"lesion_id": lid, "label": CLASSES[label], "patient": f"P{k // per_patient:02d}",
                      "size_mm": round(diameter, 1)})
    return results, truth


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _cli(argv):
    parser = argparse.ArgumentParser()
    evaluate_cli.add_arguments(parser)
    return evaluate_cli.run(parser.parse_args(argv))


def test_classify_results_and_truth_list_give_a_patient_grouped_table_1(tmp_path):
    results, truth = _results()
    preds = write_results_csv(tmp_path / "results.csv", results, CLASSES)    # `slicercad liver classify --out`
    truth_csv = _write_csv(tmp_path / "truth.csv", truth)
    assert _cli(["--predictions", str(preds), "--truth", str(truth_csv), "--out", str(tmp_path / "report"),
                 "--n-boot", "200", "--synthetic"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    y = np.array([CLASSES.index(t["label"]) for t in truth])
    p = np.array([[r["probabilities"][c] for c in CLASSES] for r in results])
    assert metrics["classes"] == CLASSES and metrics["resampling_unit"] == "patient"
    assert metrics["n_patients"] == 40 and metrics["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-3)
    assert [b["bin"] for b in metrics["by_size"]] == ["<10 mm", "10–20 mm", "≥20 mm"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "resampling whole patients (40 patients" in md and "95% confidence intervals" in md
    lesion_level = evaluate_file(preds, truth=truth_csv, n_boot=200, group_by="none")
    assert lesion_level["resampling_unit"] == "case" and lesion_level["accuracy"] == metrics["accuracy"]


def test_panel_and_batch_rows_join_by_their_lesion_column(tmp_path):
    results, truth = _results(n_patients=20)
    rows = result_rows(results, {"name": "liver"})                          # panel table / Scripts/liver_batch.py
    assert "lesion" in rows[0] and "p_cyst" in rows[0]
    preds = _write_csv(tmp_path / "batch.csv", [dict(r, study="S1") for r in rows])
    truth_csv = _write_csv(tmp_path / "truth.csv", [{k: t[k] for k in ("lesion_id", "label", "patient")}
                                                    for t in truth])
    m = evaluate_file(preds, truth=truth_csv, n_boot=50)
    assert m["n"] == 60 and m["n_patients"] == 20
    assert sum(b["n"] for b in m["by_size"]) == 60                          # sizes from the rows' diameter_mm
    by_study = evaluate_file(preds, truth=truth_csv, n_boot=50, group_by="study")
    assert by_study["n_patients"] == 1


def _expect(tmp_path, preds_rows, truth_rows, match, **kw):
    preds = _write_csv(tmp_path / "p.csv", preds_rows)
    truth = _write_csv(tmp_path / "t.csv", truth_rows)
    with pytest.raises(InputError, match=match):
        evaluate_file(preds, truth=truth, n_boot=20, **kw)


def test_bad_joins_name_the_file_row_and_column(tmp_path):
    pred = [{"lesion_id": f"L{i}", "p_a": 0.7, "p_b": 0.3} for i in range(3)]
    truth = [{"lesion_id": f"L{i}", "label": "a", "patient": f"P{i}"} for i in range(3)]
    _expect(tmp_path, pred + [dict(pred[0], lesion_id="L9")], truth,
            r"p\.csv row 4: lesion id 'L9' is not in the truth")
    _expect(tmp_path, pred, truth + [dict(truth[0], lesion_id="L7")],
            r"t\.csv: 1 lesion id\(s\) have no prediction.*'L7'")
    _expect(tmp_path, pred, truth + [truth[1]], r"t\.csv row 4: lesion id 'L1' is listed twice")
    _expect(tmp_path, pred + [pred[2]], truth, r"p\.csv row 4: lesion id 'L2' appears twice")
    _expect(tmp_path, [dict(pred[0], p_a="high")] + pred[1:], truth,
            r"p\.csv joined with .*t\.csv row 1: 'p_a' must be a number")
    _expect(tmp_path, pred, [dict(truth[0], label="")] + truth[1:], r"t\.csv row 1: lesion 'L0' has no 'label'")
    _expect(tmp_path, pred, [dict(truth[0], label="c")] + truth[1:], r"row 1: 'y_true' 'c' is not one of the classes")
    _expect(tmp_path, [{k: v for k, v in r.items() if k != "lesion_id"} for r in pred], truth,
            r"p\.csv row 1: no lesion id")
    _expect(tmp_path, pred, [dict(truth[0], patient="")] + truth[1:], r"row 1: --group-by column 'patient' is empty")
    _expect(tmp_path, pred, truth, r"--group-by column 'site' is not in the rows", group_by="site")
