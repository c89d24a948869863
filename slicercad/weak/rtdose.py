"""Radiotherapy dose as a label (seed 001 (b3)): an RTDOSE onto an image grid, an isodose level in Gy,
% of a prescription or % of the maximum dose -> a label with one component per target.

RTDOSE geometry (PS3.3 C.8.8.3): frame k sits at ImagePositionPatient + GridFrameOffsetVector[k] x the
slice normal when the first offset is 0 ("relative"); otherwise the offsets are absolute z positions
(allowed only for axial ImageOrientationPatient), frame k at z = offset[k]. Dose = stored value x
DoseGridScaling; DoseUnits GY gives Gy. RELATIVE fixes no scale (PS3.3: "relative to an implicit
reference"): planning systems export a fraction (~1) or percent (~100); ``relative_scale`` "auto" reads
a grid whose maximum exceeds ``PERCENT_IF_MAX_ABOVE`` as percent, else as a fraction ("fraction" /
"percent" override it); the grid is kept as a fraction of the reference (the prescription).
Levels: "Gy"; "%" = % of the prescription (100 % = the prescription isodose; a Gamma Knife plan
prescribed at the 50 % isodose has its prescription isodose at 100 % of prescription = 50 % of max);
"% max" = % of the grid's maximum dose. A dose volume already loaded elsewhere (SlicerRT) is a
SimpleITK image in Gy (or cGy, converted)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import DicomError, GeometryError, InputError

RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"
UNITS = ("Gy", "%", "% max")
UNIT_NAMES = {"% of prescription": "%", "% of max dose": "% max", "%max": "% max"}   # panel / CLI wording
RELATIVE_SCALES = ("auto", "fraction", "percent")
PERCENT_IF_MAX_ABOVE = 2.0   # a RELATIVE grid above 2 (200 % as a fraction) can only be percent


@dataclass
class DoseGrid:
    """Dose image (float32, LPS) with its units: 'GY' (Gy) or 'RELATIVE' (a fraction of the reference,
    ``relative_scale`` saying how the file stored it), its DoseSummationType and FrameOfReferenceUID."""

    image: sitk.Image
    units: str
    summation: str
    relative_scale: str | None = None
    frame_of_reference: str = ""

    def warnings(self) -> list:
        out = []
        if self.summation and self.summation.upper() != "PLAN":
            out.append(f"DoseSummationType is {self.summation} (not PLAN): the grid may hold one beam, fraction "
                       "or a sum of plans, not the whole plan")
        if self.relative_scale == "percent":
            out.append("RELATIVE dose stored as percent (maximum above "
                       f"{PERCENT_IF_MAX_ABOVE:g}): read as % of the reference")
        return out


def read_rtdose(path, relative_scale: str = "auto") -> DoseGrid:
    """An RTDOSE file as a dose image (values x DoseGridScaling) with exact geometry; a RELATIVE grid
    as a fraction of its reference (``relative_scale``, see the module docstring)."""
    import pydicom

    if relative_scale not in RELATIVE_SCALES:
        raise InputError(f"relative_scale must be one of {RELATIVE_SCALES}, got {relative_scale!r}", "relative_scale")

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken file
        raise DicomError(f"not a readable DICOM file ({exc})", path) from exc
    if str(ds.get("Modality", "")) != "RTDOSE" and str(ds.get("SOPClassUID", "")) != RTDOSE_SOP_CLASS:
        raise DicomError(f"not an RTDOSE (Modality {ds.get('Modality')!r})", path)
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "DoseGridScaling"):
        if key not in ds:
            raise DicomError(f"RTDOSE lacks {key}", path)
    scaling = float(ds.DoseGridScaling)
    if not scaling > 0:
        raise DicomError(f"DoseGridScaling must be > 0, got {scaling}", f"{path}: DoseGridScaling")
    units = str(ds.get("DoseUnits", "GY")).upper()
    if units not in ("GY", "RELATIVE"):
        raise DicomError(f"DoseUnits must be GY or RELATIVE, got {units!r}", f"{path}: DoseUnits")
    try:
        pixels = ds.pixel_array.astype(np.float64)
    except Exception as exc:  # noqa: BLE001
        raise DicomError(f"cannot decode the dose pixels ({exc})", path) from exc
    frames = int(ds.get("NumberOfFrames", 1))
    pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
    row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    normal = np.cross(row, col)
    ipp = np.array(ds.ImagePositionPatient, float)
    if frames > 1:
        if "GridFrameOffsetVector" not in ds:
            raise DicomError("multi-frame RTDOSE lacks GridFrameOffsetVector", path)
        offsets = np.array(ds.GridFrameOffsetVector, float).ravel()
        if len(offsets) != frames:
            raise DicomError(f"GridFrameOffsetVector has {len(offsets)} values for {frames} frames",
                             f"{path}: GridFrameOffsetVector")
        if offsets[0] != 0.0:                      # absolute: z coordinates, axial only
            if not np.allclose(np.abs(normal), [0, 0, 1], atol=1e-4):
                raise DicomError("absolute GridFrameOffsetVector (first value != 0) is allowed only for "
                                 "axial dose grids", f"{path}: GridFrameOffsetVector")
            offsets = (offsets - ipp[2]) * normal[2]
        steps = np.diff(offsets)
        if np.any(steps == 0) or not np.allclose(steps, steps[0], rtol=1e-3, atol=1e-3):
            raise DicomError(f"GridFrameOffsetVector is not uniformly spaced ({offsets[:5].tolist()}...)",
                             f"{path}: GridFrameOffsetVector")
        dz = float(steps[0])
        if dz < 0:                                  # frames run against the normal: reverse them
            pixels, dz, ipp = pixels[::-1], -dz, ipp + offsets[-1] * normal
        else:
            ipp = ipp + offsets[0] * normal
    else:
        dz = float(ds.get("SliceThickness", 1.0) or 1.0)
    values = pixels * scaling
    scale = None
    if units == "RELATIVE":
        scale = relative_scale if relative_scale != "auto" else (
            "percent" if float(values.max()) > PERCENT_IF_MAX_ABOVE else "fraction")
        values = values / 100.0 if scale == "percent" else values
    image = sitk.GetImageFromArray(values.astype(np.float32))
    sy, sx = (float(v) for v in ds.PixelSpacing)
    image.SetSpacing((sx, sy, dz))
    image.SetOrigin(ipp.tolist())
    image.SetDirection(np.column_stack([row, col, normal]).ravel().tolist())
    return DoseGrid(image, units, str(ds.get("DoseSummationType", "")), scale, str(ds.get("FrameOfReferenceUID", "")))


def frame_of_reference_warnings(dose_frame: str, image_frame: str) -> list:
    """A warning when the RTDOSE and the image name different FrameOfReferenceUIDs (either unknown: none)."""
    if dose_frame and image_frame and dose_frame != image_frame:
        return [f"the RTDOSE's FrameOfReferenceUID {dose_frame} is not the image's {image_frame}: their "
                "coordinates are unrelated unless registered; the label is likely misplaced"]
    return []


def rtplan_prescriptions(path) -> list:
    """Every TargetPrescriptionDose (Gy) of an RTPLAN's DoseReferenceSequence, in order."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DicomError(f"not a readable DICOM file ({exc})", path) from exc
    doses = [float(r.TargetPrescriptionDose) for r in ds.get("DoseReferenceSequence", [])
             if "TargetPrescriptionDose" in r]
    if not doses:
        raise DicomError("RTPLAN has no TargetPrescriptionDose in DoseReferenceSequence: give the "
                         "prescription in Gy", path)
    return doses


def prescription_from_rtplan(path) -> tuple:
    """(the largest TargetPrescriptionDose in Gy, warnings): targets prescribed differently are named,
    since one % level then means a different isodose for each."""
    doses = rtplan_prescriptions(path)
    warnings = []
    if len(set(doses)) > 1:
        warnings.append(f"the RTPLAN prescribes {sorted(set(doses))} Gy to its {len(doses)} targets: % levels use "
                        f"the largest, {max(doses):g} Gy; give the prescription of the target you want")
    return max(doses), warnings


def dose_on_grid(dose: sitk.Image, reference: sitk.Image, source: str = "RTDOSE") -> np.ndarray:
    """Dose resampled (linear) onto ``reference``'s grid [k, j, i]; GeometryError if they do not overlap."""
    out = sitk.Resample(sitk.Cast(dose, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear,
                        np.nan, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(out)
    if not np.isfinite(arr).any():
        raise GeometryError("the dose grid does not overlap the image: check that the RTDOSE belongs to "
                            "this study (FrameOfReferenceUID) and its GridFrameOffsetVector", source)
    return np.nan_to_num(arr, nan=0.0)


def normalise_unit(unit: str) -> str:
    """The level's unit as one of UNITS (the panel's wording accepted)."""
    unit = UNIT_NAMES.get(unit, unit)
    if unit not in UNITS:
        raise InputError(f"isodose unit must be one of {UNITS + tuple(UNIT_NAMES)}, got {unit!r}", "unit")
    return unit


def threshold_gy(level: float, unit: str = "Gy", prescription_gy: float | None = None,
                 units: str = "GY", max_dose: float | None = None) -> float:
    """The isodose level in the dose grid's own units (Gy, or a fraction of the reference for RELATIVE);
    ``max_dose`` (grid units) for a level in "% max"."""
    unit = normalise_unit(unit)
    level = float(level)
    if not level > 0:
        raise InputError(f"isodose level must be > 0, got {level}", "level")
    if unit == "% max":
        if max_dose is None or not float(max_dose) > 0:
            raise InputError("a level in % of max needs a dose grid with a maximum > 0", "max_dose")
        return level / 100.0 * float(max_dose)
    if unit == "%":
        if units == "RELATIVE":
            return level / 100.0
        if prescription_gy is None or not float(prescription_gy) > 0:
            raise InputError("a level in % of prescription needs the prescription dose in Gy (> 0), from the user "
                             "or an RTPLAN", "prescription_gy")
        return level / 100.0 * float(prescription_gy)
    if units == "RELATIVE":
        if prescription_gy is None or not float(prescription_gy) > 0:
            raise InputError("a RELATIVE dose grid needs the prescription in Gy for a level in Gy",
                             "prescription_gy")
        return level / float(prescription_gy)
    return level


def isodose_components(dose_kji: np.ndarray, threshold: float, spacing_xyz, min_volume_mm3: float = 0.0):
    """(label array with components 1..n ordered by volume, [{label, volume_mm3, max_dose, voxels}])."""
    mask = dose_kji >= threshold
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    voxel = float(np.prod(spacing_xyz))
    comps = []
    for i in range(1, n + 1):
        region = lab == i
        vol = float(region.sum() * voxel)
        if vol >= min_volume_mm3:
            comps.append((vol, float(dose_kji[region].max()), i))
    comps.sort(key=lambda c: -c[0])
    out = np.zeros(lab.shape, np.uint16)
    table = []
    for new, (vol, dmax, old) in enumerate(comps, start=1):
        out[lab == old] = new
        table.append({"label": new, "volume_mm3": vol, "max_dose": dmax})
    return out, table


def isodose_label(dose: sitk.Image, reference: sitk.Image, level: float, unit: str = "Gy",
                  prescription_gy: float | None = None, units: str = "GY", min_volume_mm3: float = 0.0,
                  source: str = "RTDOSE") -> tuple:
    """(label image on ``reference`` -- one component per target, table). InputError when nothing reaches
    the level."""
    arr = dose_on_grid(dose, reference, source)
    max_dose = float(np.max(sitk.GetArrayViewFromImage(dose)))     # of the whole grid, not the image's part
    thr = threshold_gy(level, unit, prescription_gy, units, max_dose)
    lab, table = isodose_components(arr, thr, reference.GetSpacing(), min_volume_mm3)
    if not table:
        raise InputError(f"no voxel of the image reaches the {level:g} {unit} isodose (maximum dose on this "
                         f"grid {arr.max():.3g} {'Gy' if units == 'GY' else 'relative'})", "level")
    image = sitk.GetImageFromArray(lab)
    image.CopyInformation(reference)
    return image, table
