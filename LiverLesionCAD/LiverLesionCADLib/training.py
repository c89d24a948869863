"""'Add to training set': export a reader-labelled lesion from the scene through the engine's export.

The source identifiers (patient, study, series) are read from the DICOM files behind the volume
nodes, so the export is pseudonymised from the real source and can be audited against it with
``slicercad.engine.audit.audit_export``. Imports ``slicer`` but never Qt.
"""
from __future__ import annotations

import pydicom

from slicercad.engine.basic_profile import ACTIONS
from slicercad.engine.export import export_lesion
from slicercad.errors import DicomError, InputError
from slicercad.liver.phases import PHASES, REFERENCE_PHASE
from SlicerCADLib.dicom_nodes import tags_for_volume_node, volume_files

from .classify import phase_images

# Identifying and characteristic attributes read from the source file, beyond the profile's list.
EXTRA_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
                  "StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber")


def source_identifiers(volume_node) -> dict:
    """DICOM attributes by keyword (Basic Profile attributes present + ``EXTRA_KEYWORDS``) from the
    first file behind ``volume_node``; values as text (sequences left out)."""
    path = volume_files(volume_node)[0]
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several types for damaged files
        raise DicomError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
    out = {}
    for keyword in dict.fromkeys((*ACTIONS, *EXTRA_KEYWORDS)):
        element = ds.get(keyword)
        if element is None or element in ("", None) or isinstance(element, pydicom.Sequence):
            continue
        out[keyword] = str(element)
    if not out.get("PatientID"):
        raise DicomError("source file has no PatientID; the export needs it for the pseudonym", path)
    return out


def source_tags_for_nodes(volume_nodes: dict) -> dict:
    """Source tags for the export: identifiers of the reference phase (else the first phase given),
    plus SeriesTags fields (series description, b-value, ...) from ``tags_for_volume_node``."""
    phase = REFERENCE_PHASE if volume_nodes.get(REFERENCE_PHASE) is not None else next(
        (p for p in PHASES if volume_nodes.get(p) is not None), None)
    if phase is None:
        raise InputError(f"no phase volume given; expected some of {list(PHASES)}", "volume_nodes")
    node = volume_nodes[phase]
    tags = source_identifiers(node)
    series = tags_for_volume_node(node)
    if series.series_description and "SeriesDescription" not in tags:
        tags["SeriesDescription"] = series.series_description
    return tags


def add_to_training_set(dataset_dir, volume_nodes: dict, lesion, label: str, annotator: str, edited: bool,
                        model_prediction: dict | None, site_secret: bytes, mask=None,
                        crop_mm: float = 96.0) -> dict:
    """Export ``lesion`` (core ``Lesion``) with every given phase, its ``label`` and provenance into the
    research dataset at ``dataset_dir`` (de-identified, idempotent); returns the manifest row.

    The reference phase (hepatobiliary) gives the crop grid when present. ``edited``: the reader
    changed the model's class; ``model_prediction``: e.g. {"class": ..., "probabilities": ...}.
    """
    if not str(label or "").strip():
        raise InputError("a class label is required", lesion.lesion_id)
    images = phase_images({p: n for p, n in volume_nodes.items() if n is not None})
    order = [REFERENCE_PHASE] * (REFERENCE_PHASE in images) + [p for p in PHASES if p in images and p != REFERENCE_PHASE]
    record = {"center_lps": [float(v) for v in lesion.center_lps()], "diameter_mm": float(lesion.diameter_mm),
              "label": str(label), "mask": mask, "lesion_key": lesion.lesion_id}
    return export_lesion(dataset_dir, {p: images[p] for p in order}, record, source_tags_for_nodes(volume_nodes),
                         site_secret, annotator, bool(edited), model_prediction, crop_mm)

