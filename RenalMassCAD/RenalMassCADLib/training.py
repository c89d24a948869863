"""'Add to training set': export a reader-labelled renal mass (4 phases) from the scene through the engine's export.

The phases are checked as for Assess (all 4, one study of one patient), the mass goes through the one sample
path (``slicercad.renal.dataset.mass_sample``: a mass outside an image is refused, its flags and HU are
recorded), and ``slicercad.engine.export.export_lesion`` writes each phase's own voxels around it (the crop of
``slicercad.renal.training_set.export_crop_mm``), de-identified from the real source identifiers -- read from
the DICOM files behind the unenhanced phase's node (``SlicerCADLib.source_tags``) -- so
``slicercad.engine.audit.audit_export`` can check it. The label is
benign / malignant with its subtype; the clinical fields the combined model used (age and sex as shown in the
panel, edited or from DICOM) travel in the row's renal record. Imports ``slicer`` but never Qt.
"""
from __future__ import annotations

from slicercad.engine.deid import DEFAULT_OPTIONS
from slicercad.engine.export import export_lesion
from slicercad.errors import InputError
from slicercad.renal.constants import PHASES
from slicercad.renal.dataset import mass_sample
from slicercad.renal.training_set import RECORD_KEY, check_label, export_crop_mm, renal_record
from SlicerCADLib.dicom_nodes import tags_for_volume_node
from SlicerCADLib.source_tags import source_identifiers
from SlicerCADLib.volumes import volume_node_to_sitk

from .assess import check_phase_nodes

SOURCE_PHASE = PHASES[0]


def source_tags(volume_nodes: dict) -> dict:
    """The export's source identifiers: DICOM attributes of the unenhanced phase's first file + its series
    description."""
    node = volume_nodes[SOURCE_PHASE]
    tags = source_identifiers(node)
    description = tags_for_volume_node(node).series_description
    if description and "SeriesDescription" not in tags:
        tags["SeriesDescription"] = description
    return tags


def model_prediction(result) -> dict | None:
    """What the model said about this mass (an Assess result row), for the export's provenance."""
    if not result or result.get("status") != "scored":
        return None
    return {"call": result["call"], "p_combined": result["p_combined"], "model_used": result["model_used"],
            "probabilities": result["probabilities"], "model_sha256": result["provenance"]["model_sha256"]}


def add_to_training_set(dataset_dir, volume_nodes: dict, mass, label: str, subtype: str, annotator: str,
                        site_secret: bytes, age_years=None, male=None, clinical_sources: dict | None = None,
                        result: dict | None = None) -> dict:
    """Export ``mass`` (core ``Lesion``) with its 4 phases, ``label`` (benign / malignant), ``subtype`` and
    clinical fields into the research dataset at ``dataset_dir``; returns the manifest row. ``result``: this
    mass's Assess result (the model's call goes into the provenance; ``edited`` = the reader disagrees)."""
    label, subtype = check_label(label, subtype)
    if not str(annotator or "").strip():
        raise InputError("the annotator must be named for label provenance", "annotator")
    check_phase_nodes(volume_nodes)
    images = {p: volume_node_to_sitk(volume_nodes[p]) for p in PHASES}
    sample = mass_sample(images, mass)
    prediction = model_prediction(result)
    record = {"center_lps": [float(v) for v in mass.center_lps()], "diameter_mm": float(mass.diameter_mm),
              "label": label, "mask": None, "lesion_key": mass.lesion_id,
              "offsets_mm": {p: mass.offset_lps(p).tolist() for p in PHASES},
              "acquisition": {RECORD_KEY: renal_record(subtype, age_years, male, mass.diameter_mm / 10.0,
                                                       clinical_sources or {}, sample)}}
    edited = prediction is not None and prediction["call"] != label
    return export_lesion(dataset_dir, images, record, source_tags(volume_nodes), site_secret, annotator, edited,
                         prediction, export_crop_mm(mass.diameter_mm), DEFAULT_OPTIONS)
