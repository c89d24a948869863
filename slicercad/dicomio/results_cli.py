"""``slicercad results``: write a module's results as DICOM SEG + TID 1500 SR, or read one back."""
from __future__ import annotations

import json

HELP = ("results as DICOM: 'liver' classifies a study's lesions with the bundled (or given) model and writes "
        "lesions.seg.dcm + report.sr.dcm on the study's series; 'read' prints a SEG's segments or an SR's rows")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="results_command", required=True)
    lv = sub.add_parser("liver", help="classify the lesions of a DICOM study and write SEG + SR")
    lv.add_argument("--study", required=True, help="folder holding one multi-phase liver MRI study")
    lv.add_argument("--lesions", required=True, help="lesion CSV or Slicer .mrk.json (as 'slicercad liver "
                                                     "classify')")
    lv.add_argument("--out", required=True, help="folder for lesions.seg.dcm and report.sr.dcm")
    lv.add_argument("--model", help="model card (default: the bundled SYNTHETIC demo model)")
    lv.add_argument("--reference-phase", default="hepatobiliary", help="series the SEG and SR reference")
    lv.add_argument("--anomaly-score", type=float, help="a case-level anomaly score to add (TID 1501)")
    lv.add_argument("--recommended-ti-ms", type=float, help="a case-level TI recommendation to add (TID 1501)")
    rd = sub.add_parser("read", help="print a SEG's segments or an SR's result rows as JSON")
    rd.add_argument("file")


def run(args) -> int:
    if args.results_command == "read":
        import dataclasses

        import pydicom

        modality = str(pydicom.dcmread(args.file, stop_before_pixels=True).get("Modality", ""))
        if modality == "SEG":
            from .seg import segment_info

            print(json.dumps(segment_info(args.file), indent=1))
        else:
            from .sr import read_measurement_report

            out = read_measurement_report(args.file)
            out["lesions"] = [dataclasses.asdict(x) for x in out["lesions"]]
            print(json.dumps(out, indent=1, default=str))
        return 0
    from ..liver.lesion_files import read_lesions
    from .results import liver_results

    lesions = read_lesions(args.lesions)
    case = {"anomaly_score": args.anomaly_score, "recommended_ti_ms": args.recommended_ti_ms}
    out = liver_results(args.study, lesions, args.out, card_path=args.model, reference_phase=args.reference_phase,
                        case_values={k: v for k, v in case.items() if v is not None})
    for row in out["rows"]:
        print(f"{row.lesion_id}: {row.predicted_class} ({row.probabilities[row.predicted_class]:.2f})")
    print(f"wrote {out['seg']} and {out['sr']} (research use; the bundled model is SYNTHETIC)")
    return 0
