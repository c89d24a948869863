"""``slicercad evaluate``: metrics and a report from a predictions file (CSV or JSON lines).

Rows, by task (found from the columns present):

- classification: ``y_true`` (class name) and either ``prob_<class>`` columns (CSV) or
  ``proba`` / ``probabilities`` as ``{class: p}`` or a list in ``--classes`` order (JSONL);
- regression: ``y_true`` and ``y_pred`` numbers;
- segmentation: ``pred_mask`` and ``true_mask`` image paths (relative to the file).

Any row may carry ``size_mm`` (lesion size) to get the by-size tables.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from . import progress
from .metrics import evaluate_classification, evaluate_regression, evaluate_segmentation
from .report import write_report

HELP = "evaluate predictions (CSV/JSONL) and write metrics.json + report.md/.html with plots"


def add_arguments(parser) -> None:
    parser.add_argument("--predictions", required=True, help="predictions file (.csv or .jsonl)")
    parser.add_argument("--out", required=True, help="output folder for the report")
    parser.add_argument("--title", default="SlicerCAD evaluation", help="report title")
    parser.add_argument("--classes", help="comma-separated class order (default: from the file)")
    parser.add_argument("--bins", default="10,20", help="lesion-size bin edges in mm (default 10,20)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--synthetic", action="store_true", help="mark the report as SYNTHETIC DATA")


def read_predictions(path) -> list[dict]:
    """Rows of a .csv or .jsonl predictions file as dicts (CSV values stay strings)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("predictions file not found", str(path))
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg})", f"{path} line {i}") from exc
            if not isinstance(row, dict):
                raise InputError("each line must be a JSON object", f"{path} line {i}")
            rows.append(row)
    else:
        raise InputError("expected a .csv or .jsonl predictions file", str(path))
    if not rows:
        raise InputError("no prediction rows", str(path))
    return rows


def _number(row, key, where) -> float:
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"'{key}' must be a number, got {row.get(key)!r}", where) from exc
    if not np.isfinite(value):
        raise InputError(f"'{key}' must be finite, got {value}", where)
    return value


def _sizes(rows, path):
    present = [r.get("size_mm") not in (None, "") for r in rows]
    if not any(present):
        return None
    if not all(present):
        missing = present.index(False)
        raise InputError("'size_mm' is given for some rows but missing here", f"{path} row {missing + 1}")
    return [_number(r, "size_mm", f"{path} row {i + 1}") for i, r in enumerate(rows)]


def _classification_inputs(rows, path, classes):
    first = rows[0]
    if classes is None:
        if "proba" in first or "probabilities" in first:
            p0 = first.get("proba", first.get("probabilities"))
            if not isinstance(p0, dict):
                raise InputError("give --classes when probabilities are a list", f"{path} row 1")
            classes = list(p0)
        else:
            classes = [k[len("prob_"):] for k in first if k.startswith("prob_")]
    proba = []
    for i, row in enumerate(rows):
        where = f"{path} row {i + 1}"
        p = row.get("proba", row.get("probabilities"))
        if p is None:
            p = {c: row.get(f"prob_{c}") for c in classes}
        if isinstance(p, list):
            if len(p) != len(classes):
                raise InputError(f"{len(p)} probabilities for {len(classes)} classes {classes}", where)
            p = dict(zip(classes, p))
        proba.append([_number(p, c, where) for c in classes])
    return [r.get("y_true") for r in rows], np.asarray(proba), classes


def _read_mask(path: Path, where):
    if not path.is_file():
        raise InputError(f"mask file not found: {path.name}", where)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read mask {path.name}", where) from exc
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing()))


def evaluate_file(path, classes=None, bins=(10, 20), n_boot=1000, seed=0) -> dict:
    """Metrics for a predictions file; the task follows from the columns of its first row."""
    rows = read_predictions(path)
    sizes = _sizes(rows, path)
    first = rows[0]
    if "pred_mask" in first:
        preds, refs, spacings = [], [], []
        for i, row in enumerate(rows):
            where = f"{path} row {i + 1}"
            pa, sp = _read_mask(Path(path).parent / str(row.get("pred_mask")), where)
            ta, st = _read_mask(Path(path).parent / str(row.get("true_mask")), where)
            if pa.shape != ta.shape or not np.allclose(sp, st, rtol=1e-4):
                raise InputError(f"predicted and reference masks differ in grid: {pa.shape} vs {ta.shape}", where)
            preds.append(pa)
            refs.append(ta)
            spacings.append(sp)
        return evaluate_segmentation(preds, refs, spacings, sizes_mm=sizes, bins=bins)
    if "y_pred" in first:
        t = [_number(r, "y_true", f"{path} row {i + 1}") for i, r in enumerate(rows)]
        e = [_number(r, "y_pred", f"{path} row {i + 1}") for i, r in enumerate(rows)]
        return evaluate_regression(t, e, sizes_mm=sizes, bins=bins, n_boot=n_boot, seed=seed)
    if "y_true" not in first:
        raise InputError("rows need 'y_true' with 'prob_<class>'/'proba', 'y_pred', or 'pred_mask'", f"{path} row 1")
    y, proba, classes = _classification_inputs(rows, path, classes)
    return evaluate_classification(y, proba, classes, sizes_mm=sizes, bins=bins, n_boot=n_boot, seed=seed)


def run(args) -> int:
    try:
        bins = tuple(float(b) for b in args.bins.split(","))
    except ValueError as exc:
        raise InputError(f"expected comma-separated numbers, got {args.bins!r}", "--bins") from exc
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    progress.emit("evaluate", fraction=0.0, message=f"reading {Path(args.predictions).name}")
    metrics = evaluate_file(args.predictions, classes=classes, bins=bins, n_boot=args.n_boot, seed=args.seed)
    progress.emit("evaluate", fraction=0.6, message="writing report")
    paths = write_report(metrics, args.out, args.title, synthetic=args.synthetic)
    progress.emit("evaluate", fraction=1.0, message=f"report: {paths['html']}")
    return 0
