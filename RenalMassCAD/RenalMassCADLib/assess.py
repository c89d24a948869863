"""MRML <-> renal core: phase volumes, mass markups, clinical fields from DICOM, Assess, results table, Grad-CAM.

Imports ``slicer`` (through SlicerCADLib) but never Qt; every function takes its nodes explicitly. torch (through
``slicercad.renal.inference``) is imported only inside the functions that run a model, after the widget's
``SlicerCADLib.dependencies.ready_or_explain``.
"""
from __future__ import annotations

from slicercad.errors import DicomError, InputError, PhaseError
from slicercad.liver.roi import Lesion, roi_to_patient
from slicercad.phases import assign_phases, best_by_phase
from slicercad.renal.constants import PHASES, SIZE_LIMIT_MM
from slicercad.renal.patient import clinical_from_file
from SlicerCADLib.dicom_nodes import tags_for_volume_node, volume_files
from SlicerCADLib.markups import lesion_from_segment, lesions_from_markups, scene_line_nodes
from SlicerCADLib.overlays import show_float_overlay
from SlicerCADLib.tables import append_rows
from SlicerCADLib.volumes import volume_node_to_sitk

CAM_OVERLAY = "RenalMassCAD Grad-CAM"
TABLE_NAME = "RenalMassCAD results"


def _volume_nodes(scene):
    c = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    nodes = [c.GetItemAsObject(i) for i in range(c.GetNumberOfItems())]
    return [n for n in nodes if not n.IsA("vtkMRMLLabelMapVolumeNode")]


def phase_nodes_from_scene(scene, protocol: str = "renal_ct", overrides: dict | None = None) -> tuple:
    """({phase: volume node}, {phase: PhaseAssignment}) for the 4 renal phases among the scene's DICOM volumes
    (``protocol`` 'auto' lets the descriptions/timing decide; ``overrides``: {node id: phase})."""
    tagged = {}
    for node in _volume_nodes(scene):
        try:
            tagged[node.GetID()] = (node, tags_for_volume_node(node))
        except DicomError:
            continue
    if not tagged:
        raise DicomError("no volume node has a DICOM source to assign phases from", "scene")
    best = best_by_phase(assign_phases([(k, t) for k, (_, t) in tagged.items()], protocol, overrides))
    return ({p: tagged[best[p].volume_id][0] for p in PHASES if p in best},
            {p: best[p] for p in PHASES if p in best})


def _rescale_type(node) -> str:
    import pydicom

    try:
        return str(pydicom.dcmread(str(volume_files(node)[0]), stop_before_pixels=True).get("RescaleType", "") or "")
    except Exception:  # noqa: BLE001 - an unreadable header has no rescale type to check
        return ""


def check_phase_nodes(volume_nodes: dict) -> dict:
    """Refuse a missing phase, phases from different studies / patients, or a DICOM volume that is not CT in HU
    (Modality, RescaleType) -- when their DICOM tags say so; values are checked by ``inference.check_hu``."""
    missing = [p for p in PHASES if volume_nodes.get(p) is None]
    if missing:
        raise PhaseError(f"select a volume for every phase: missing {missing}", "phases")
    studies, patients = {}, {}
    for p, node in volume_nodes.items():
        try:
            tags = tags_for_volume_node(node)
        except DicomError:
            continue
        if tags.modality.upper() != "CT":
            raise InputError(f"the {p} volume is Modality {tags.modality or '?'!r}, not CT: the renal model reads "
                             "CT in HU", node.GetName())
        rescale = _rescale_type(node).strip().upper()
        if rescale not in ("", "HU"):
            raise InputError(f"the {p} volume has RescaleType {rescale!r}, not HU", node.GetName())
        studies.setdefault(tags.study_instance_uid, []).append(p)
        patients.setdefault(tags.patient_id, []).append(p)
    if len(patients) > 1:
        raise PhaseError(f"the phases come from different patients: {patients}", "phases")
    if len(studies) > 1:
        raise PhaseError(f"the phases come from different studies: {list(studies.values())}", "phases")
    return volume_nodes


def clinical_from_nodes(volume_nodes: dict) -> dict:
    """Age and sex from the first phase volume with a DICOM source (``slicercad.renal.patient``)."""
    for p in PHASES:
        node = volume_nodes.get(p)
        if node is None:
            continue
        try:
            return clinical_from_file(volume_files(node)[0])
        except DicomError:
            continue
    return {"age_years": None, "male": None, "age_source": "missing", "sex_source": "missing"}


def masses_from_nodes(points_node=None, lines_node=None) -> list:
    """Core ``Lesion`` masses from a fiducial node (centres) and line node(s) (diameters)."""
    out = []
    for mark in lesions_from_markups(points_node, lines_node):
        if mark.diameter_mm is None:
            raise InputError("no diameter: draw a line across the mass near its centre point", mark.name)
        out.append(Lesion(mark.name, tuple(mark.center_lps), float(mark.diameter_mm), "LPS").check())
    if not out:
        raise InputError("no mass marked: place a point and a diameter line on each mass", "masses")
    return out


def scene_line_nodes_for(scene) -> list:
    """Every markups line of the scene (each mass's diameter goes to its nearest centre point)."""
    return scene_line_nodes(scene)


def mass_from_segment_node(segmentation_node, segment_id: str, reference_volume_node) -> Lesion:
    """A mass from one segment: centroid and equivalent-sphere diameter on the reference volume's grid."""
    mark = lesion_from_segment(segmentation_node, segment_id, reference_volume_node)
    return Lesion(mark.name, tuple(mark.center_lps), float(mark.diameter_mm), "LPS").check()


def masses_from_segmentation(segmentation_node, reference_volume_node, segment_names: str = "") -> list:
    """One mass per segment (``mass_from_segment_node``); ``segment_names``: comma-separated names to take
    (empty: every segment)."""
    if segmentation_node is None or reference_volume_node is None:
        raise InputError("choose the segmentation and the nephrographic volume (the segments' reference grid)",
                         "massSegmentation")
    seg = segmentation_node.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    wanted = [n.strip() for n in str(segment_names or "").split(",") if n.strip()]
    if wanted:
        by_name = {seg.GetSegment(i).GetName(): i for i in ids}
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise InputError(f"no segment called {unknown} (segments: {sorted(by_name)})", segmentation_node.GetName())
        ids = [by_name[n] for n in wanted]
    if not ids:
        raise InputError("the segmentation has no segment: paint the mass first", segmentation_node.GetName())
    return [mass_from_segment_node(segmentation_node, i, reference_volume_node) for i in ids]


def result_rows(results, card: dict) -> list:
    rows = []
    for r in results:
        probs = r.get("probabilities", {})
        row = {"mass": r["mass_id"], "status": r["status"], "call": r.get("call", ""),
               "p_combined": round(float(r["p_combined"]), 4) if "p_combined" in r else None,
               "model_used": r.get("model_used", "")}
        row.update({f"p_{m}": round(float(probs[m]), 4) if m in probs else None for m in (*PHASES, "multiphase")})
        row.update({f"HU_{p}": round(float(r["hu"][p]), 1) for p in PHASES})
        row.update({f"dHU_{p}": round(float(r["delta_hu"][p]), 1) for p in PHASES[1:]})
        row.update({"diameter_mm": round(float(r["diameter_mm"]), 1),
                    "over_4cm": "yes" if r["diameter_mm"] > SIZE_LIMIT_MM else "no",
                    "padded_roi": "yes" if r["padded"] else "no",
                    "flags": "; ".join(r["flags"]), "notes": "; ".join(r["notes"]), "model": str(card.get("name", "")),
                    "model_sha256": str(r["provenance"]["model_sha256"]),
                    "synthetic_training_data": str(r["provenance"]["synthetic_training_data"])})
        rows.append(row)
    return rows


def show_cam(result, phase: str, reference_volume_node, opacity: float = 0.5):
    """One scored mass's Grad-CAM of ``phase`` on that phase's volume grid, as the slice views' foreground."""
    if not result.get("cams") or phase not in result["cams"]:
        raise InputError(f"no Grad-CAM for phase {phase!r} (flagged masses are not scored)", result["mass_id"])
    geometry = result["sample"].geometries[phase]
    patient = roi_to_patient(result["cams"][phase], geometry, volume_node_to_sitk(reference_volume_node))
    return show_float_overlay(patient, reference_volume_node, CAM_OVERLAY, colormap="PET-Heat", opacity=opacity,
                              window=(0.0, 1.0))


def assess_scene(bundle, card, volume_nodes: dict, masses, age_years=None, male=None, table_node=None,
                 cam_phase: str = "corticomedullary"):
    """Assess every mass; append one row each to ``table_node`` (new when None); show the first scored mass's
    Grad-CAM on ``cam_phase``. ``age_years`` / ``male`` as edited in the panel (None = missing: image-only model).
    Returns (results, table node, overlay node or None)."""
    from slicercad.renal.inference import assess_masses

    check_phase_nodes(volume_nodes)
    images = {p: volume_node_to_sitk(volume_nodes[p]) for p in PHASES}
    clinical = {m.lesion_id: {"age_years": age_years, "male": male} for m in masses}
    results = assess_masses(bundle, card, images, masses, clinical, with_cam=True)
    table = append_rows(result_rows(results, card), table_node, name=TABLE_NAME)
    scored = [r for r in results if r["status"] == "scored"]
    shown = show_cam(scored[0], cam_phase, volume_nodes[cam_phase]) if (scored and cam_phase) else None
    return results, table, shown


def load_renal_model(card_path=None):
    """(bundle, card) of a ``renal_mass_bundle`` card (None or empty: the bundled ``renal_mass_demo``, trained on
    SYNTHETIC data); refuses other tasks, tampered or missing weights."""
    from slicercad.renal.inference import load_bundle

    return load_bundle(None if card_path is None or str(card_path) in ("", ".") else card_path)


def pick_mass(masses, name: str = ""):
    """The mass called ``name`` (empty: the only one) among ``masses``."""
    if not name.strip():
        if len(masses) != 1:
            raise InputError(f"{len(masses)} masses are marked: name the one to export "
                             f"({[m.lesion_id for m in masses]})", "mass")
        return masses[0]
    found = [m for m in masses if m.lesion_id == name.strip()]
    if not found:
        raise InputError(f"no marked mass is called {name!r} (marked: {[m.lesion_id for m in masses]})", "mass")
    return found[0]


def result_for(results, mass_id: str):
    """The last Assess result of ``mass_id`` (None when it was not assessed)."""
    return next((r for r in reversed(list(results or [])) if r["mass_id"] == mass_id), None)
