"""``slicercad ti``: correct TI scouts (DICOM or images) into JSON/CSV records, or reproduce the
SYNTHETIC evaluation table."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..atomic import write_json, write_text
from ..errors import InputError

HELP = "cardiac LGE inversion time from a TI scout: correct series (CNN + physics), or reproduce the synthetic table"
DEFAULT_MODEL = "ti_offset_demo"
CSV_FIELDS = ("series_instance_uid", "null_ti_ms", "blood_null_ti_ms", "recommended_ti_ms",
              "recommended_uncertainty_ms", "uncertainty_ms", "method", "ti_scale", "n_frames", "warnings")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="ti_command", required=True)
    c = sub.add_parser("correct", help="one record per TI-scout series under PATH")
    c.add_argument("path", help="DICOM file/folder, or an image folder/file with --ti")
    c.add_argument("--ti", help="comma-separated TIs (ms), one per image in name order (images only)")
    c.add_argument("--first-ti", type=float, help="TI (ms) of the first frame when only TriggerTime is present")
    c.add_argument("--model", default="bundled", help="model card (.json); 'bundled' = Resources/Models/"
                   f"{DEFAULT_MODEL}.json; 'none' = physics only")
    c.add_argument("--json", required=True, help="records (JSON list) to write")
    c.add_argument("--csv", help="also write a CSV with one row per series")
    c.add_argument("--rr", type=float, help="RR interval (ms), overrides NominalInterval/HeartRate")
    c.add_argument("--every-rr", type=int, help="LGE inverts every 1 or 2 RR (default 2)")
    c.add_argument("--minutes-to-lge", type=float, help="minutes from the scout to the LGE (default 2)")
    r = sub.add_parser("reproduce", help="in-range/under/over table for CNN, physics, fused on the SYNTHETIC phantom")
    r.add_argument("--out", required=True, help="folder for results.json and results.md")
    r.add_argument("--n-train", type=int, help="SYNTHETIC training patients (default: the task's)")
    r.add_argument("--n-test", type=int, default=100, help="SYNTHETIC test patients (one scout each)")
    r.add_argument("--epochs", type=int, help="training epochs (default: the task's recipe)")
    r.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch (checks the pipeline only)")


def load_default_model(spec):
    """(model, card) or (None, None) for 'none'."""
    if spec in (None, "none"):
        return None, None
    from ..engine.registry import BUNDLED_DIR, load_model
    from . import task  # noqa: F401  (registers the TI tasks)

    path = Path(BUNDLED_DIR) / f"{DEFAULT_MODEL}.json" if spec == "bundled" else Path(spec)
    return load_model(path)


def csv_text(records) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for rec in records:
        w.writerow({**rec, "warnings": " | ".join(rec["warnings"])})
    return buf.getvalue()


def correct_path(path, ti=None, first_ti=None, model=None, card=None, rule=None) -> list:
    from .correct import correct_scout
    from .scout import load_scout_folder

    scouts = load_scout_folder(path, ti, first_ti)
    return [correct_scout(s, model, card, rule=rule) for s in scouts]


def run(args) -> int:
    if args.ti_command == "reproduce":
        from .evaluate import reproduce

        result = reproduce(args.out, args.n_train, args.n_test, args.epochs, args.smoke)
        print((Path(args.out) / "results.md").read_text())
        print(f"runtime {result['runtime_s']} s")
        return 0
    if args.ti is not None and args.first_ti is not None:
        raise InputError("--first-ti is for DICOM with TriggerTime only; with images give every TI in --ti", "--first-ti")
    rule = {k: v for k, v in (("rr_ms", args.rr), ("every_rr", args.every_rr), ("minutes_to_lge", args.minutes_to_lge))
            if v is not None}
    model, card = load_default_model(args.model)
    records = correct_path(args.path, args.ti, args.first_ti, model, card, rule)
    write_json(args.json, records)
    if args.csv:
        write_text(args.csv, csv_text(records))
    for rec in records:
        print(json.dumps({k: rec[k] for k in CSV_FIELDS if k != "warnings"}))
    return 0
