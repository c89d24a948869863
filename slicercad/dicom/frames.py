"""One record per image frame: what a header says about a frame's geometry and acquisition.

Classic single-frame files give one frame; enhanced CT/MR objects give one frame per item of the
per-frame functional groups; legacy multi-frame files give one frame per frame, marked as a time
series when a Frame Increment Pointer says the frames follow each other in time.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID

from ..errors import DicomError
from .read_tags import _float, _int, b_value, frame_item, inversion_time, temporal_position, trigger_time

# Modalities that hold no displayable greyscale volume for this project.
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "DOC", "REG"}
# Frame Increment Pointer targets that step through space rather than time (NM/legacy volumes).
_SPATIAL_POINTERS = {(0x0054, 0x0080), (0x0018, 0x2005)}  # SliceVector, SliceLocationVector


@dataclasses.dataclass
class FrameInfo:
    """Header facts about one frame; ``index`` is the frame number inside ``path``."""

    path: Path
    index: int
    rows: int
    cols: int
    iop: Optional[tuple] = None            # row and column direction cosines (LPS)
    ipp: Optional[tuple] = None            # position of the first transmitted pixel (LPS, mm)
    pixel_spacing: Optional[tuple] = None  # (between rows, between columns) mm; None if absent/zero
    slice_spacing: Optional[float] = None  # SpacingBetweenSlices or SliceThickness (frames without IPP)
    slope: float = 1.0
    intercept: float = 0.0
    b_value: Optional[float] = None
    inversion_time: Optional[float] = None
    trigger_time: Optional[float] = None
    temporal_position: Optional[int] = None
    acquisition_number: Optional[int] = None
    instance_number: Optional[int] = None
    frame_time: Optional[float] = None     # ms from the first frame of a legacy multi-frame time series
    image_type: tuple = ()
    photometric: str = "MONOCHROME2"
    localizer: bool = False
    timeseries: bool = False               # legacy multi-frame with a temporal Frame Increment Pointer

    @property
    def normal(self) -> Optional[np.ndarray]:
        if self.iop is None:
            return None
        row, col = np.array(self.iop[:3]), np.array(self.iop[3:])
        return np.cross(row, col)


def read_header(path) -> pydicom.Dataset:
    """Header of a DICOM file (large values such as pixel data are deferred, not read). Non-DICOM
    input raises InvalidDicomError; a header that cannot be parsed raises DicomError naming the file.
    Every element except pixel data is decoded here, so a damaged one fails now and not later."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, defer_size=4096)
    except InvalidDicomError:
        # files without the 128-byte preamble are still DICOM when they parse into an image header
        try:
            ds = pydicom.dcmread(path, defer_size=4096, force=True)
        except Exception:
            raise InvalidDicomError(f"{path}: not a DICOM file") from None
        if "SOPClassUID" not in ds or "Rows" not in ds:
            raise InvalidDicomError(f"{path}: not a DICOM file") from None
    except Exception as exc:  # pydicom raises many kinds on truncated or corrupt headers
        raise DicomError(f"corrupt or truncated DICOM header ({type(exc).__name__}: {exc})", path) from None
    size = path.stat().st_size
    meta = getattr(ds, "file_meta", None)
    for part in (meta, ds) if meta is not None else (ds,):
        _decode_all(part, path, size)
    return ds


_PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}


def _decode_all(ds, path, size: int) -> None:
    """Decode every element (recursing into sequences) but pixel data; a deferred value that runs
    past the end of the file, or a value that does not fit its VR, raises DicomError naming the tag."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        tell = getattr(raw, "value_tell", None)
        if getattr(raw, "value", 0) is None and tell is not None and raw.length != 0xFFFFFFFF \
                and tell + raw.length > size:
            raise DicomError(f"corrupt or truncated: element {Tag(tag)} declares {raw.length} bytes at offset "
                             f"{tell}, the file has {size}", path)
        if tag in _PIXEL_TAGS:
            continue
        try:
            elem = ds[tag]  # decodes the raw value (reads a deferred one from the file)
        except Exception as exc:  # pydicom: wrong length for the VR, unknown VR, broken sequence...
            raise DicomError(f"corrupt element {Tag(tag)} ({type(exc).__name__}: {exc})", path) from None
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_all(item, path, size)


def check_pixel_data(ds, path) -> None:
    """DicomError when an image object has no pixel data or its uncompressed pixel data is cut short."""
    element = ds.get_item("PixelData") if "PixelData" in ds else None
    if element is None:
        raise DicomError("corrupt or truncated: image object without pixel data", path)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not UID(str(syntax)).is_transfer_syntax:
        raise DicomError(f"TransferSyntaxUID {str(syntax)!r} is not a known transfer syntax; the pixel data "
                         "cannot be decoded", path)
    frames = _int(ds.get("NumberOfFrames")) or 1
    available = Path(path).stat().st_size - int(getattr(element, "file_tell", 0) or 0)
    if syntax is None or UID(str(syntax)).is_compressed or getattr(element, "is_undefined_length", False):
        if frames > max(available, 0) // 8:  # each encapsulated frame needs at least an 8-byte item header
            raise DicomError(f"NumberOfFrames={frames} cannot fit in {max(available, 0)} bytes of pixel data", path)
        return
    expected = (_int(ds.get("Rows")) or 0) * (_int(ds.get("Columns")) or 0) * (_int(ds.get("NumberOfFrames")) or 1) \
        * (_int(ds.get("SamplesPerPixel")) or 1) * (_int(ds.get("BitsAllocated")) or 16) // 8
    if available < expected:
        raise DicomError(f"corrupt or truncated: pixel data has {max(available, 0)} of {expected} bytes", path)


def _vector(value, n) -> Optional[tuple]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and np.all(np.isfinite(out)) else None


def _spacing(value) -> Optional[tuple]:
    out = _vector(value, 2) if value is not None else None
    return out if out is not None and min(out) > 0 else None


def _slice_spacing(ds) -> Optional[float]:
    """SpacingBetweenSlices, else SliceThickness, when finite and positive (mm)."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _float(ds.get(keyword))
        if value is not None and np.isfinite(value) and value > 0:
            return value
    return None


def _iop(value, path) -> Optional[tuple]:
    out = _vector(value, 6) if value is not None else None
    if out is None:
        return None
    row, col = np.array(out[:3]), np.array(out[3:])
    if np.linalg.norm(row) < 1e-3 or np.linalg.norm(col) < 1e-3:
        return None
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    if not (np.all(np.isfinite(row)) and np.all(np.isfinite(col)) and abs(np.linalg.norm(row) - 1) < 1e-3
            and abs(np.linalg.norm(col) - 1) < 1e-3 and abs(float(np.dot(row, col))) < 1e-2):
        raise DicomError(f"ImageOrientationPatient {list(out)} is not two orthogonal direction cosines", path)
    return tuple(np.r_[row, col])


def _classic_frame(ds, path, index, base) -> FrameInfo:
    spacing = _spacing(ds.get("PixelSpacing"))
    if spacing is None:
        spacing = _spacing(ds.get("ImagerPixelSpacing"))
    ipp = ds.get("ImagePositionPatient")
    return FrameInfo(
        path=path, index=index, iop=_iop(ds.get("ImageOrientationPatient"), path),
        ipp=_vector(ipp, 3) if ipp is not None else None, pixel_spacing=spacing,
        slope=_float(ds.get("RescaleSlope")) or 1.0, intercept=_float(ds.get("RescaleIntercept")) or 0.0,
        b_value=b_value(ds), inversion_time=inversion_time(ds), trigger_time=trigger_time(ds),
        temporal_position=temporal_position(ds), **base)


def _enhanced_frame(ds, path, index, base) -> FrameInfo:
    position = frame_item(ds, index, "PlanePositionSequence")
    orientation = frame_item(ds, index, "PlaneOrientationSequence")
    measures = frame_item(ds, index, "PixelMeasuresSequence")
    transform = frame_item(ds, index, "PixelValueTransformationSequence")
    content = frame_item(ds, index, "FrameContentSequence")
    ipp = position.get("ImagePositionPatient") if position is not None else None
    iop = orientation.get("ImageOrientationPatient") if orientation is not None else None
    spacing = measures.get("PixelSpacing") if measures is not None else None
    base = dict(base)
    if content is not None and content.get("FrameAcquisitionNumber") is not None:
        base["acquisition_number"] = _int(content.FrameAcquisitionNumber)
    frame_type = frame_item(ds, index, "MRImageFrameTypeSequence") or frame_item(ds, index, "CTImageFrameTypeSequence")
    if frame_type is not None and frame_type.get("FrameType"):
        base["image_type"] = tuple(str(v).upper() for v in frame_type.FrameType)
        base["localizer"] = "LOCALIZER" in base["image_type"]
    return FrameInfo(
        path=path, index=index, iop=_iop(iop, path) if iop is not None else _iop(ds.get("ImageOrientationPatient"), path),
        ipp=_vector(ipp, 3) if ipp is not None else None,
        pixel_spacing=_spacing(spacing) if spacing is not None else _spacing(ds.get("PixelSpacing")),
        slope=(_float(transform.get("RescaleSlope")) if transform is not None else None) or 1.0,
        intercept=(_float(transform.get("RescaleIntercept")) if transform is not None else None) or 0.0,
        b_value=b_value(ds, index), inversion_time=inversion_time(ds, index), trigger_time=trigger_time(ds, index),
        temporal_position=temporal_position(ds, index), **base)


def _frame_times(ds, n) -> Optional[list]:
    """Frame times (ms from the first frame) of a legacy multi-frame, from FrameTimeVector or FrameTime."""
    vector = ds.get("FrameTimeVector")
    if vector is not None and len(vector) == n:
        return list(np.cumsum([float(v) for v in vector]) - float(vector[0]))
    step = _float(ds.get("FrameTime"))
    return [i * step for i in range(n)] if step else None


def frames_from_header(ds, path) -> list[FrameInfo]:
    """All frames a header describes (see module docstring)."""
    path = Path(path)
    n = _int(ds.get("NumberOfFrames")) or 1
    if n < 1:
        raise DicomError(f"NumberOfFrames={n}; a positive frame count is expected", path)
    image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or ()))
    base = dict(
        rows=_int(ds.get("Rows")) or 0, cols=_int(ds.get("Columns")) or 0,
        acquisition_number=_int(ds.get("AcquisitionNumber")), instance_number=_int(ds.get("InstanceNumber")),
        image_type=image_type, photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
        localizer="LOCALIZER" in image_type)
    if base["rows"] <= 0 or base["cols"] <= 0:
        raise DicomError("image has no Rows/Columns", path)
    for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if group in ds and ds[group].VR != "SQ":
            raise DicomError(f"{group} is not a sequence (VR {ds[group].VR})", path)
    if ds.get("PerFrameFunctionalGroupsSequence") or ds.get("SharedFunctionalGroupsSequence"):
        return [_enhanced_frame(ds, path, i, base) for i in range(n)]
    frames = [_classic_frame(ds, path, i, base) for i in range(n)]
    if n > 1:
        pointer = ds.get("FrameIncrementPointer")
        pointers = {tuple((int(t) >> 16, int(t) & 0xFFFF)) for t in (pointer if isinstance(pointer, (list, tuple))
                    or type(pointer).__name__ == "MultiValue" else [pointer])} if pointer is not None else set()
        thickness = _slice_spacing(ds)
        times = _frame_times(ds, n) if pointers and not pointers & _SPATIAL_POINTERS else None
        for i, f in enumerate(frames):
            f.slice_spacing = thickness
            if i > 0:
                f.ipp = None  # only the first frame's position is known for a legacy multi-frame
            if pointers and not pointers & _SPATIAL_POINTERS:
                f.timeseries = True
                f.frame_time = times[i] if times else float(i)
    else:
        frames[0].slice_spacing = _slice_spacing(ds)
    return frames
