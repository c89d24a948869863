"""Corrected-label loop: export a lesion crop (all phases), its mask and metadata into a research dataset.

Layout under ``dataset_dir``::

    dataset_description.json          de-identification declaration (Basic Profile + options), site-secret
                                      fingerprint
    manifest.jsonl                    one row per exported lesion (slicercad.manifest/1)
    cases/<case_id>/<phase>.nrrd      each phase's own voxels around the lesion (its centre plus that phase's
                                      offset), on that phase's own grid: no resampling (pixel data and
                                      geometry only)
    cases/<case_id>/mask.nrrd         lesion mask on the first phase's crop (when given)
    cases/<case_id>/metadata.json     de-identified attributes, crop grids, provenance

The row keeps what a model's sample path needs to cut the same input as from the source volumes:
the per-phase offsets (lesion ``provenance.offsets_mm``) and the acquisition values read from DICOM
(``provenance.acquisition``). The description holds a fingerprint of the site secret (an HMAC of a
fixed text, never the secret): an export with another secret into the same dataset is refused, since
it would give the same patient a second pseudonym and break patient-level splits.

A lesion is identified by its source study and series plus ``lesion["lesion_key"]`` (or its
centre rounded to whole mm): exporting it again replaces its files and manifest row instead
of adding another. Every file is written atomically and the manifest last, under a lock.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import math
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..atomic import atomic_path, write_json
from ..errors import GeometryError, ImageIOError, InputError
from . import deid
from .manifest import SCHEMA, append_cases
from .metrics import jsonable

MANIFEST = "manifest.jsonl"
DESCRIPTION = "dataset_description.json"
_PHASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_FINGERPRINT_TEXT = b"slicercad site-secret fingerprint/1"


def _center(lesion) -> np.ndarray:
    center = np.asarray(lesion.get("center_lps"), dtype=float).reshape(-1)
    if center.shape != (3,) or not np.isfinite(center).all():
        raise InputError(f"'center_lps' must be 3 finite numbers in mm, got {lesion.get('center_lps')!r}", "lesion")
    return center


def secret_fingerprint(secret: bytes) -> str:
    """16 hex digits of HMAC-SHA256(site secret, a fixed text): tells secrets apart, reveals nothing of one."""
    return hmac.new(deid.check_secret(secret), _FINGERPRINT_TEXT, hashlib.sha256).hexdigest()[:16]


def _geometry_only(image: sitk.Image) -> sitk.Image:
    """A copy with pixel data and geometry only (no metadata dictionary reaches the file)."""
    clean = sitk.GetImageFromArray(sitk.GetArrayFromImage(image), isVector=image.GetNumberOfComponentsPerPixel() > 1)
    clean.CopyInformation(image)
    return clean


def _check_finite(image: sitk.Image, where: str) -> None:
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if not (math.isfinite(stats.GetMinimum()) and math.isfinite(stats.GetMaximum())):
        raise InputError("image contains NaN or inf voxels", where)


def crop_box(image: sitk.Image, center_lps, crop_mm: float, where: str) -> sitk.Image:
    """``image``'s own voxels within ``crop_mm`` (each axis, plus one voxel for interpolation) around
    ``center_lps``, clipped to the image: same grid, values and geometry, no resampling."""
    dim = image.GetDimension()
    idx = np.asarray(image.TransformPhysicalPointToContinuousIndex(np.asarray(center_lps, float)[:dim].tolist()))
    size = np.asarray(image.GetSize())
    if np.any(idx < -0.5) or np.any(idx > size - 0.5):
        raise GeometryError(f"lesion centre {np.round(center_lps, 2).tolist()} mm (LPS) lies outside the image",
                            where)
    half = np.ceil(crop_mm / 2 / np.asarray(image.GetSpacing())) + 1
    lo = np.clip(np.floor(idx - half), 0, size - 1).astype(int)
    hi = np.clip(np.ceil(idx + half), 0, size - 1).astype(int)
    _check_finite(image, where)
    return _geometry_only(sitk.RegionOfInterest(image, (hi - lo + 1).tolist(), lo.tolist()))


def _mask_on(mask: sitk.Image, grid: sitk.Image) -> sitk.Image:
    if mask.GetDimension() != grid.GetDimension():
        raise GeometryError(f"{mask.GetDimension()}D mask but the first phase is {grid.GetDimension()}D",
                            "lesion.mask")
    out = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, mask.GetPixelID())
    return _geometry_only(sitk.Cast(out > 0, sitk.sitkUInt8))


def _offsets(lesion, phases) -> dict:
    """{phase: [dx, dy, dz] LPS mm} of ``lesion['offsets_mm']`` (zero offsets left out)."""
    out = {}
    for phase, xyz in (lesion.get("offsets_mm") or {}).items():
        if phase not in phases:
            raise InputError(f"offset for phase {phase!r}, which is not exported ({list(phases)})", "lesion.offsets_mm")
        v = np.asarray(xyz, dtype=float).reshape(-1)
        if v.shape != (3,) or not np.isfinite(v).all():
            raise InputError(f"offset must be 3 finite numbers in mm, got {xyz!r}", f"lesion.offsets_mm[{phase}]")
        if v.any():
            out[phase] = v.tolist()
    return out


def _write_nrrd(image: sitk.Image, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), True)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot write NRRD: {exc}", str(path)) from exc


def _lesion_key(lesion, center) -> str:
    key = lesion.get("lesion_key")
    return str(key) if key not in (None, "") else ",".join(str(int(round(c))) for c in center)


def _check_dataset(description: Path, options: tuple, fingerprint: str) -> None:
    """Refuses options other than those the dataset's description declares (one declaration per dataset)
    and a site secret other than the one it was exported with."""
    try:
        declared = json.loads(description.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    seen = declared.get("site_secret_fingerprint") if isinstance(declared, dict) else None
    if seen is not None and seen != fingerprint:
        raise InputError(f"this dataset was exported with another site secret (fingerprint {seen}, this one "
                         f"{fingerprint}): another secret gives the same patient another pseudonym and breaks the "
                         "patient-level splits; use the site's secret, or export into a new dataset folder",
                         str(description))
    try:
        named = declared["deidentification"]["options"]
    except (KeyError, TypeError):
        return
    wanted = [deid.OPTIONS[o]["name"] for o in options]
    if named != wanted:
        raise InputError(f"this dataset was exported with de-identification options {named}, not {wanted}",
                         str(description))


DEFAULT_CROP_MM = 120.0   # = liver.task.export_crop_mm(): max(3 x 40 mm, 48 mm); Testing/test_engine_export.py


def export_lesion(dataset_dir, images_by_phase: dict, lesion: dict, source_tags: dict, site_secret: bytes,
                  annotator: str, edited: bool, model_prediction: dict | None, crop_mm: float = None,
                  deid_options=deid.DEFAULT_OPTIONS) -> dict:
    """Export one lesion: each phase's crop on its own grid, mask, metadata, manifest row.

    ``lesion`` has ``center_lps`` (mm), ``diameter_mm``, ``label`` and ``mask`` (sitk.Image on any grid, or
    None; stored on the first phase's crop), optionally ``size_mm``, ``lesion_key``, ``offsets_mm``
    ({phase: (dx, dy, dz) LPS mm}: each phase is cropped at the centre plus its offset) and
    ``acquisition`` (values read from DICOM, e.g. field strength, b-value, ADC units). ``crop_mm``: the
    box each phase keeps around its centre (cover the ROI field of view of the model's sample path);
    default ``DEFAULT_CROP_MM`` = 120 mm, the liver task's field of view max(3 x 40 mm, 48 mm) for the
    largest lesion it supports (40 mm), so no supported lesion's ROI runs off the crop.
    ``source_tags`` are the source's DICOM attributes by keyword (PatientID is required).
    ``deid_options`` are the de-identification options applied (``deid.SUPPORTED_OPTIONS``); options
    and site secret are the same for every export into one dataset. Returns the manifest row written.
    """
    if not isinstance(images_by_phase, dict) or not images_by_phase:
        raise InputError("at least one phase image is required", "images_by_phase")
    for phase, image in images_by_phase.items():
        if not isinstance(phase, str) or not _PHASE.fullmatch(phase):
            raise InputError(f"phase name {phase!r} must be 1-32 letters, digits, '-' or '_'", "images_by_phase")
        if not isinstance(image, sitk.Image):
            raise InputError(f"expected a SimpleITK image, got {type(image).__name__}", f"images_by_phase[{phase}]")
    crop_mm = DEFAULT_CROP_MM if crop_mm is None else crop_mm
    if not isinstance(crop_mm, (int, float)) or not math.isfinite(crop_mm) or crop_mm <= 0:
        raise InputError(f"crop size must be a positive number of mm, got {crop_mm!r}", "crop_mm")
    diameter = lesion.get("diameter_mm")
    if not isinstance(diameter, (int, float)) or not math.isfinite(diameter) or diameter <= 0:
        raise InputError(f"'diameter_mm' must be a positive number, got {diameter!r}", "lesion")
    if not str(annotator or "").strip():
        raise InputError("the annotator must be named for label provenance", "annotator")
    center = _center(lesion)
    secret = deid.check_secret(site_secret)
    deid_options = deid.check_options(deid_options)
    fingerprint = secret_fingerprint(secret)
    _check_dataset(Path(dataset_dir) / DESCRIPTION, deid_options, fingerprint)
    offsets = _offsets(lesion, images_by_phase)
    patient = deid.pseudonym(secret, source_tags.get("PatientID"))
    age, sex = deid.patient_characteristics(source_tags) if "retain_patient_characteristics" in deid_options \
        else (None, None)
    source = (source_tags.get("PatientID"), source_tags.get("StudyInstanceUID"),
              source_tags.get("SeriesInstanceUID"), _lesion_key(lesion, center))
    case_id = "C" + deid.keyed_id(secret, "case", *source)
    lesion_id = "L" + deid.keyed_id(secret, "lesion", *source)

    root = Path(dataset_dir)
    case_dir = root / "cases" / case_id
    crops = {phase: crop_box(image, center + np.asarray(offsets.get(phase, (0.0, 0.0, 0.0))), float(crop_mm),
                             f"images_by_phase[{phase}]") for phase, image in images_by_phase.items()}
    images = {}
    for phase, crop in crops.items():
        images[phase] = f"cases/{case_id}/{phase}.nrrd"
        _write_nrrd(crop, root / images[phase])
    mask_rel = None
    if lesion.get("mask") is not None:
        if not isinstance(lesion["mask"], sitk.Image):
            raise InputError(f"'mask' must be a SimpleITK image, got {type(lesion['mask']).__name__}", "lesion")
        mask_rel = f"cases/{case_id}/mask.nrrd"
        _write_nrrd(_mask_on(lesion["mask"], next(iter(crops.values()))), root / mask_rel)

    size = lesion.get("size_mm", diameter)
    provenance = {"annotator": str(annotator), "edited": bool(edited),
                  "model_prediction": jsonable(model_prediction),
                  "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  **({"offsets_mm": offsets} if offsets else {}),
                  **({"acquisition": jsonable(lesion["acquisition"])} if lesion.get("acquisition") else {})}
    row_lesion = {"lesion_id": lesion_id, "center": [float(c) for c in center], "coordinate_system": "LPS",
                  "diameter_mm": float(diameter), "mask": mask_rel,
                  "label": None if lesion.get("label") is None else str(lesion["label"]),
                  "size_mm": None if size is None else float(size), "provenance": provenance}
    row = {"schema": SCHEMA, "case_id": case_id, "patient": patient, "age": age, "sex": sex,
           "images": images, "lesions": [row_lesion], "extra": {}}
    write_json(case_dir / "metadata.json", {
        "case_id": case_id, "patient": patient, "age": age, "sex": sex, "lesion": row_lesion,
        "crop": {"size_mm": float(crop_mm), "mask_phase": next(iter(crops)),
                 "grids": {p: {"voxels": list(c.GetSize()), "spacing_mm": list(c.GetSpacing()),
                               "origin_lps": list(c.GetOrigin())} for p, c in crops.items()}},
        "dicom": deid.deidentify_tags(source_tags, secret, deid_options),
        "deidentification": {"options": [deid.OPTIONS[o]["name"] for o in deid_options],
                             "retained": deid.retained_attributes(source_tags, secret, deid_options)}})
    write_json(root / DESCRIPTION, {"name": "SlicerCAD research export", "manifest": MANIFEST,
                                    "manifest_schema": SCHEMA, "deidentification": deid.description(deid_options),
                                    "site_secret_fingerprint": fingerprint})
    append_cases(root / MANIFEST, [row])
    return row
