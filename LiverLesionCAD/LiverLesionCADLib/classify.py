"""MRML <-> liver core: phase volumes, lesion markups, Classify, results table, overlays.

Imports ``slicer`` (through SlicerCADLib) but never Qt, so it runs inside Slicer and with the
``slicer-core`` wheel. Every function takes its nodes explicitly. torch (through
``slicercad.liver.inference``) is imported only inside the functions that run a model, after
``SlicerCADLib.dependencies.ensure_dependencies``: the lesion helpers (``lesions_from_nodes``, used
by "Show phases") work in a Slicer without torch.
"""
from __future__ import annotations

import numpy as np
import pydicom

from slicercad.errors import DicomError, InputError
from slicercad.liver.phases import PHASES, REFERENCE_PHASE
from slicercad.liver.roi import Lesion, roi_to_patient
from SlicerCADLib.dicom_nodes import tags_for_volume_node, volume_files
from SlicerCADLib.markups import lesion_from_segment, lesions_from_markups
from SlicerCADLib.overlays import show_float_overlay
from SlicerCADLib.tables import append_rows
from SlicerCADLib.volumes import volume_node_to_sitk

ATTENTION_OVERLAY = "LiverLesionCAD attention"
CAM_OVERLAY = "LiverLesionCAD Grad-CAM"


def phase_images(volume_nodes: dict) -> dict:
    """{phase: SimpleITK image} from {phase: volume node}; phases without a node are left out."""
    unknown = [p for p in volume_nodes if p not in PHASES]
    if unknown:
        raise InputError(f"unknown phase(s) {unknown}; expected names from {list(PHASES)}", "phases")
    return {p: volume_node_to_sitk(n) for p, n in volume_nodes.items() if n is not None}


def volume_tags(node) -> dict:
    """DICOM attributes of one volume node for ``acquisition.acquisition_from_tags``: field strength,
    b-value (standard, enhanced per-frame or vendor private: ``tags_for_volume_node``), ImageType and
    descriptions (eADC), the Real World Value Mapping of its first file (ADC units)."""
    series = tags_for_volume_node(node)
    header = pydicom.dcmread(volume_files(node)[0], stop_before_pixels=True)
    tags = {"MagneticFieldStrength": series.field_strength_t, "DiffusionBValue": series.b_value,
            "ImageType": list(series.image_type), "SeriesDescription": series.series_description,
            "ProtocolName": series.protocol_name,
            "RealWorldValueMappingSequence": header.get("RealWorldValueMappingSequence")}
    return {k: v for k, v in tags.items() if v not in (None, "", [])}


def phase_tags(volume_nodes: dict) -> dict:
    """{phase: ``volume_tags``} of the phase volumes that came from DICOM (others have none: their
    acquisition values are then unknown and the results say so)."""
    out = {}
    for phase, node in volume_nodes.items():
        if node is None:
            continue
        try:
            out[phase] = volume_tags(node)
        except DicomError:
            continue
    return out


def lesions_from_nodes(points_node=None, lines_node=None, offsets_mm=None) -> list:
    """Core ``Lesion`` objects from a fiducial node (centres) and line node(s) (diameters: a line node or
    a list, e.g. ``scene_line_nodes(scene)``; each line goes to the nearest centre point).

    ``offsets_mm``: {lesion name: {phase: (dx, dy, dz) LPS mm}} per-phase centre nudges.
    A lesion without a measured diameter raises InputError naming it.
    """
    offsets_mm = offsets_mm or {}
    lesions = []
    for mark in lesions_from_markups(points_node, lines_node):
        if mark.diameter_mm is None:
            raise InputError("no diameter: draw a line across the lesion near its centre point", mark.name)
        lesions.append(Lesion(mark.name, tuple(mark.center_lps), float(mark.diameter_mm), "LPS",
                              dict(offsets_mm.get(mark.name, {}))).check())
    if not lesions:
        raise InputError("no lesion marked: place a point and a diameter line on each lesion", "lesions")
    return lesions


def lesion_from_segment_node(segmentation_node, segment_id: str, reference_volume_node) -> Lesion:
    """A core ``Lesion`` from a segment: centroid and equivalent-sphere diameter."""
    mark = lesion_from_segment(segmentation_node, segment_id, reference_volume_node)
    return Lesion(mark.name, tuple(mark.center_lps), float(mark.diameter_mm), "LPS").check()


def result_rows(results, card: dict) -> list:
    """Table rows: class, calibrated probabilities, size bin, alpha, phases, model sha256, warnings, notes
    (unit conversions), attention source."""
    rows = []
    for r in results:
        prov = r["provenance"]
        row = {"lesion": r["lesion_id"], "class": r["predicted_class"]}
        row.update({f"p_{c}": round(float(p), 4) for c, p in r["probabilities"].items()})
        row.update({"diameter_mm": round(float(r["diameter_mm"]), 1), "size_bin": r["size_bin"],
                    "alpha": "none" if prov["parameters"].get("alpha") is None else float(prov["parameters"]["alpha"]),
                    "phases": " ".join(prov["parameters"].get("phases", [])),
                    "model": str(card.get("name", "")), "model_sha256": str(prov["model_sha256"]),
                    "roi_padded": "yes" if r["padded"] else "no", "warnings": "; ".join(r["warnings"]),
                    "notes": "; ".join(r.get("notes", [])), "attention_source": r.get("attention_source", "diameter"),
                    "notice": r["notice"]})
        rows.append(row)
    return rows


def show_lesion_overlay(result, reference_volume_node, which: str = "cam", phase: str = REFERENCE_PHASE,
                        opacity: float = 0.5):
    """Show one lesion's Grad-CAM (``which='cam'``) or attention map on ``reference_volume_node``'s grid
    as the foreground of every slice view; returns the overlay volume node."""
    if which not in ("cam", "attention"):
        raise InputError(f"overlay must be 'cam' or 'attention', got {which!r}", "which")
    values = result["cam"] if which == "cam" else result["attention"]
    if values is None:
        raise InputError("no Grad-CAM computed for this lesion", result["lesion_id"])
    rois = result["rois"]
    geometry = rois.geometries[phase if phase in rois.geometries else rois.phases[0]]
    patient = roi_to_patient(np.asarray(values, np.float32), geometry, volume_node_to_sitk(reference_volume_node))
    name = CAM_OVERLAY if which == "cam" else ATTENTION_OVERLAY
    return show_float_overlay(patient, reference_volume_node, name, colormap="PET-Heat", opacity=opacity,
                              window=(0.0, 1.0))


def classify_scene(model, card: dict, volume_nodes: dict, lesions, table_node=None, acquisition=None,
                   overlay: str = "cam", alpha="card", device: str = "cpu"):
    """Classify every lesion; append one row per lesion to ``table_node`` (new table when None; re-runs
    add rows, never overwrite) and show the first lesion's overlay on the reference phase.

    ``alpha``: 'card' (the model's training alpha) or an override, flagged in each row's warnings.
    Field strength, b-value and ADC units are read from the volumes' DICOM tags (``phase_tags``);
    ``acquisition`` overrides them. Returns (results, table node, overlay node or None).
    """
    from slicercad.liver.inference import classify_lesions

    images = phase_images(volume_nodes)
    results = classify_lesions(model, card, images, lesions, acquisition, with_cam=True, alpha=alpha,
                               device=device, tags=phase_tags(volume_nodes))
    table = append_rows(result_rows(results, card), table_node, name="LiverLesionCAD results")
    ref = volume_nodes.get(REFERENCE_PHASE)
    shown = show_lesion_overlay(results[0], ref, overlay) if (ref is not None and results and overlay) else None
    return results, table, shown


def load_liver_model(card_path, device: str = "cpu"):
    """(model on ``device``, card) from a liver model card; refuses tampered or unknown models.
    ``device`` 'cuda' falls back to 'cpu' with a warning in the card when no GPU is usable."""
    import slicercad.liver.task  # noqa: F401  (registers the liver tasks)
    from slicercad.engine.registry import load_model

    model, card = load_model(card_path)
    if not card["task"].startswith("liver_lesion"):
        raise InputError(f"model is for task {card['task']!r}, not a liver lesion model", str(card_path))
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        card = dict(card, device_note="CUDA requested but not available; running on CPU")
        device = "cpu"
    return model.to(device), dict(card, device=device)
