"""A TI scout: frames of one short-axis slice at increasing inversion time, from DICOM or images.

Where the TI comes from, per frame, in this order (the first source that gives every frame a value
and at least two distinct values wins; a constant InversionTime with varying comments/trigger times
is reported):
1. InversionTime (classic) or the enhanced MR per-frame ``MRModifierSequence > InversionTimes``;
2. text such as ``TI 150`` / ``TI=150 ms`` in ImageComments (some vendors' Look-Locker scouts);
3. TriggerTime (or the enhanced ``NominalCardiacTriggerDelayTime``): it counts from the R-wave, so it
   orders frames and gives TI *differences* only. The scout is then on a **relative** scale (first
   frame = 0 ms, ``relative=True``) unless the user gives the first frame's TI (``first_ti_ms``).
Frames are sorted by TI whatever the file order; duplicate TIs, gaps (a missing frame: a step > 1.8x
the median step) and TIs that do not increase in acquisition (InstanceNumber) order are reported in
``warnings``. Fewer than 3 distinct TIs, NaN pixels, mixed frame sizes or orientations are errors.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
from pydicom.errors import InvalidDicomError

from ..errors import DicomError, InputError, SeriesError
from .constants import MIN_DISTINCT_TIS

TI_COMMENT = re.compile(r"\bTI\s*[=:]?\s*(\d+(?:\.\d+)?)\s*(?:ms)?\b", re.IGNORECASE)
GAP_FACTOR = 1.8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclasses.dataclass
class TIScout:
    """Frames [n, rows, cols] float32 sorted by ``ti_ms``; ``relative``: TIs known only up to a shift."""

    frames: np.ndarray
    ti_ms: np.ndarray
    ti_source: str
    relative: bool = False
    series_instance_uid: str = ""
    series_description: str = ""
    pixel_spacing_mm: Optional[tuple] = None       # (row, col); None for photos
    files: list = dataclasses.field(default_factory=list)
    meta: dict = dataclasses.field(default_factory=dict)   # rr_ms, field_strength_t, minutes_since_injection...
    warnings: list = dataclasses.field(default_factory=list)
    reference: object = None                       # one-slice SimpleITK image with the DICOM geometry
    photo: bool = False

    @property
    def n_frames(self) -> int:
        return int(len(self.ti_ms))


def _check_pixels(frames: np.ndarray, source) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(frames.reshape(len(frames), -1)), axis=1))
    if bad.size:
        raise InputError(f"frame {int(bad[0])} has NaN or infinite pixels", source)
    flat = frames.reshape(len(frames), -1)
    if len(frames) > 1 and np.all(np.ptp(flat - flat[:1], axis=0) == 0):
        raise InputError("all frames are identical: not an inversion-recovery series", source)


def check_tis(ti_ms, order_hint=None, source="TI") -> tuple[np.ndarray, list]:
    """(sorting order, warnings) for a TI list; raises InputError for NaN or < 3 distinct TIs.

    ``order_hint``: acquisition order (InstanceNumber) of the same frames, to report TIs that do not
    increase along it."""
    ti = np.asarray(ti_ms, dtype=float).reshape(-1)
    if ti.size == 0:
        raise InputError("no frames", source)
    if not np.all(np.isfinite(ti)):
        raise InputError(f"TI values must be finite numbers, got {ti.tolist()}", source)
    distinct = np.unique(ti)
    if distinct.size < MIN_DISTINCT_TIS:
        raise InputError(f"{distinct.size} distinct TI value(s) {distinct.tolist()}; an inversion-recovery "
                         f"fit needs at least {MIN_DISTINCT_TIS}", source)
    warnings = []
    order = np.argsort(ti, kind="stable")
    values, counts = np.unique(ti, return_counts=True)
    for v in values[counts > 1]:
        warnings.append(f"duplicate TI {v:g} ms ({int(counts[values == v][0])} frames)")
    steps = np.diff(distinct)
    median = float(np.median(steps))
    for lo, hi, step in zip(distinct[:-1], distinct[1:], steps):
        if step > GAP_FACTOR * median:
            warnings.append(f"TI gap {lo:g} -> {hi:g} ms ({step:g} ms vs median step {median:g} ms): "
                            "missing frame(s)?")
    if order_hint is not None and all(h is not None for h in order_hint):
        seq = ti[np.argsort(np.asarray(order_hint, dtype=float), kind="stable")]
        if np.any(np.diff(seq) < 0):
            warnings.append("TIs do not increase in acquisition (InstanceNumber) order; frames sorted by TI")
    return order, warnings


def _dicom_files(path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("no such file or folder", path)
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _comment_ti(ds) -> Optional[float]:
    match = TI_COMMENT.search(str(ds.get("ImageComments", "") or ""))
    return float(match.group(1)) if match else None


MIDNIGHT_WRAP_S = 6 * 3600.0   # a negative interval is taken as crossing midnight only within this of it


def _minutes_between(later_s, earlier_s) -> Optional[float]:
    """Minutes from ``earlier_s`` to ``later_s`` (seconds of the day); a negative interval wraps only
    when it plausibly crossed midnight (both times within 6 h of it), else None (unknown)."""
    if later_s is None or earlier_s is None:
        return None
    delta = later_s - earlier_s
    if delta < 0:
        if later_s > MIDNIGHT_WRAP_S or earlier_s < 86400.0 - MIDNIGHT_WRAP_S:
            return None
        delta += 86400.0
    return delta / 60.0


def _series_meta(ds) -> dict:
    from ..dicom.read_tags import _float
    from ..dicom.tags import parse_dicom_time

    rr = _float(ds.get("NominalInterval"))
    hr = _float(ds.get("HeartRate"))
    if not rr and hr:
        rr = 60000.0 / hr
    acq = parse_dicom_time(ds.get("AcquisitionTime")) or parse_dicom_time(ds.get("SeriesTime"))
    bolus = parse_dicom_time(ds.get("ContrastBolusStartTime"))
    since = _minutes_between(acq, bolus)
    notes = []
    if since is None and acq is not None and bolus is not None:
        notes.append("ContrastBolusStartTime is after AcquisitionTime (not across midnight): time since injection "
                     "unknown, the drift rule assumes its default")
    return {"time_warnings": notes,"rr_ms": rr or None, "field_strength_t": _float(ds.get("MagneticFieldStrength")),
            "manufacturer": str(ds.get("Manufacturer", "") or ""),
            "minutes_since_injection": since,
            "series_description": str(ds.get("SeriesDescription", "") or ""),
            "image_type": [str(v) for v in (ds.get("ImageType") or [])]}


def _pick_ti(records, first_ti_ms, source) -> tuple[np.ndarray, str, bool, list]:
    """(ti, source name, relative, warnings) from per-frame candidate values."""
    warnings = []
    for key, name in (("inversion", "InversionTime"), ("comment", "ImageComments")):
        vals = [r[key] for r in records]
        if all(v is not None for v in vals):
            if len(set(vals)) >= 2:
                return np.array(vals, float), name, False, warnings
            warnings.append(f"{name} is {vals[0]:g} ms on every frame: not used as the frames' TI")
    trig = [r["trigger"] for r in records]
    if all(v is not None for v in trig) and len(set(trig)) >= 2:
        rel = np.array(trig, float) - min(trig)
        if first_ti_ms is not None:
            warnings.append(f"TI from TriggerTime differences + the first frame's TI {first_ti_ms:g} ms given by "
                            "the user")
            return rel + float(first_ti_ms), "TriggerTime + user first TI", False, warnings
        warnings.append("TI only from TriggerTime (counts from the R-wave): TIs are RELATIVE to the first frame "
                        "(0 ms); give the first frame's TI (--first-ti) for absolute values")
        return rel, "TriggerTime (relative)", True, warnings
    raise InputError("no per-frame TI: InversionTime, 'TI <ms>' in ImageComments and TriggerTime are all missing "
                     "or constant; give the TIs yourself (images with --ti)", source)


def load_dicom_scouts(path, first_ti_ms: Optional[float] = None) -> list[TIScout]:
    """Every TI scout under ``path`` (a file or folder; one file per frame or multi-frame): one per
    series and slice position, frames sorted by TI. Non-DICOM files are skipped."""
    from ..dicom.frames import check_pixel_data, frames_from_header, read_header
    from ..dicom.read_tags import _int
    from ..dicom.volume import _check_consistent, _values, assemble

    groups: dict = {}
    headers = {}
    for f in _dicom_files(path):
        try:
            ds = read_header(f)
        except (InvalidDicomError, OSError):
            continue
        if "PixelData" not in ds:
            continue
        check_pixel_data(ds, f)
        headers[f] = ds
        for fr in frames_from_header(ds, f):
            pos = tuple(np.round(fr.ipp, 1)) if fr.ipp is not None else None
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            groups.setdefault((uid, pos), []).append((fr, ds))
    if not groups:
        raise InputError("no DICOM image files found", path)
    scouts = []
    for (uid, pos), items in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        frames = [fr for fr, _ in items]
        src = frames[0].path if len(frames) == 1 else Path(path)
        _check_consistent(frames)
        records = []
        for fr, ds in items:
            records.append({"inversion": fr.inversion_time, "trigger": fr.trigger_time,
                            "comment": None,
                            "instance": fr.instance_number if ds.get("NumberOfFrames") in (None, 1, "1")
                            else (_int(ds.get("InstanceNumber")) or 0) * 100000 + fr.index})
        if len({r["inversion"] for r in records}) < 2:   # absent or constant InversionTime: try the comments
            for r, (fr, ds) in zip(records, items):
                r["comment"] = _comment_ti(ds)
        ti, ti_source, relative, warnings = _pick_ti(records, first_ti_ms, f"series {uid or '?'}")
        order, more = check_tis(ti, [r["instance"] for r in records], f"series {uid or '?'}")
        warnings += more
        frames = [frames[k] for k in order]
        values = _values(frames).astype(np.float32)
        _check_pixels(values, f"series {uid or '?'}")
        reference, _ = assemble([frames[0]])
        ds0 = items[0][1]
        meta = _series_meta(ds0)
        warnings += meta.pop("time_warnings")
        if len(groups) > 1 and pos is not None:
            meta["slice_position_lps"] = list(pos)
        scouts.append(TIScout(
            frames=values, ti_ms=ti[order], ti_source=ti_source, relative=relative,
            series_instance_uid=uid, series_description=meta["series_description"],
            pixel_spacing_mm=tuple(frames[0].pixel_spacing) if frames[0].pixel_spacing else None,
            files=[str(fr.path) for fr in frames], meta=meta, warnings=warnings, reference=reference))
    return scouts


def parse_ti_list(text) -> list[float]:
    """'150,180, 210' or a list -> floats; a bad entry is an InputError naming --ti."""
    items = text if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    out = []
    for item in items:
        try:
            value = float(str(item).strip())
        except ValueError:
            raise InputError(f"TI {item!r} is not a number", "--ti") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"TI must be a finite number of ms >= 0, got {item!r}", "--ti")
        out.append(value)
    return out


def image_files(path) -> list[Path]:
    """Image files (PNG/JPEG/TIFF/BMP) of a folder in name order, or the one file given."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("no such file or folder", path)
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_image_scout(paths, ti_ms, series_id: str = "") -> TIScout:
    """A scout from ordinary images (screenshots, photos of the console) with the user's TIs, one per
    image in the given order; RGB is converted to luminance."""
    from PIL import Image, UnidentifiedImageError

    paths = [Path(p) for p in paths]
    tis = parse_ti_list(ti_ms)
    if len(tis) != len(paths):
        raise InputError(f"{len(tis)} TI value(s) for {len(paths)} image(s): give one TI per image, in the "
                         "images' name order", "--ti")
    frames = []
    for p in paths:
        try:
            with Image.open(p) as im:
                frames.append(np.asarray(im.convert("L"), dtype=np.float32))
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"not a readable image ({exc})", p) from None
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise SeriesError(f"images differ in size {sorted(shapes)}: crop them to the same frame", paths[0].parent)
    order, warnings = check_tis(tis, list(range(len(tis))), "--ti")
    values = np.stack(frames)[order]
    _check_pixels(values, paths[0].parent)
    return TIScout(frames=values, ti_ms=np.asarray(tis, float)[order], ti_source="user (--ti)",
                   series_instance_uid=series_id or paths[0].parent.name, files=[str(paths[k]) for k in order],
                   warnings=warnings, photo=True)


def load_scout_folder(path, ti_ms=None, first_ti_ms=None) -> list[TIScout]:
    """DICOM when ``ti_ms`` is None, else images with those TIs."""
    if ti_ms is None:
        return load_dicom_scouts(path, first_ti_ms)
    files = image_files(path)
    if not files:
        raise InputError("no PNG/JPEG/TIFF/BMP images found (for DICOM leave out --ti)", path)
    return [load_image_scout(files, ti_ms)]
