"""``slicercad evaluate``: metrics and a report from a predictions file (CSV or JSON lines).

Rows, by task (found from the columns present):

- classification: ``y_true`` (class name) and either ``prob_<class>`` / ``p_<class>`` columns (CSV) or
  ``proba`` / ``probabilities`` as ``{class: p}`` or a list in ``--classes`` order (JSONL);
- regression: ``y_true`` and ``y_pred`` numbers;
- segmentation: ``pred_mask`` and ``true_mask`` image paths (relative to the file).

Rows may carry ``size_mm`` (else ``diameter_mm``) for the by-size tables and ``patient`` for CIs that
resample whole patients (``--group-by``). ``--truth`` joins the results CSV of ``slicercad liver
classify`` or ``Scripts/liver_batch.py`` (``lesion_id`` or ``lesion``, ``p_<class>``) with a truth
list (``lesion_id``, ``label`` or ``y_true``, ``patient``, optional ``size_mm``) by lesion id.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from . import progress
from .ci_settings import N_BOOT, SIZE_BIN_EDGES_MM

HELP = "evaluate predictions (CSV/JSONL) and write metrics.json + report.md/.html with plots"
ID_COLUMNS = ("lesion_id", "lesion")      # liver classify CSV / panel and batch script rows
PROB_PREFIXES = ("prob_", "p_")           # evaluate's own / liver classify, panel and batch script
SIZE_COLUMNS = ("size_mm", "diameter_mm")
TRUTH_COLUMNS = ("patient", "size_mm")    # carried from the truth list besides the label


def add_arguments(parser) -> None:
    parser.add_argument("--predictions", required=True, help="predictions file (.csv or .jsonl)")
    parser.add_argument("--out", required=True, help="output folder for the report")
    parser.add_argument("--title", default="SlicerCAD evaluation", help="report title")
    parser.add_argument("--classes", help="comma-separated class order (default: from the file)")
    parser.add_argument("--truth", help="truth list (CSV: lesion_id, label or y_true, patient[, size_mm]) "
                                        "joined with the predictions by lesion id")
    parser.add_argument("--group-by", help="column of patient ids: CIs resample whole patients "
                                           "(default: 'patient' when present; 'none' resamples cases)")
    parser.add_argument("--bins", default=",".join(f"{b:g}" for b in SIZE_BIN_EDGES_MM),
                        help="lesion-size bin edges in mm")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples for CIs")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--synthetic", action="store_true", help="mark the report as SYNTHETIC DATA")


def read_predictions(path, what: str = "predictions") -> list[dict]:
    """Rows of a .csv or .jsonl file as dicts (CSV values stay strings)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", str(path))
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
        raise InputError(f"expected a .csv or .jsonl {what} file", str(path))
    if not rows:
        raise InputError(f"no {what} rows", str(path))
    return rows


def _filled(value) -> bool:
    return value is not None and str(value).strip() != ""


def _lesion_id(row, where) -> str:
    value = next((str(row[k]).strip() for k in ID_COLUMNS if _filled(row.get(k))), None)
    if value is None:
        raise InputError(f"no lesion id: a '{ID_COLUMNS[0]}' or '{ID_COLUMNS[1]}' column is needed", where)
    return value


def join_truth(rows, path, truth_path) -> list[dict]:
    """Prediction rows with ``y_true`` (from ``label``/``y_true``), ``patient`` and ``size_mm`` of the
    truth list, matched by lesion id; every id must be in both files, once."""
    truth = {}
    for i, row in enumerate(read_predictions(truth_path, "truth"), start=1):
        where = f"{truth_path} row {i}"
        lid = _lesion_id(row, where)
        label = next((row[k] for k in ("label", "y_true") if _filled(row.get(k))), None)
        if label is None:
            raise InputError(f"lesion {lid!r} has no 'label' (or 'y_true')", where)
        if lid in truth:
            raise InputError(f"lesion id {lid!r} is listed twice", where)
        truth[lid] = {"y_true": label, **{k: row[k] for k in TRUTH_COLUMNS if _filled(row.get(k))}}
    joined, seen = [], set()
    for i, row in enumerate(rows, start=1):
        where = f"{path} row {i}"
        lid = _lesion_id(row, where)
        if lid in seen:
            raise InputError(f"lesion id {lid!r} appears twice; the join with the truth list needs unique ids",
                             where)
        if lid not in truth:
            raise InputError(f"lesion id {lid!r} is not in the truth list {truth_path}", where)
        seen.add(lid)
        joined.append({**row, **truth[lid]})
    unmatched = [lid for lid in truth if lid not in seen]
    if unmatched:
        raise InputError(f"{len(unmatched)} lesion id(s) have no prediction in {path}, e.g. {unmatched[0]!r}",
                         str(truth_path))
    return joined


def _number(row, key, where) -> float:
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"'{key}' must be a number, got {row.get(key)!r}", where) from exc
    if not np.isfinite(value):
        raise InputError(f"'{key}' must be finite, got {value}", where)
    return value


def _column(rows, path, names, what):
    """The first of ``names`` that any row fills (None if none does); a row leaving it empty is refused."""
    key = next((k for k in names if any(_filled(r.get(k)) for r in rows)), None)
    if key is None:
        return None
    missing = next((i for i, r in enumerate(rows, start=1) if not _filled(r.get(key))), None)
    if missing is not None:
        raise InputError(f"{what} column '{key}' is empty or absent here", f"{path} row {missing}")
    return key


def _sizes(rows, path):
    key = _column(rows, path, SIZE_COLUMNS, "size")
    return None if key is None else [_number(r, key, f"{path} row {i + 1}") for i, r in enumerate(rows)]


def _groups(rows, path, group_by):
    """Patient ids from column ``group_by`` (default 'patient' when present; 'none': no grouping)."""
    if group_by == "none":
        return None
    if group_by and not any(group_by in r for r in rows):
        raise InputError(f"--group-by column '{group_by}' is not in the rows", str(path))
    key = _column(rows, path, [group_by or "patient"], "--group-by")
    if key is None:
        import warnings

        warnings.warn(f"{path}: no 'patient' column (and no --group-by): CIs resample lesions, not patients; "
                      "with several lesions per patient they are too narrow -- add a patient column or pass "
                      "--group-by COLUMN (--group-by none to silence this)", UserWarning, stacklevel=2)
        return None
    return [str(r[key]).strip() for r in rows]


def _classification_inputs(rows, path, classes):
    first = rows[0]
    prefix = next((pre for pre in PROB_PREFIXES if any(k.startswith(pre) for k in first)), PROB_PREFIXES[0])
    if classes is None:
        if "proba" in first or "probabilities" in first:
            p0 = first.get("proba", first.get("probabilities"))
            if not isinstance(p0, dict):
                raise InputError("give --classes when probabilities are a list", f"{path} row 1")
            classes = list(p0)
        else:
            classes = [k[len(prefix):] for k in first if k.startswith(prefix)]
    proba = []
    for i, row in enumerate(rows):
        where = f"{path} row {i + 1}"
        if str(row.get("y_true")) not in classes and not isinstance(row.get("y_true"), int):
            raise InputError(f"'y_true' {row.get('y_true')!r} is not one of the classes {classes}", where)
        p = row.get("proba", row.get("probabilities"))
        if p is None:
            proba.append([_number(row, f"{prefix}{c}", where) for c in classes])
            continue
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


def evaluate_file(path, classes=None, bins=SIZE_BIN_EDGES_MM, n_boot=N_BOOT, seed=0, truth=None,
                  group_by=None) -> dict:
    """Metrics for a predictions file (joined with a ``truth`` list when given); the task follows from
    the columns of its first row. CIs resample the patients of column ``group_by`` (see ``_groups``)."""
    from .metrics import evaluate_classification, evaluate_regression, evaluate_segmentation

    rows = read_predictions(path)
    src = path
    if truth is not None:
        rows, src = join_truth(rows, path, truth), f"{path} joined with {truth}"
    sizes = _sizes(rows, src)
    boot = {"n_boot": n_boot, "seed": seed, "groups": _groups(rows, src, group_by)}
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
        return evaluate_segmentation(preds, refs, spacings, sizes_mm=sizes, bins=bins, **boot)
    if "y_pred" in first:
        t = [_number(r, "y_true", f"{src} row {i + 1}") for i, r in enumerate(rows)]
        e = [_number(r, "y_pred", f"{src} row {i + 1}") for i, r in enumerate(rows)]
        return evaluate_regression(t, e, sizes_mm=sizes, bins=bins, **boot)
    if "y_true" not in first:
        raise InputError("rows need 'y_true' with 'prob_<class>'/'p_<class>'/'proba', 'y_pred', or 'pred_mask' "
                         "(or give --truth)", f"{src} row 1")
    y, proba, classes = _classification_inputs(rows, src, classes)
    return evaluate_classification(y, proba, classes, sizes_mm=sizes, bins=bins, **boot)


def run(args) -> int:
    from .report import write_report

    try:
        bins = tuple(float(b) for b in args.bins.split(","))
    except ValueError as exc:
        raise InputError(f"expected comma-separated numbers, got {args.bins!r}", "--bins") from exc
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    progress.emit("evaluate", fraction=0.0, message=f"reading {Path(args.predictions).name}")
    metrics = evaluate_file(args.predictions, classes=classes, bins=bins, n_boot=args.n_boot, seed=args.seed,
                            truth=args.truth, group_by=args.group_by)
    progress.emit("evaluate", fraction=0.6, message="writing report")
    paths = write_report(metrics, args.out, args.title, synthetic=args.synthetic)
    progress.emit("evaluate", fraction=1.0, message=f"report: {paths['html']}")
    return 0
