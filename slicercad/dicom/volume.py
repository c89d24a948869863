"""Pixel loading: frames -> a 3D SimpleITK image in LPS with rescaled values and checked geometry.

Geometry rules
- Slices are sorted along the normal of ImageOrientationPatient; two slices at one position,
  mixed orientations or mixed matrix sizes are a SeriesError.
- Gaps between slices are compared with the median gap. A gap of about k >= 2 median gaps, in a
  series where such gaps are rare (at most 1 or 10% of the gaps), is a missing slice: SeriesError
  naming the files on either side. Otherwise unequal gaps (variable spacing) or slice origins that
  drift across the plane (gantry tilt) are resampled onto a regular grid aligned with the slices,
  with linear interpolation (SimpleITK) and a warning; ``strict=True`` makes both a SeriesError.
- Absent or zero PixelSpacing (e.g. a CR with 0\\0) loads with 1 mm and a warning.
- MONOCHROME1 values are inverted (v -> min + max - v) so that the image displays like MONOCHROME2.
- Values are RescaleSlope * stored + RescaleIntercept; int16 when that is exact, float32 otherwise.
- Pixel data is decoded by pydicom (pyjpegls for JPEG-LS); a transfer syntax it has no decoder for
  (JPEG Lossless) by SimpleITK's GDCM; when neither can, a DicomError names the file and the syntax.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from ..errors import DicomError, SeriesError
from ..resources import check_memory
from .frames import FrameInfo, check_pixel_data, frames_from_header, read_header
from .sorting import ORIENTATION_TOL, slice_offset, sort_along_normal

GAP_TOL_REL = 0.01       # gaps within 1% (or GAP_TOL_MM) of the median gap count as regular
GAP_TOL_MM = 0.01
TILT_TOL_MM = 0.01       # slice origins further than this from the normal line mean gantry tilt
_PIXEL_MODULE = ("SamplesPerPixel", "Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored",
                 "HighBit", "PixelRepresentation", "PixelData")


def frames_of_files(files) -> list[FrameInfo]:
    """FrameInfo for every frame of every file; a non-DICOM or unreadable file raises DicomError."""
    frames = []
    for path in files:
        try:
            ds = read_header(path)
        except InvalidDicomError:
            raise DicomError("not a DICOM file", path) from None
        except OSError as exc:
            raise DicomError(f"cannot read file ({exc.strerror})", path) from None
        check_pixel_data(ds, path)
        frames.extend(frames_from_header(ds, path))
    if not frames:
        raise SeriesError("no files given")
    return frames


def pydicom_decodes(syntax) -> bool:
    """Whether pydicom has a decoder with its dependencies installed (pyjpegls for JPEG-LS...)."""
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def gdcm_pixels(ds) -> np.ndarray:
    """Stored values decoded by SimpleITK's GDCM from a copy holding only the pixel module, since GDCM
    would otherwise rescale and invert MONOCHROME1 itself (that stays with ``_values``, as for pydicom)."""
    copy = Dataset()
    for keyword in _PIXEL_MODULE:
        if keyword in ds:
            copy.add(ds[keyword])
    copy.PhotometricInterpretation = "MONOCHROME2"
    copy.SOPClassUID, copy.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    copy.file_meta = FileMetaDataset()
    copy.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    with tempfile.TemporaryDirectory() as tmp:
        name = str(Path(tmp) / "pixels.dcm")
        copy.save_as(name, enforce_file_format=True)
        return sitk.GetArrayFromImage(sitk.ReadImage(name, imageIO="GDCMImageIO"))


def read_pixels(path) -> np.ndarray:
    """Stored pixel values of a file as [frames, rows, cols], decoded by pydicom or, for a transfer
    syntax it has no decoder for (JPEG Lossless), by SimpleITK's GDCM; failures raise DicomError."""
    path = Path(path)
    ds = None
    try:
        ds = pydicom.dcmread(path)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if samples != 1:
            raise DicomError(f"colour image (SamplesPerPixel={samples}); greyscale expected", path)
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is None or pydicom_decodes(syntax):
            array = ds.pixel_array
        else:
            try:
                array = gdcm_pixels(ds)
            except Exception as exc:  # ITK's message ends with its reason on the last line
                reason = str(exc).strip().rpartition("\n")[2]
                raise DicomError(f"cannot decode pixel data ({syntax.name}): pydicom has no decoder for it and "
                                 f"SimpleITK/GDCM failed ({reason})", path) from None
    except DicomError:
        raise
    except Exception as exc:  # truncated data, missing codec, malformed encapsulation...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise DicomError(f"cannot decode pixel data ({name}): {exc}", path) from None
    return array.reshape((-1,) + array.shape[-2:])


def _values(frames: list[FrameInfo]) -> np.ndarray:
    """Rescaled [n, rows, cols] float64 stack of the given frames (files read once each)."""
    cache: dict[Path, np.ndarray] = {}

    def stored(f: FrameInfo) -> np.ndarray:
        if f.path not in cache:
            cache[f.path] = read_pixels(f.path)
        pixels = cache[f.path]
        if f.index >= len(pixels) or pixels.shape[1:] != (f.rows, f.cols):
            raise DicomError(f"frame {f.index} missing or not {f.rows}x{f.cols} in pixel data", f.path)
        return pixels[f.index]

    stored(frames[0])  # the header's Rows/Columns are checked against real pixels before allocating
    check_memory((len(frames), frames[0].rows, frames[0].cols), np.float64, str(frames[0].path), copies=2)
    out = np.empty((len(frames), frames[0].rows, frames[0].cols), dtype=np.float64)
    for n, f in enumerate(frames):
        out[n] = stored(f) * f.slope + f.intercept
    if any(f.photometric == "MONOCHROME1" for f in frames):
        out = out.min() + out.max() - out
    return out


def _to_image(values: np.ndarray, exact_ints: bool) -> sitk.Image:
    if exact_ints and values.size and values.min() >= -32768 and values.max() <= 32767 \
            and np.all(values == np.round(values)):
        return sitk.GetImageFromArray(values.astype(np.int16))
    return sitk.GetImageFromArray(values.astype(np.float32))


def _check_consistent(frames: list[FrameInfo]) -> None:
    first = frames[0]
    for f in frames[1:]:
        if (f.rows, f.cols) != (first.rows, first.cols):
            raise SeriesError(f"matrix {f.rows}x{f.cols} differs from {first.rows}x{first.cols} "
                              f"in {first.path.name}", f.path)
        if (f.iop is None) != (first.iop is None) or (
                f.iop is not None and np.max(np.abs(np.subtract(f.iop, first.iop))) > ORIENTATION_TOL):
            raise SeriesError(f"mixed orientations: {f.iop} vs {first.iop} in {first.path.name}", f.path)


def _gap_analysis(offsets: np.ndarray, frames, strict: bool):
    """(regular spacing or None when resampling is needed, warnings)."""
    gaps = np.diff(offsets)
    for k, g in enumerate(gaps):
        if g < GAP_TOL_MM:
            raise SeriesError(f"two slices at the same position ({offsets[k]:.3f} mm along the normal): "
                              f"{frames[k].path.name} and {frames[k + 1].path.name}", frames[k + 1].path)
    median = float(np.median(gaps))
    tol = max(GAP_TOL_MM, GAP_TOL_REL * median)
    multiples = np.round(gaps / median)
    missing = [k for k in range(len(gaps)) if multiples[k] >= 2 and abs(gaps[k] - multiples[k] * median) < 10 * tol]
    if missing and len(missing) <= max(1, len(gaps) // 10):
        k = missing[0]
        raise SeriesError(f"missing slice: gap of {gaps[k]:.3f} mm between {frames[k].path.name} and "
                          f"{frames[k + 1].path.name} (usual gap {median:.3f} mm)", frames[k].path)
    if np.max(np.abs(gaps - median)) <= tol:
        return (offsets[-1] - offsets[0]) / len(gaps), []
    message = f"irregular slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm)"
    if strict:
        raise SeriesError(message + "; strict mode refuses to resample", frames[0].path)
    return None, [message + ": resampled onto a regular grid"]


def _regularise(values, offsets, inplane, spacing_xy, step) -> tuple[np.ndarray, float]:
    """Resample slices at ``offsets`` (mm along the normal) whose origins sit at ``inplane`` (mm along
    row/column directions, relative to the first) onto slices every ``step`` mm from the first origin."""
    count = int(round((offsets[-1] - offsets[0]) / step)) + 1
    step = (offsets[-1] - offsets[0]) / (count - 1)
    fill = float(values.min())
    reference = sitk.Image(values.shape[2], values.shape[1], sitk.sitkFloat32)
    reference.SetSpacing(spacing_xy)
    shifted: dict[int, np.ndarray] = {}

    def slice_at(k):
        if k not in shifted:
            src = sitk.GetImageFromArray(values[k].astype(np.float32))
            src.SetSpacing(spacing_xy)
            src.SetOrigin(tuple(float(v) for v in inplane[k]))
            shifted[k] = sitk.GetArrayFromImage(sitk.Resample(src, reference, sitk.Transform(), sitk.sitkLinear, fill))
        return shifted[k]

    out = np.empty((count,) + values.shape[1:], dtype=np.float32)
    for t in range(count):
        target = offsets[0] + t * step
        a = int(np.clip(np.searchsorted(offsets, target, side="right") - 1, 0, len(offsets) - 2))
        w = float(np.clip((target - offsets[a]) / (offsets[a + 1] - offsets[a]), 0.0, 1.0))
        out[t] = slice_at(a) if w == 0 else (1 - w) * slice_at(a) + w * slice_at(a + 1)
    return out, step


def assemble(frames: list[FrameInfo], strict: bool = False):
    """3D LPS image and warnings from frames of one volume (see module docstring)."""
    _check_consistent(frames)
    warnings: list[str] = []
    frames = sort_along_normal(frames)
    first = frames[0]
    sy, sx = first.pixel_spacing or (1.0, 1.0)
    if first.pixel_spacing is None:
        warnings.append("pixel spacing unknown (PixelSpacing absent or zero): 1 mm assumed")
    if first.iop is None:
        warnings.append("no ImageOrientationPatient: identity direction assumed")
        row, col = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    else:
        row, col = np.array(first.iop[:3]), np.array(first.iop[3:])
    normal = np.cross(row, col)
    origin = np.array(first.ipp) if first.ipp is not None else np.zeros(3)
    if first.ipp is None:
        warnings.append("no ImagePositionPatient: origin (0, 0, 0) assumed")
    values = _values(frames)
    exact = all(float(f.slope).is_integer() and float(f.intercept).is_integer() for f in frames)
    step = first.slice_spacing or 1.0
    if len(frames) > 1 and all(f.ipp is not None for f in frames) and first.iop is not None:
        offsets = np.array([slice_offset(f) for f in frames])
        rel = np.array([np.subtract(f.ipp, first.ipp) for f in frames])
        inplane = np.c_[rel @ row, rel @ col]
        step, warnings_gap = _gap_analysis(offsets, frames, strict)
        warnings += warnings_gap
        drift = float(np.max(np.linalg.norm(inplane, axis=1)))
        if drift > TILT_TOL_MM:
            tilt = np.degrees(np.arctan2(drift, offsets[-1] - offsets[0]))
            message = f"gantry tilt / sheared stack ({tilt:.2f} degrees)"
            if strict:
                raise SeriesError(message + "; strict mode refuses to resample", first.path)
            warnings.append(message + ": resampled onto a regular grid")
        if step is None or drift > TILT_TOL_MM:
            median = float(np.median(np.diff(offsets)))
            values, step = _regularise(values, offsets, inplane, (sx, sy), median)
            exact = False
    elif len(frames) > 1:
        if not first.slice_spacing:
            warnings.append("no per-frame positions or slice spacing: 1 mm between frames assumed")
        else:
            warnings.append("no per-frame positions: frames stacked in file order")
    image = _to_image(values, exact)
    image.SetSpacing((float(sx), float(sy), float(step)))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in np.c_[row, col, normal].ravel()))
    return image, warnings


def load_volume(files, strict: bool = False) -> tuple[sitk.Image, list[str]]:
    """Load the frames of ``files`` as one 3D volume: (image, warnings)."""
    return assemble(frames_of_files([Path(f) for f in files]), strict)


def _frame_order(frames: list[FrameInfo]):
    for attr in ("inversion_time", "trigger_time", "frame_time", "temporal_position"):
        vals = [getattr(f, attr) for f in frames]
        if all(v is not None for v in vals) and len(set(vals)) == len(vals):
            return [float(v) for v in vals]
    return [float(k) for k in range(len(frames))]


def stack_frames(frames: list[FrameInfo]) -> tuple[np.ndarray, list[float], sitk.Image]:
    """Frames of one slice position ordered by TI/trigger/frame time (see ``load_frames``)."""
    _check_consistent(frames)
    positions = {tuple(np.round(f.ipp, 2)) for f in frames if f.ipp is not None}
    if len(positions) > 1:
        raise SeriesError(f"frames lie at {len(positions)} slice positions; one expected for a time series",
                          frames[0].path)
    keys = _frame_order(frames)
    order = np.argsort(keys, kind="stable")
    frames = [frames[k] for k in order]
    values = _values(frames).astype(np.float32)
    reference, _ = assemble([frames[0]])
    return values, [keys[k] for k in order], reference


def load_frames(files) -> tuple[np.ndarray, list[float], sitk.Image]:
    """A time/inversion series of one slice position: frames [n, rows, cols] (float32, rescaled)
    ordered by inversion time, else trigger time, else frame time; those values in ms (frame
    indices when none is present); and a one-slice 3D image of the first frame carrying the geometry."""
    return stack_frames(frames_of_files([Path(f) for f in files]))
