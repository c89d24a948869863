"""``slicercad results``: write a module's results as DICOM SEG + TID 1500 SR, or read one back."""
from __future__ import annotations

import json

HELP = ("results as DICOM SEG / Parametric Map / TID 1500 SR on the study's own series: 'liver' (lesion classes), "
        "'ti' (LGE TI recommendation), 'anomaly' (map, thresholded map, case score), 'renal' (mass probabilities); "
        "'read' prints a SEG's segments or an SR's rows")


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
    ti = sub.add_parser("ti", help="correct the TI scouts under a DICOM path and write one SR (TID 1501) each")
    ti.add_argument("--scout", required=True, help="DICOM file or folder with the TI scout series")
    ti.add_argument("--out", required=True, help="folder for ti.sr.dcm (ti-<n>.sr.dcm for several scouts)")
    ti.add_argument("--model", default="bundled", help="model card, 'bundled' or 'none' (physics only)")
    ti.add_argument("--first-ti", type=float, help="TI (ms) of the first frame when only TriggerTime is present")
    an = sub.add_parser("anomaly", help="score one series and write anomaly.seg.dcm, anomaly.pm.dcm, report.sr.dcm")
    an.add_argument("--study", required=True, help="folder holding one DICOM series (head CT or chest X-ray)")
    an.add_argument("--out", required=True, help="folder for the results")
    an.add_argument("--kind", choices=("head_ct", "cxr"), default="head_ct")
    an.add_argument("--model", help="model card (default: the bundled SYNTHETIC Glow for --kind)")
    rn = sub.add_parser("renal", help="assess renal masses of a 4-phase CT study and write masses.seg.dcm + "
                                      "report.sr.dcm")
    rn.add_argument("--study", required=True, help="folder holding one 4-phase renal CT study")
    rn.add_argument("--masses", required=True, help="mass CSV or Slicer .mrk.json (as the liver lesion list)")
    rn.add_argument("--model", required=True, help="renal model card (.json)")
    rn.add_argument("--out", required=True, help="folder for the results")
    rn.add_argument("--reference-phase", default="nephrographic", help="series the SEG and SR reference")
    rn.add_argument("--age", type=float, help="age in years (default: from the DICOM tags)")
    rn.add_argument("--sex", choices=("M", "F"), help="sex (default: from the DICOM tags)")
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
    if args.results_command in ("ti", "anomaly", "renal"):
        return _MODULES[args.results_command](args)
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


def _ti(args) -> int:
    from .results_ti import ti_results

    for item in ti_results(args.scout, args.out, args.model, args.first_ti):
        rec = item["record"]
        print(f"{rec['series_instance_uid']}: null {rec['null_ti_ms']} ms, recommended LGE TI "
              f"{rec['recommended_ti_ms']} ms (+/- {rec['uncertainty_ms']} ms, {rec['method']}) -> {item['sr']}")
    return 0


def _anomaly(args) -> int:
    from .results_anomaly import anomaly_results

    out = anomaly_results(args.study, args.out, args.kind, args.model)
    case = out["case"]
    print(f"score {case['anomaly_score']:.4f} ({case['anomaly_percentile']:.1f} percentile among normals); wrote "
          + ", ".join(str(p) for p in (out["seg"], out["pm"], out["sr"]) if p))
    return 0


def _renal(args) -> int:
    from ..liver.lesion_files import read_lesions
    from .results_renal import renal_results

    clinical = {"age_years": args.age, "male": None if args.sex is None else int(args.sex == "M")}
    out = renal_results(args.study, read_lesions(args.masses), args.out, args.model, clinical=clinical,
                        reference_phase=args.reference_phase)
    for row in out["rows"]:
        print(f"{row['mass_id']}: {row['status']}" + (f", {row['call']} (p {row['p_combined']:.2f})"
                                                      if row.get("status") == "scored" else ""))
    print(f"wrote {out['seg']} and {out['sr']} (research use)")
    return 0


_MODULES = {"ti": _ti, "anomaly": _anomaly, "renal": _renal}
