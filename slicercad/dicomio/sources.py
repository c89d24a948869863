"""The source series a result is derived from: its datasets in the result's slice order, with the original
UIDs (never de-identified ones) so a PACS or Slicer shows the result on the same voxels."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

# empty Type 2 attributes highdicom copies from the source (filled in memory only, never written back)
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")


def read_source(path):
    """One source dataset's header (no pixel data: a result references the source, it never copies its
    pixels) with its Type 2 study/patient attributes present (empty when missing)."""
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    for keyword in TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


PROJECTION_MODALITIES = ("CR", "DX", "MG", "RG", "PX", "IO")


def is_projection_radiograph(files) -> bool:
    """Whether the series is a projection radiograph without a Frame of Reference (Modality CR, DX, MG, RG, PX
    or IO, no FrameOfReferenceUID in its first file): a SEG or Parametric Map cannot be placed on it. Anything
    else keeps the cross-sectional path and its checks (an Enhanced CT is not mistaken for a radiograph)."""
    files = list(files)
    if not files:
        raise InputError("no source files", "series")
    ds = read_source(files[0])
    return str(ds.get("Modality", "")).upper() in PROJECTION_MODALITIES and not ds.get("FrameOfReferenceUID")


def sorted_sources(files, image) -> list:
    """Source datasets in ``image``'s slice order (by position along its k axis): one per label slice.

    Only for results on the grid of an unresampled single-frame series; anything else is an InputError
    naming the file (a resampled volume cannot be referenced slice by slice; two instances at one position - a
    multi-echo or multi-phase series - or slices of another orientation or size leave the slice ambiguous)."""
    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    origin = np.array(image.GetOrigin(), float)
    step = float(image.GetSpacing()[2])
    by_k, geometry = {}, None
    for f in files:
        ds = read_source(f)
        if "ImagePositionPatient" not in ds:
            raise InputError("a source file has no ImagePositionPatient (not a single-frame slice)", str(f))
        k = float((np.array(ds.ImagePositionPatient, float) - origin) @ direction[:, 2]) / step
        if abs(k - round(k)) > 0.05:
            raise InputError("the result's grid does not match the source series (a resampled volume?): a DICOM "
                             "result needs the series' own slices", str(f))
        shape = (int(ds.Rows), int(ds.Columns), tuple(round(float(v), 4) for v in ds.ImageOrientationPatient))
        geometry = geometry or (shape, f)
        if shape != geometry[0]:
            raise InputError(f"a source slice has another size or orientation than {Path(geometry[1]).name} "
                             f"(rows, columns, orientation {shape} vs {geometry[0]})", str(f))
        if int(round(k)) in by_k:
            other = by_k[int(round(k))]
            raise InputError(f"two instances at one slice position ({other.filename} and this one: several "
                             f"echoes, phases or b-values in one series?); give the files of one volume", str(f))
        by_k[int(round(k))] = ds
    n = image.GetSize()[2]
    if sorted(by_k) != list(range(n)):
        raise InputError(f"the series has {len(by_k)} slices at the result's positions, the result {n}", "series")
    sources = [by_k[k] for k in range(n)]
    uids = {ds.SeriesInstanceUID for ds in sources}
    if len(uids) != 1:
        raise InputError(f"the source files belong to {len(uids)} series; a result references one", "series")
    return sources


@dataclass
class SeriesRef:
    """What an SR needs to reference a source series (UIDs exactly as in the source files)."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    instances: list          # SOPInstanceUIDs in slice order

    @classmethod
    def of(cls, sources) -> "SeriesRef":
        first = sources[0]
        return cls(str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                   str(first.get("FrameOfReferenceUID", "")),      # none on a projection radiograph (CR, DX)
                   str(first.SOPClassUID), [str(ds.SOPInstanceUID) for ds in sources])


def nearest_slice(image, point_lps) -> tuple:
    """(k, i, j) continuous index of an LPS point on ``image``; k rounded to the nearest slice."""
    i, j, k = image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])
    return int(round(k)), float(i), float(j)


def series_sources(files) -> list:
    """Every instance of one series (no grid check: a result with no spatial content, e.g. a TI scout's
    frames at one slice position), in file order, duplicates (frames of one multi-frame file) once."""
    files = list(dict.fromkeys(str(f) for f in files))
    if not files:
        raise InputError("no source files", "series")
    sources = [read_source(f) for f in files]
    uids = {str(ds.SeriesInstanceUID) for ds in sources}
    if len(uids) != 1:
        raise InputError(f"the source files belong to {len(uids)} series; a result references one", files[0])
    return sources
