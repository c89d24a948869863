"""``slicercad phantom OUT [--kind K] [--seed N] [--same-descriptions] [--oblique DEG]``: write a
SYNTHETIC multi-phase DICOM study and its ground truth, then show the phase assignment of it."""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_json
from ..dicom.scan import scan_folder
from ..phases import assign_phases
from .study import KINDS, write_phantom_study

HELP = "write a SYNTHETIC multi-phase phantom study (DICOM + truth JSON) and assign its phases"


def add_arguments(parser) -> None:
    parser.add_argument("out", type=Path, help="folder for the DICOM series and phantom_truth.json")
    parser.add_argument("--kind", choices=KINDS, default="liver_mri", help="anatomy and protocol of the study")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantom (same seed, same study)")
    parser.add_argument("--same-descriptions", action="store_true",
                        help="one SeriesDescription for every dynamic phase (timing decides)")
    parser.add_argument("--oblique", type=float, default=0.0, help="slice tilt about left-right, degrees")


def run(args) -> int:
    dicom = args.out / "dicom"
    info = write_phantom_study(dicom, args.kind, args.seed, same_descriptions=args.same_descriptions,
                               oblique_deg=args.oblique)
    volumes = scan_folder(dicom).volumes()
    assignments = assign_phases([(v.volume_id, v.tags) for v in volumes])
    rows = []
    for volume, a in zip(volumes, assignments):
        truth = info["truth"].get(volume.tags.series_instance_uid)
        rows.append({"volume_id": a.volume_id, "series_description": volume.tags.series_description,
                     "phase": a.phase, "b_value": a.b_value, "confidence": a.confidence, "reason": a.reason,
                     "truth": truth})
        print(f"{volume.tags.series_description:<40} -> {str(a.phase):<16} {a.confidence:.2f}  "
              f"(truth {truth})  {a.reason}")
    write_json(args.out / "phantom_truth.json", {**info, "assignments": rows})
    n_right = sum(r["phase"] == r["truth"] for r in rows)
    print(f"{n_right}/{len(rows)} volumes assigned as the phantom's truth; SYNTHETIC data in {dicom}")
    return 0 if n_right == len(rows) else 1
