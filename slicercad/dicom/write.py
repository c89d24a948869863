"""Write a SimpleITK image as a classic DICOM series (one file per slice, real geometry)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage, generate_uid

from ..atomic import atomic_path
from ..errors import DicomError, InputError

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _tm(seconds: float) -> str:
    h, rest = divmod(float(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def _rescale(values: np.ndarray) -> tuple[float, float]:
    """Slope and intercept mapping ``values`` into int16 storage (exact for int16-range integers)."""
    lo, hi = float(values.min()), float(values.max())
    if np.all(values == np.round(values)) and lo >= -32768 and hi <= 32767:
        return 1.0, 0.0
    slope = (hi - lo) / 65000.0 if hi > lo else 1.0
    return slope, (hi + lo) / 2.0


def _set(ds: Dataset, keyword: str, value) -> None:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise InputError(f"unknown DICOM keyword {keyword!r}", "tags")
    if dictionary_VR(tag) == "TM" and isinstance(value, (int, float)):
        value = _tm(value)
    setattr(ds, keyword, value)


def write_series(image: sitk.Image, folder, *, modality="MR", series_description="", study_uid=None,
                 series_uid=None, series_number=1, tags: dict | None = None, patient: dict | None = None,
                 shuffle_names: bool = False, seed: int = 0) -> list[Path]:
    """Write ``image`` (3D, LPS) into ``folder`` as one file per slice; returns the paths in slice order.

    ImagePositionPatient/ImageOrientationPatient follow the image geometry (oblique, anisotropic);
    voxels are stored as int16 with RescaleSlope/Intercept chosen to hold the values. ``tags`` and
    ``patient`` map DICOM keywords to values (TM keywords also accept seconds since midnight).
    Each file is written atomically; on failure the files already written are removed.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"a 3D scalar image is required, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components", "image")
    folder = Path(folder)
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    slope, intercept = _rescale(values)
    stored = np.clip(np.round((values - intercept) / slope), -32768, 32767).astype(np.int16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing, origin = np.array(image.GetSpacing()), np.array(image.GetOrigin())
    study_uid = study_uid or _uid("study", seed)
    series_uid = series_uid or _uid("series", study_uid, series_number, series_description, seed)
    frame_uid = _uid("frame", study_uid, seed)
    extra = dict(tags or {})
    order = np.random.default_rng(seed).permutation(len(stored)) if shuffle_names else np.arange(len(stored))
    written: list[Path] = []
    try:
        for k, pixels in enumerate(stored):
            sop_uid = _uid("sop", series_uid, series_number, series_description, sorted(extra.items()),
                           origin.tolist(), direction.ravel().tolist(), k)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = _SOP_CLASS.get(modality, SecondaryCaptureImageStorage)
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
            ds.Modality, ds.SeriesDescription, ds.SeriesNumber = modality, series_description, series_number
            ds.InstanceNumber = k + 1
            ds.StudyDate = ds.SeriesDate = "20000101"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.PatientName, ds.PatientID = "Phantom^Synthetic", "PHANTOM"
            ds.ImagePositionPatient = [float(v) for v in origin + k * spacing[2] * direction[:, 2]]
            ds.ImageOrientationPatient = [float(v) for v in np.r_[direction[:, 0], direction[:, 1]]]
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
            ds.SliceThickness = ds.SpacingBetweenSlices = float(spacing[2])
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
            for keyword, value in {**(patient or {}), **extra}.items():
                _set(ds, keyword, value)
            ds.PixelData = pixels.tobytes()
            digest = hashlib.sha1(sop_uid.encode()).hexdigest()[:8]
            name = f"IM{int(order[k]):05d}_{digest}.dcm" if shuffle_names else f"S{series_number:03d}_{k + 1:04d}_{digest}.dcm"
            with atomic_path(folder / name) as tmp:
                ds.save_as(tmp, enforce_file_format=True)
            written.append(folder / name)
    except (OSError, ValueError, TypeError) as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise DicomError(f"cannot write slice {len(written)} ({exc})", folder) from None
    return written

