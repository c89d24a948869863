"""A module's results written as DICOM beside (or into) the study: the liver lesions as a SEG of sphere ROIs
(one per lesion at its listed centre and diameter: "<id> sphere", SEMIAUTOMATIC, ``terms.SPHERE_ROI``, coded
as a lesion - the sphere is the person's measurement, not the model's output) plus a TID 1500 SR with the
classification (the model's name, version and sha256 on its findings) referencing those segments; case-level
values go into the same SR."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, PhaseError


@dataclass
class StudyPhases:
    """A scanned study's phase images, the files of each and one DICOM header per phase."""

    study_uid: str
    images: dict          # phase -> SimpleITK image
    files: dict           # phase -> [Path]
    headers: dict         # phase -> pydicom Dataset (no pixels)


def load_study_phases(folder, protocol: str = "liver_mri") -> StudyPhases:
    """Scan ``folder`` (one study), assign phases; one volume per phase by ``phases.best_by_phase`` (the most
    confident; DWI the highest b-value)."""
    import pydicom

    from ..dicom.scan import scan_folder
    from ..phases import assign_phases, best_by_phase

    scan = scan_folder(folder)
    if len(scan.studies) != 1:
        raise InputError(f"expected one study in the folder, found {len(scan.studies)}"
                         + (f" ({scan.empty_reason()})" if not scan.studies else ""), str(folder))
    study = scan.studies[0]
    volumes = {v.volume_id: v for v in study.volumes()}
    best = best_by_phase(assign_phases([(v.volume_id, v.tags) for v in volumes.values()], protocol))
    chosen = {p: (volumes[a.volume_id], a.b_value) for p, a in best.items() if p != "unknown"}
    images = {p: v.load() for p, (v, _) in chosen.items()}
    files = {p: list(v.files) for p, (v, _) in chosen.items()}
    headers = {p: pydicom.dcmread(str(v.files[0]), stop_before_pixels=True) for p, (v, _) in chosen.items()}
    return StudyPhases(study.study_instance_uid, images, files, headers)


def _volume_files(study: StudyPhases, phase: str, image) -> list:
    """The files of exactly the volume on ``image``'s grid (a DWI series holds several b-values)."""
    from ..dicom.read_tags import b_value
    import pydicom

    files = study.files[phase]
    if phase != "DWI":
        return files
    bs = {f: b_value(pydicom.dcmread(str(f), stop_before_pixels=True)) for f in files}
    top = max(v for v in bs.values() if v is not None)
    return [f for f, v in bs.items() if v == top]


def write_liver_results(results, lesions, image, source_files, out_folder, card: dict, *,
                        case_values: dict | None = None) -> dict:
    """Write ``lesions.seg.dcm`` (a sphere ROI per lesion; none when every sphere is smaller than a voxel) +
    ``report.sr.dcm`` for ``results`` (``liver.inference.classify_lesions``, one per ``lesions`` Lesion, same
    order, made by the model of ``card``) on ``image`` (the reference phase, the grid of ``source_files``).
    Returns {"seg", "sr", "rows" (LesionFinding)}."""
    from .seg import sphere_segment, write_seg
    from .sr import LesionFinding, write_measurement_report
    from .terms import algorithm_from_card

    results, lesions = list(results), list(lesions)
    if not results or len(results) != len(lesions):
        raise InputError(f"{len(results)} result(s) for {len(lesions)} lesion(s)", "lesions")
    for result, lesion in zip(results, lesions):
        if str(result["lesion_id"]) != str(lesion.lesion_id):
            raise InputError(f"result {result['lesion_id']!r} is not for lesion {lesion.lesion_id!r}", "lesions")
        made_by = result.get("provenance", {}).get("model_sha256")
        if card.get("sha256") and made_by and made_by != card["sha256"]:
            raise InputError(f"made by model {made_by[:12]}, not by the card's {card['sha256'][:12]}: classify "
                             "again with this model", str(lesion.lesion_id))
    segments, rows = [], []
    for lesion, result in zip(lesions, results):
        sphere = sphere_segment(image, lesion.center_lps(), lesion.diameter_mm, str(lesion.lesion_id), site="liver")
        if sphere is None:                          # smaller than a voxel: the SR still has it, without a segment
            rows.append(LesionFinding.from_liver_result(result, lesion))
            continue
        segments.append(sphere[0])
        rows.append(LesionFinding.from_liver_result(result, lesion, len(segments), sphere[1]))
    out = Path(out_folder)
    seg_path = None if not segments else write_seg(segments, image, source_files, out / "lesions.seg.dcm",
                                                   series_description="SlicerCAD liver lesion ROIs (research use)")
    notice = results[0].get("notice") or ""
    sr_path = write_measurement_report(out / "report.sr.dcm", rows, image, source_files, algorithm_from_card(card),
                                       seg_path=seg_path, case_values=case_values, notice=notice,
                                       series_description="SlicerCAD liver lesion report (research use)")
    return {"seg": seg_path, "sr": sr_path, "rows": rows}


def liver_results(study_folder, lesions, out_folder, *, card_path=None, reference_phase: str = "hepatobiliary",
                  case_values: dict | None = None) -> dict:
    """Classify ``lesions`` (``liver.roi.Lesion``) of the study in ``study_folder`` with the bundled (or given)
    model and write ``lesions.seg.dcm`` + ``report.sr.dcm`` into ``out_folder`` on the ``reference_phase``
    series (``write_liver_results``). Returns {"seg", "sr", "rows" (LesionFinding), "results",
    "source_series_uid", "study_uid"}."""
    from ..engine.registry import BUNDLED_DIR, load_model
    from ..liver import task  # noqa: F401  (registers the liver tasks)
    from ..liver.inference import classify_lesions

    lesions = list(lesions)
    if not lesions:
        raise InputError("no lesions to report", "lesions")
    model, card = load_model(Path(card_path) if card_path else BUNDLED_DIR / "liver_lesion_demo.json",
                             task="liver_lesion")
    study = load_study_phases(study_folder)
    if reference_phase not in study.images:
        raise PhaseError(f"the study has no {reference_phase} series to reference (phases {sorted(study.images)})",
                         str(study_folder))
    model_phases = [p for p in card["input_spec"]["phases"] if p != "attention"]
    images = {p: study.images[p] for p in model_phases if p in study.images}
    tags = {p: study.headers[p] for p in images}
    results = classify_lesions(model, card, images, lesions, tags=tags, with_cam=False)
    image = study.images[reference_phase]
    out = write_liver_results(results, lesions, image, _volume_files(study, reference_phase, image), out_folder,
                              card, case_values=case_values)
    return {**out, "results": results,
            "source_series_uid": str(study.headers[reference_phase].SeriesInstanceUID), "study_uid": study.study_uid}
