"""Corrected-label loop: export a lesion crop (all phases), its mask and metadata into a research dataset.

Layout under ``dataset_dir``::

    dataset_description.json          de-identification declaration (Basic Profile + options)
    manifest.jsonl                    one row per exported lesion (slicercad.manifest/1)
    cases/<case_id>/<phase>.nrrd      crops on one grid (pixel data and geometry only)
    cases/<case_id>/mask.nrrd         lesion mask on the same grid (when given)
    cases/<case_id>/metadata.json     de-identified attributes, crop grid, provenance

A lesion is identified by its source study and series plus ``lesion["lesion_key"]`` (or its
centre rounded to whole mm): exporting it again replaces its files and manifest row instead
of adding another. Every file is written atomically and the manifest last, under a lock.
"""
from __future__ import annotations

import datetime
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


def _center(lesion) -> np.ndarray:
    center = np.asarray(lesion.get("center_lps"), dtype=float).reshape(-1)
    if center.shape != (3,) or not np.isfinite(center).all():
        raise InputError(f"'center_lps' must be 3 finite numbers in mm, got {lesion.get('center_lps')!r}", "lesion")
    return center


def crop_grid(reference: sitk.Image, center_lps, crop_mm: float) -> sitk.Image:
    """An empty image: a ``crop_mm`` box centred on the lesion, on the reference's spacing and axes."""
    dim = reference.GetDimension()
    center = np.asarray(center_lps, dtype=float)[:dim]
    idx = np.asarray(reference.TransformPhysicalPointToContinuousIndex(center.tolist()))
    if np.any(idx < -0.5) or np.any(idx > np.asarray(reference.GetSize()) - 0.5):
        raise GeometryError(f"lesion centre {center.tolist()} mm (LPS) lies outside the reference image",
                            "lesion.center_lps")
    spacing = np.asarray(reference.GetSpacing())
    size = [1 if n == 1 else max(1, int(round(crop_mm / s))) for n, s in zip(reference.GetSize(), spacing)]
    direction = np.asarray(reference.GetDirection()).reshape(dim, dim)
    if dim == 3 and reference.GetSize()[2] == 1:  # one slice: keep it where it is
        center = np.asarray(reference.TransformContinuousIndexToPhysicalPoint((*idx[:2], 0.0)))
    origin = center - direction @ ((np.asarray(size) - 1) / 2 * spacing)
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(direction.reshape(-1).tolist())
    return grid


def _resample(image: sitk.Image, grid: sitk.Image, nearest: bool, where: str) -> sitk.Image:
    if image.GetDimension() != grid.GetDimension():
        raise GeometryError(f"{image.GetDimension()}D image but the reference phase is {grid.GetDimension()}D", where)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if not (math.isfinite(stats.GetMinimum()) and math.isfinite(stats.GetMaximum())):
        raise InputError("image contains NaN or inf voxels", where)
    fill = 0.0 if nearest else stats.GetMinimum()
    out = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear,
                        fill, image.GetPixelID())
    clean = sitk.GetImageFromArray(sitk.GetArrayFromImage(out), isVector=image.GetNumberOfComponentsPerPixel() > 1)
    clean.CopyInformation(grid)  # geometry only: no metadata dictionary reaches the file
    return clean


def _write_nrrd(image: sitk.Image, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), True)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot write NRRD: {exc}", str(path)) from exc


def _lesion_key(lesion, center) -> str:
    key = lesion.get("lesion_key")
    return str(key) if key not in (None, "") else ",".join(str(int(round(c))) for c in center)


def _check_same_options(description: Path, options: tuple) -> None:
    """Refuses options other than those the dataset's description declares (one declaration per dataset)."""
    try:
        declared = json.loads(description.read_text(encoding="utf-8"))["deidentification"]["options"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    wanted = [deid.OPTIONS[o]["name"] for o in options]
    if declared != wanted:
        raise InputError(f"this dataset was exported with de-identification options {declared}, not {wanted}",
                         str(description))


def export_lesion(dataset_dir, images_by_phase: dict, lesion: dict, source_tags: dict, site_secret: bytes,
                  annotator: str, edited: bool, model_prediction: dict | None, crop_mm: float = 96.0,
                  deid_options=deid.DEFAULT_OPTIONS) -> dict:
    """Export one lesion: crops of every phase (first phase gives the grid), mask, metadata, manifest row.

    ``lesion`` has ``center_lps`` (mm), ``diameter_mm``, ``label`` and ``mask`` (sitk.Image or None),
    optionally ``size_mm`` and ``lesion_key``. ``source_tags`` are the source's DICOM attributes by
    keyword (PatientID is required). ``deid_options`` are the de-identification options applied
    (``deid.SUPPORTED_OPTIONS``), the same for every export into one dataset. Returns the manifest row written.
    """
    if not isinstance(images_by_phase, dict) or not images_by_phase:
        raise InputError("at least one phase image is required", "images_by_phase")
    for phase, image in images_by_phase.items():
        if not isinstance(phase, str) or not _PHASE.fullmatch(phase):
            raise InputError(f"phase name {phase!r} must be 1-32 letters, digits, '-' or '_'", "images_by_phase")
        if not isinstance(image, sitk.Image):
            raise InputError(f"expected a SimpleITK image, got {type(image).__name__}", f"images_by_phase[{phase}]")
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
    _check_same_options(Path(dataset_dir) / DESCRIPTION, deid_options)
    patient = deid.pseudonym(secret, source_tags.get("PatientID"))
    age, sex = deid.patient_characteristics(source_tags)
    source = (source_tags.get("PatientID"), source_tags.get("StudyInstanceUID"),
              source_tags.get("SeriesInstanceUID"), _lesion_key(lesion, center))
    case_id = "C" + deid.keyed_id(secret, "case", *source)
    lesion_id = "L" + deid.keyed_id(secret, "lesion", *source)

    root = Path(dataset_dir)
    case_dir = root / "cases" / case_id
    grid = crop_grid(next(iter(images_by_phase.values())), center, float(crop_mm))
    images = {}
    for phase, image in images_by_phase.items():
        rel = f"cases/{case_id}/{phase}.nrrd"
        _write_nrrd(_resample(image, grid, False, f"images_by_phase[{phase}]"), root / rel)
        images[phase] = rel
    mask_rel = None
    if lesion.get("mask") is not None:
        if not isinstance(lesion["mask"], sitk.Image):
            raise InputError(f"'mask' must be a SimpleITK image, got {type(lesion['mask']).__name__}", "lesion")
        mask = sitk.Cast(_resample(lesion["mask"], grid, True, "lesion.mask") > 0, sitk.sitkUInt8)
        mask_rel = f"cases/{case_id}/mask.nrrd"
        _write_nrrd(mask, root / mask_rel)

    size = lesion.get("size_mm", diameter)
    provenance = {"annotator": str(annotator), "edited": bool(edited),
                  "model_prediction": jsonable(model_prediction),
                  "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    row_lesion = {"lesion_id": lesion_id, "center": [float(c) for c in center], "coordinate_system": "LPS",
                  "diameter_mm": float(diameter), "mask": mask_rel,
                  "label": None if lesion.get("label") is None else str(lesion["label"]),
                  "size_mm": None if size is None else float(size), "provenance": provenance}
    row = {"schema": SCHEMA, "case_id": case_id, "patient": patient, "age": age, "sex": sex,
           "images": images, "lesions": [row_lesion], "extra": {}}
    write_json(case_dir / "metadata.json", {
        "case_id": case_id, "patient": patient, "age": age, "sex": sex, "lesion": row_lesion,
        "crop": {"size_mm": float(crop_mm), "voxels": list(grid.GetSize()), "spacing_mm": list(grid.GetSpacing()),
                 "reference_phase": next(iter(images_by_phase))},
        "dicom": deid.deidentify_tags(source_tags, secret, deid_options),
        "deidentification": {"options": [deid.OPTIONS[o]["name"] for o in deid_options],
                             "retained": deid.retained_attributes(source_tags, secret, deid_options)}})
    write_json(root / DESCRIPTION, {"name": "SlicerCAD research export", "manifest": MANIFEST,
                                    "manifest_schema": SCHEMA, "deidentification": deid.description(deid_options)})
    append_cases(root / MANIFEST, [row])
    return row
