"""RenalMassCAD results as DICOM on one phase's series: each mass as a sphere ROI of its measured diameter at its
centre in a SEG ("<id> sphere", coded Mass, finding site kidney, SEMIAUTOMATIC ``terms.SPHERE_ROI``: the
person's measurement, not the model's), and a TID 1500 SR with the model as algorithm: the centre (SCOORD3D),
the diameter (two-point polyline), the combined probability as the class probabilities, the call by the model's
cut-off as the Finding (benign: SCT 3898006 "Neoplasm, benign", malignant: 86049000 "Neoplasm, Primary"), the
per-phase and multi-phase CNN probabilities and the cut-off as model scores, and TID 1411 referencing the
segment. A flagged mass (> 4 cm, fat, non-enhancing) is an unscored Mass (SCT 4147007) with its status as a
qualitative evaluation; the flags also go into the case-level status text."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError, PhaseError

REFERENCE_PHASE = "nephrographic"


def renal_finding(row: dict, mass, segment_number: int | None, volume_mm3: float | None):
    """The SR row of one ``renal.inference.assess_masses`` result and its ``Lesion`` (segment: a sphere ROI)."""
    from .sr import LesionFinding

    centre = tuple(float(v) for v in mass.center_lps())
    if row.get("status") != "scored":
        why = "; ".join(row.get("flags") or []) or "no reason given"
        return LesionFinding(str(row["mass_id"]), centre, float(row["diameter_mm"]), "mass", {}, segment_number,
                             volume_mm3, site="kidney", status=f"{row.get('status', 'not scored')}: {why}"[:64],
                             sphere_roi=True)
    p = float(row["p_combined"])
    scores = {f"P(malignant) {m}": float(v) for m, v in row["probabilities"].items()}
    scores[f"cutoff {row['model_used']}"] = float(row["cutoff"])
    return LesionFinding(str(row["mass_id"]), centre, float(row["diameter_mm"]), str(row["call"]),
                         {"benign": 1.0 - p, "malignant": p}, segment_number, volume_mm3, site="kidney",
                         scores=scores, sphere_roi=True)


def _status(rows) -> str:
    parts = []
    for r in rows:
        if r.get("status") == "scored":
            parts.append(f"{r['mass_id']}: scored ({r['model_used']} model, call {r['call']} at cut-off "
                         f"{float(r['cutoff']):.3f})")
        else:
            parts.append(f"{r['mass_id']}: {r.get('status', 'not scored')} ({'; '.join(r.get('flags') or [])})")
    return "; ".join(parts)


def write_renal_results(rows, masses, image, source_files, out_folder, card: dict) -> dict:
    """Write ``masses.seg.dcm`` + ``report.sr.dcm`` for ``rows`` (assess_masses results, one per ``masses``
    Lesion, same order) on ``image`` (the reference phase, the grid of ``source_files``)."""
    from .seg import sphere_segment, write_seg
    from .sr import write_measurement_report
    from .terms import algorithm_from_card

    rows, masses = list(rows), list(masses)
    if not rows or len(rows) != len(masses):
        raise InputError(f"{len(rows)} result(s) for {len(masses)} mass(es)", "masses")
    algorithm = algorithm_from_card(card)
    segments, findings = [], []
    for row, mass in zip(rows, masses):
        if str(row["mass_id"]) != str(mass.lesion_id):
            raise InputError(f"result {row['mass_id']!r} is not for mass {mass.lesion_id!r}", "masses")
        sphere = sphere_segment(image, mass.center_lps(), mass.diameter_mm, str(mass.lesion_id), "mass", "kidney")
        if sphere is not None:
            segments.append(sphere[0])
        findings.append(renal_finding(row, mass, len(segments) if sphere else None, sphere and sphere[1]))
    out = Path(out_folder)
    seg = None if not segments else write_seg(segments, image, source_files, out / "masses.seg.dcm",
                                              series_description="SlicerCAD renal mass ROIs (research use)")
    notes = sorted({n for r in rows for n in r.get("notes", []) if "research use" not in n})
    synthetic = card.get("training_data", {}).get("synthetic")
    sr = write_measurement_report(out / "report.sr.dcm", findings, image, source_files, algorithm, seg_path=seg,
                                  case_texts={"status": _status(rows), "warnings": " | ".join(notes)},
                                  notice="model trained on synthetic data" if synthetic else "",
                                  series_description="SlicerCAD renal mass report (research use)")
    return {"seg": seg, "sr": sr, "findings": findings}


def renal_results(study_folder, masses, out_folder, card_path, *, clinical: dict | None = None,
                  reference_phase: str = REFERENCE_PHASE, protocol: str = "renal_ct") -> dict:
    """Assess ``masses`` (``liver.roi.Lesion``) of the 4-phase CT study in ``study_folder`` with the renal model
    at ``card_path`` (age/sex from the tags unless ``clinical`` {"age_years", "male"} is given) and write the
    SEG + SR on the ``reference_phase`` series. Returns {"seg", "sr", "findings", "rows"}."""
    from ..engine.registry import load_model
    from ..renal import task  # noqa: F401  (registers the renal tasks)
    from ..renal.inference import BUNDLE_TASK, assess_masses
    from ..renal.study_io import load_renal_study

    masses = list(masses)
    if not masses:
        raise InputError("no masses to report", "masses")
    bundle, card = load_model(Path(card_path), task=BUNDLE_TASK)
    study = load_renal_study(study_folder, protocol)
    if reference_phase not in study.images:
        raise PhaseError(f"no {reference_phase} series to reference (phases {sorted(study.images)})",
                         str(study_folder))
    info = {k: v for k, v in study.clinical.items() if k in ("age_years", "male")}
    info.update({k: v for k, v in (clinical or {}).items() if v is not None})
    rows = assess_masses(bundle, card, study.images, masses, {m.lesion_id: info for m in masses}, with_cam=False)
    out = write_renal_results(rows, masses, study.images[reference_phase], study.files[reference_phase], out_folder,
                              card)
    return {**out, "rows": rows}
