"""'Add to training set': export a reader-labelled lesion from the scene through the engine's export.

The source identifiers (patient, study, series) are read from the DICOM files behind the volume
nodes, so the export is pseudonymised from the real source and can be audited against it with
``slicercad.engine.audit.audit_export``. The export keeps what the liver sample path
(``slicercad.liver.dataset.lesion_sample``) needs to cut the same model input as the panel does from the
scene: every phase on its own grid with enough margin for the ROI of a 40 mm lesion, the per-phase
offsets, and the acquisition values read from DICOM (field strength, DWI b-value, ADC units); phase
timing and the contrast agent are kept under the Clean Descriptors and Modified Dates options.
Imports ``slicer`` but never Qt.
"""
from __future__ import annotations


from slicercad.engine.deid import DEFAULT_OPTIONS
from slicercad.engine.export import export_lesion
from slicercad.errors import InputError
from slicercad.liver.acquisition import acquisition_from_tags
from slicercad.liver.dataset import study_adc_scale
from slicercad.liver.phases import PHASES, REFERENCE_PHASE
from slicercad.liver.roi import RoiSpec
from SlicerCADLib.dicom_nodes import tags_for_volume_node
from SlicerCADLib.source_tags import source_identifiers

from .classify import phase_images, phase_tags

# PS3.15 options of the product export: patient age/sex, and the phase timing and contrast agent the
# phase assignment and the gadoxetate check read (Clean Descriptors, Modified Dates)
DEID_OPTIONS = (*DEFAULT_OPTIONS, "clean_descriptors", "retain_modified_dates")
MAX_DIAMETER_MM = 40.0   # every crop serves the ROI of a lesion this large (the card's largest diameter)


def export_crop_mm(diameter_mm: float, spec: RoiSpec = RoiSpec()) -> float:
    """The box each phase keeps around its centre: the sample path's ROI field of view for a lesion of
    ``diameter_mm``, at least that of a 40 mm lesion (max(3 d, 48 mm): 120 mm)."""
    return spec.field_of_view(max(float(diameter_mm), MAX_DIAMETER_MM))


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
                        crop_mm: float | None = None) -> dict:
    """Export ``lesion`` (core ``Lesion``, with its per-phase offsets) with every given phase, its ``label``
    and provenance into the research dataset at ``dataset_dir`` (de-identified, idempotent); returns the
    manifest row.

    Each phase keeps its own grid (``crop_mm`` around its centre; default ``export_crop_mm``); the mask
    goes onto the reference (hepatobiliary) phase's crop when present. An ADC map whose units cannot be
    read (or an eADC) is refused here, as the sample path would. ``edited``: the reader changed the
    model's class; ``model_prediction``: e.g. {"class": ..., "probabilities": ...}.
    """
    if not str(label or "").strip():
        raise InputError("a class label is required", lesion.lesion_id)
    nodes = {p: n for p, n in volume_nodes.items() if n is not None}
    images = phase_images(nodes)
    order = [REFERENCE_PHASE] * (REFERENCE_PHASE in images) + [p for p in PHASES if p in images and p != REFERENCE_PHASE]
    acquisition = {k: v for k, v in acquisition_from_tags(phase_tags(nodes)).items() if k != "sources"}
    study_adc_scale(images, acquisition)
    record = {"center_lps": [float(v) for v in lesion.center_lps()], "diameter_mm": float(lesion.diameter_mm),
              "label": str(label), "mask": mask, "lesion_key": lesion.lesion_id,
              "offsets_mm": {p: lesion.offset_lps(p).tolist() for p in order}, "acquisition": acquisition}
    crop = export_crop_mm(lesion.diameter_mm) if crop_mm is None else crop_mm
    return export_lesion(dataset_dir, {p: images[p] for p in order}, record, source_tags_for_nodes(nodes),
                         site_secret, annotator, bool(edited), model_prediction, crop, DEID_OPTIONS)

