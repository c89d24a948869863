"""Renal masses in a research training set (``slicercad.engine.export`` layout): the label rules, the crop the
export keeps, the renal record of a row, and reading an exported mass back through the one sample path.

- Label: ``benign`` or ``malignant`` (the model's classes) with a histologic subtype from KiTS23's
  ``tumor_histologic_subtype`` vocabulary (plus ``unknown``); ``SUBTYPE_CLASS`` refuses a subtype of the other
  class (an oncocytoma labelled malignant). Cysts, multilocular cystic RCC and urothelial carcinoma are outside
  the population (``kits23.EXCLUDED_SUBTYPES``).
- Crop: each phase keeps ``export_crop_mm(d)`` around the mass centre (+ that phase's offset): the sample
  path's ROI field of view for a mass of max(d, 40 mm) (the largest the model scores) plus the slice stack's
  extent along the slice normal, so a re-measured mass up to 4 cm is still cut whole.
- Record (``renal_record``, stored as the lesion's ``provenance.acquisition.renal`` -- the export's slot for
  values the sample path or the model reads besides the images): subtype, the clinical fields the combined
  model used (age, male, size in cm, and where age / sex came from: DICOM or edited in the panel), the sample
  path's flags and core HU per phase.
- ``read_exported``: every renal mass of a dataset as the ``MassSample`` the panel computes on the source
  volumes (``dataset.mass_sample`` on the exported crops), with its label and record.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..liver.roi import Lesion
from .constants import CLASSES, PHASES, SIZE_LIMIT_MM
from .dataset import N_SLICES, ROI_SPEC, SLICE_STEP, mass_sample, slice_offsets

# KiTS23 subtypes of solid masses -> the class they imply (None: either, decided by the pathology report)
SUBTYPE_CLASS = {"clear_cell_rcc": "malignant", "papillary_rcc": "malignant", "chromophobe_rcc": "malignant",
                 "clear_cell_papillary": "malignant", "rcc_unclassified": "malignant", "wilms_tumor": "malignant",
                 "oncocytoma": "benign", "angiomyolipoma": "benign", "mest": "benign",
                 "spindle_cell_neoplasm": None, "other": None, "unknown": None}
RECORD_KEY = "renal"


def check_label(label: str, subtype: str) -> tuple:
    """(label, subtype) checked against ``CLASSES`` and ``SUBTYPE_CLASS``."""
    if label not in CLASSES:
        raise InputError(f"label must be one of {list(CLASSES)}, got {label!r}", "label")
    if subtype not in SUBTYPE_CLASS:
        raise InputError(f"subtype must be one of {sorted(SUBTYPE_CLASS)} (KiTS23 vocabulary), got {subtype!r}",
                         "subtype")
    implied = SUBTYPE_CLASS[subtype]
    if implied not in (None, label):
        raise InputError(f"subtype {subtype!r} is {implied}, not {label}", "label")
    return label, subtype


def export_crop_mm(diameter_mm: float) -> float:
    """The box each phase keeps (module doc): FOV of max(d, 40 mm) + the slice stack's extent."""
    d = max(float(diameter_mm), SIZE_LIMIT_MM)
    return ROI_SPEC.field_of_view(d) + 2 * float(max(abs(slice_offsets(d, N_SLICES, SLICE_STEP))))


def renal_record(subtype: str, age_years, male, size_cm: float, sources: dict, sample) -> dict:
    """The renal fields of an exported mass (module doc); ``sample``: its ``MassSample`` on the source volumes."""
    return {"subtype": subtype, "age_years": None if age_years is None else float(age_years),
            "male": None if male is None else int(male), "size_cm": float(size_cm), "sources": dict(sources),
            "flags": list(sample.flags), "core_mean_hu": {p: sample.features[p]["mean_hu"] for p in PHASES}}


def read_exported(dataset_dir) -> list:
    """[{"sample", "label", "record", "case_id", "patient"}] of every renal mass in ``dataset_dir``."""
    import SimpleITK as sitk

    from ..engine.manifest import load_manifest

    manifest = load_manifest(Path(dataset_dir) / "manifest.jsonl", classes=list(CLASSES))
    out = []
    for case, lesion in manifest.lesions():
        record = (lesion.provenance.get("acquisition") or {}).get(RECORD_KEY)
        if record is None:
            raise InputError("not a renal mass export (no provenance.acquisition.renal)", case.case_id)
        images = {p: sitk.ReadImage(str(case.images[p])) for p in PHASES if p in case.images}
        mass = Lesion(lesion.lesion_id, tuple(lesion.center_lps), lesion.diameter_mm, "LPS",
                      dict(lesion.provenance.get("offsets_mm", {})))
        out.append({"sample": mass_sample(images, mass), "label": lesion.label, "record": record,
                    "case_id": case.case_id, "patient": case.patient})
    return out
