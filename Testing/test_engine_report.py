"""Evaluation report files and the ``slicercad evaluate`` command."""
import argparse
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.engine import evaluate_cli
from slicercad.engine.evaluate_cli import evaluate_file
from slicercad.engine.metrics import evaluate_classification, evaluate_regression
from slicercad.engine.report import SYNTHETIC_BANNER, write_report
from slicercad.errors import InputError

CLASSES = ["cyst", "hemangioma", "metastasis"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(argv):
    """Run the evaluate sub-command as ``slicercad evaluate`` would."""
    parser = argparse.ArgumentParser()
    evaluate_cli.add_arguments(parser)
    return evaluate_cli.run(parser.parse_args(argv))


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.2, 0.2, 0.6])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True), rng.uniform(3, 40, n)


def test_classification_report_files(tmp_path):
    y, p, sizes = _data()
    metrics = evaluate_classification(y, p, CLASSES, sizes_mm=sizes, n_boot=50)
    paths = write_report(metrics, tmp_path / "rep", "Liver lesions", synthetic=True)
    saved = json.loads(paths["metrics"].read_text())
    assert saved["synthetic"] is True and saved["accuracy"] == pytest.approx(metrics["accuracy"])
    md = paths["markdown"].read_text()
    html = paths["html"].read_text()
    assert SYNTHETIC_BANNER in md and "SYNTHETIC DATA" in html
    assert "95% confidence intervals: percentile bootstrap, 50 resamples" in md and "resampling single cases" in md
    assert "majority-class baseline" in md and "balanced accuracy" in md and "≥20 mm" in md
    assert f"{metrics['balanced_accuracy']:.3f}" in md
    names = {p.name for p in paths["plots"]}
    assert names == {"confusion_matrix.png", "roc.png", "reliability.png", "size_bins.png"}
    for plot in paths["plots"]:
        assert plot.read_bytes()[:8] == PNG_MAGIC
        assert f'src="{plot.name}"' in html and f"]({plot.name})" in md
    assert not list((tmp_path / "rep").glob(".*tmp*"))


def test_real_data_report_has_no_banner(tmp_path):
    y, p, _ = _data(seed=1)
    paths = write_report(evaluate_classification(y, p, CLASSES, n_boot=0), tmp_path, "t", synthetic=False)
    assert "SYNTHETIC" not in paths["markdown"].read_text()
    assert "size_bins.png" not in {q.name for q in paths["plots"]}


def test_regression_report(tmp_path):
    t = np.linspace(0, 10, 40)
    metrics = evaluate_regression(t, t + 0.5, n_boot=20)
    paths = write_report(metrics, tmp_path, "BMD", synthetic=True)
    assert [q.name for q in paths["plots"]] == ["bland_altman.png"]
    assert "0.500" in paths["markdown"].read_text()
    with pytest.raises(InputError, match="task"):
        write_report({"task": "ranking"}, tmp_path, "x", synthetic=False)


def test_cli_csv_and_jsonl(tmp_path):
    y, p, sizes = _data(seed=2)
    csv_path = tmp_path / "preds.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["y_true"] + [f"prob_{c}" for c in CLASSES] + ["size_mm"])
        for yi, pi, si in zip(y, p, sizes):
            w.writerow([CLASSES[yi], *pi.tolist(), si])
    jsonl = tmp_path / "preds.jsonl"
    jsonl.write_text("".join(json.dumps({"y_true": CLASSES[yi], "proba": dict(zip(CLASSES, pi.tolist())),
                                         "size_mm": si}) + "\n" for yi, pi, si in zip(y, p, sizes)))
    a = evaluate_file(csv_path, n_boot=30)
    b = evaluate_file(jsonl, n_boot=30)
    assert a["classes"] == CLASSES and a["accuracy"] == b["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert _cli(["--predictions", str(csv_path), "--out", str(tmp_path / "out"), "--n-boot", "30",
                 "--synthetic"]) == 0
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "metrics.json").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl.read_text().splitlines()[0] + "\n{oops\n")
    with pytest.raises(InputError, match="line 2"):
        evaluate_file(bad)
    with pytest.raises(InputError, match="bad.jsonl line 2"):
        _cli(["--predictions", str(bad), "--out", str(tmp_path / "o2")])
    assert not (tmp_path / "o2").exists()


def test_cli_segmentation_masks(tmp_path):
    ref = np.zeros((10, 20, 20), np.uint8)
    ref[3:7, 5:12, 5:12] = 1
    for name, arr in [("ref.nrrd", ref), ("pred.nrrd", np.roll(ref, 1, axis=2))]:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.5, 0.5, 2.0))
        sitk.WriteImage(img, str(tmp_path / name))
    (tmp_path / "seg.jsonl").write_text(json.dumps({"pred_mask": "pred.nrrd", "true_mask": "ref.nrrd"}) + "\n")
    m = evaluate_file(tmp_path / "seg.jsonl")
    assert m["task"] == "segmentation"
    assert m["cases"][0]["hd95_mm"] == pytest.approx(0.5)  # one voxel along x at 0.5 mm


def test_a_patient_column_makes_the_cis_resample_patients_by_default(tmp_path):
    y, p, sizes = _data(seed=3)
    rows = [{"y_true": CLASSES[yi], **{f"prob_{c}": pi[k] for k, c in enumerate(CLASSES)}, "size_mm": si,
             "patient": f"P{i // 4}"} for i, (yi, pi, si) in enumerate(zip(y, p, sizes))]
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    grouped = evaluate_file(path, n_boot=100)
    assert grouped["resampling_unit"] == "patient" and grouped["n_patients"] == 30
    assert evaluate_file(path, n_boot=100, group_by="none")["resampling_unit"] == "case"
    md = write_report(grouped, tmp_path / "rep", "t", synthetic=True)["markdown"].read_text()
    assert "resampling whole patients (30 patients" in md and "| patients | 30 |" in md
    rows[5]["patient"] = ""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"preds.jsonl row 6: --group-by column 'patient' is empty"):
        evaluate_file(path, n_boot=100)
