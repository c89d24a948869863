"""``slicercad scan FOLDER [--json OUT]``: list the studies, series and volumes found in a folder."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..atomic import write_json
from .scan import ScanResult, scan_folder

HELP = "scan a DICOM folder (recursively) and list studies, series and volumes; skipped files are counted"


def add_arguments(parser) -> None:
    parser.add_argument("folder", type=Path, help="folder to scan (loose files or a DICOMDIR tree)")
    parser.add_argument("--json", type=Path, default=None, help="also write the listing to this JSON file")
    parser.add_argument("--strict", action="store_true", help="corrupt files and ambiguous series are errors")


def as_dict(result: ScanResult) -> dict:
    """JSON-ready listing (paths as strings, times in seconds since midnight)."""
    return {
        "n_files": result.n_files,
        "skipped": [{"path": str(p), "reason": r} for p, r in result.skipped],
        "studies": [{
            "study_instance_uid": study.study_instance_uid,
            "patient_id": study.tags.patient_id,
            "study_date": study.tags.study_date,
            "series": [{
                "series_instance_uid": series.series_instance_uid,
                "series_number": series.tags.series_number,
                "series_description": series.tags.series_description,
                "modality": series.tags.modality,
                "volumes": [{
                    "volume_id": v.volume_id, "kind": v.kind, "n_files": len(v.files), "n_frames": len(v.frames),
                    "split_key": {k: (str(x) if k == "file" else x) for k, x in v.split_key.items()},
                    "spacing_known": v.spacing_known, "photometric": v.photometric,
                    "warnings": v.warnings, "tags": v.tags.as_dict(),
                    "files": [str(p) for p in v.files],
                } for v in series.volumes],
            } for series in study.series],
        } for study in result.studies],
    }


def run(args) -> int:
    result = scan_folder(args.folder, strict=args.strict)
    for study in result.studies:
        print(f"study {study.study_instance_uid}  patient {study.tags.patient_id or '?'}  "
              f"date {study.tags.study_date or '?'}")
        for series in study.series:
            print(f"  series {series.tags.series_number}  {series.tags.modality}  "
                  f"'{series.tags.series_description}'  {series.series_instance_uid}")
            for v in series.volumes:
                split = ", ".join(f"{k}={x}" for k, x in v.split_key.items())
                print(f"    {v.kind:<10} {len(v.frames):4d} frames  {v.volume_id}" + (f"  [{split}]" if split else ""))
                for w in v.warnings:
                    print(f"      warning: {w}")
    n_volumes = sum(len(s.volumes()) for s in result.studies)
    print(f"{result.n_files} files, {len(result.studies)} studies, {n_volumes} volumes, {len(result.skipped)} skipped")
    for reason, n in Counter(r for _, r in result.skipped).most_common():
        print(f"  skipped {n:4d}: {reason}")
    if args.json is not None:
        write_json(args.json, as_dict(result))
    return 0
