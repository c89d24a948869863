"""``slicercad scan FOLDER [--phases [--protocol P]] [--json OUT]``: list the studies, series and volumes
found in a folder and, with ``--phases``, each volume's contrast phase, confidence and reason."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..atomic import write_json
from ..liver.phases import hepatobiliary_agent_warning
from ..phases import PROTOCOLS, assign_phases
from .scan import ScanResult, StudyRecord, scan_folder

HELP = ("scan a DICOM folder (recursively, following links) and list studies, series and volumes; skipped files "
        "are counted; --phases adds each volume's contrast phase, confidence and reason")


def add_arguments(parser) -> None:
    parser.add_argument("folder", type=Path, help="folder to scan (loose files or a DICOMDIR tree; links followed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the listing to this JSON file")
    parser.add_argument("--strict", action="store_true", help="corrupt files and ambiguous series are errors")
    parser.add_argument("--phases", action="store_true", help="assign each volume a contrast phase, with the "
                                                              "confidence and reason")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="auto", help="phase protocol (with --phases)")


def study_phases(study: StudyRecord, protocol: str = "auto") -> dict:
    """{"volumes": [one row per volume: uids, description, modality, b-value, phase, confidence, reason],
    "warnings": [...]} for one study; warns when a liver MRI study's contrast agent is not gadoxetate."""
    pairs = [(v, s) for s in study.series for v in s.volumes]
    assignments = assign_phases([(v.volume_id, v.tags) for v, _ in pairs], protocol)
    rows = [{"study_instance_uid": study.study_instance_uid, "series_instance_uid": s.series_instance_uid,
             "volume_id": v.volume_id, "series_description": v.tags.series_description,
             "modality": v.tags.modality, "b_value": a.b_value if a.b_value is not None else v.tags.b_value,
             "contrast_bolus_agent": v.tags.contrast_bolus_agent, "phase": a.phase,
             "confidence": a.confidence, "reason": a.reason} for (v, s), a in zip(pairs, assignments)]
    mr = [v.tags for v, _ in pairs if v.tags.modality.upper() == "MR"]
    warning = hepatobiliary_agent_warning(t.contrast_bolus_agent for t in mr) \
        if mr and protocol in ("auto", "liver_mri") else None
    return {"volumes": rows, "warnings": [warning] if warning else []}


def as_dict(result: ScanResult, protocol: str | None = None) -> dict:
    """JSON-ready listing (paths as strings, times in seconds since midnight); with ``protocol`` each
    study also gets its ``phases`` (see ``study_phases``)."""
    return {
        "n_files": result.n_files,
        "empty_reason": result.empty_reason(),
        "skipped": [{"path": str(p), "reason": r} for p, r in result.skipped],
        "studies": [{
            "study_instance_uid": study.study_instance_uid,
            "patient_id": study.tags.patient_id,
            "study_date": study.tags.study_date,
            **({"phases": study_phases(study, protocol)} if protocol else {}),
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
    protocol = args.protocol if args.phases else None
    listing = as_dict(result, protocol)
    for study, record in zip(result.studies, listing["studies"]):
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
        if protocol:
            print(f"  phases ({protocol}):")
            for row in record["phases"]["volumes"]:
                b = f"  b={row['b_value']:g}" if row["b_value"] is not None else ""
                print(f"    {row['phase'] or '-':<14} {row['confidence']:.2f}  {row['series_instance_uid']}  "
                      f"'{row['series_description']}' {row['modality']}{b}  {row['reason']}")
            for w in record["phases"]["warnings"]:
                print(f"  warning: {w}")
    n_volumes = sum(len(s.volumes()) for s in result.studies)
    print(f"{result.n_files} files, {len(result.studies)} studies, {n_volumes} volumes, {len(result.skipped)} skipped")
    for reason, n in Counter(r for _, r in result.skipped).most_common():
        print(f"  skipped {n:4d}: {reason}")
    if listing["empty_reason"]:
        print(f"warning: nothing to load: {listing['empty_reason']}")
    if args.json is not None:
        write_json(args.json, listing)
    return 0
