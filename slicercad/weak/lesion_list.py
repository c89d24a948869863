"""Lesion lists as radiology reports give them (CSV), resolved to centres (LPS mm) on a study's volume.

Columns: ``study`` (a folder of DICOM files, or an NRRD/NIfTI image, relative to the studies folder),
``lesion_id``; the position either as ``x, y, z, coordinate_system`` (LPS or RAS mm) or as
``series_number`` (or ``series_uid``) + ``instance_number`` + ``row, column`` (pixel, 0-based) -- a series
given with x, y, z picks the volume of a study holding several; the size as ``diameter_mm`` or
``long_axis_mm`` (+ optional ``short_axis_mm``: a report's 2D reading without a direction, drawn as the
sphere of the same volume, see ``segment.segment_baseline``). Bad rows raise naming the row."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import check_system, to_lps
from .shapes import axes_diameters


@dataclass
class LesionRow:
    row: int
    study: str
    lesion_id: str
    diameters_mm: list
    center_lps: np.ndarray | None = None
    series: str | None = None          # series number or UID
    instance_number: int | None = None
    pixel_rc: tuple | None = None

    @property
    def source(self) -> str:
        return f"lesion list row {self.row} ({self.lesion_id})"


def _num(value, field, src):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{field} must be a number, got {value!r}", src) from None
    if not np.isfinite(v):
        raise InputError(f"{field} must be finite, got {value!r}", src)
    return v


def read_lesion_list(path) -> list[LesionRow]:
    path = Path(path)
    if not path.is_file():
        raise InputError("lesion list not found", path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        for need in ("study", "lesion_id"):
            if need not in cols:
                raise InputError(f"lesion list lacks the column {need!r} (has {sorted(cols)})", path)
        rows = []
        for n, rec in enumerate(reader, start=2):
            src = f"{path.name} line {n}"
            rec = {k: (v or "").strip() for k, v in rec.items() if k}
            if rec.get("diameter_mm"):
                d = _num(rec["diameter_mm"], "diameter_mm", src)
                if d <= 0:
                    raise InputError(f"diameter_mm must be > 0, got {d:g}", src)
                diam = [d]
            elif rec.get("long_axis_mm"):
                try:
                    diam = axes_diameters(_num(rec["long_axis_mm"], "long_axis_mm", src),
                                          _num(rec["short_axis_mm"], "short_axis_mm", src)
                                          if rec.get("short_axis_mm") else None)
                except InputError as exc:
                    raise InputError(str(exc), src) from None
            else:
                raise InputError("give diameter_mm or long_axis_mm (+ short_axis_mm)", src)
            row = LesionRow(n, rec["study"], rec["lesion_id"] or f"L{n - 1}", diam)
            row.series = rec.get("series_uid") or rec.get("series_number") or None   # either position form
            if all(rec.get(k) for k in ("x", "y", "z")):
                if not rec.get("coordinate_system"):
                    raise InputError("coordinate_system (LPS or RAS) is required with x, y, z", src)
                system = check_system(rec["coordinate_system"], src)
                row.center_lps = to_lps([_num(rec[k], k, src) for k in "xyz"], system)
            elif (rec.get("series_number") or rec.get("series_uid")) and rec.get("instance_number") \
                    and rec.get("row") and rec.get("column"):
                row.instance_number = int(_num(rec["instance_number"], "instance_number", src))
                row.pixel_rc = (_num(rec["row"], "row", src), _num(rec["column"], "column", src))
            else:
                raise InputError("give x, y, z + coordinate_system, or series_number (or series_uid) + "
                                 "instance_number + row + column", src)
            if not row.study:
                raise InputError("study is empty", src)
            rows.append(row)
    if not rows:
        raise InputError("lesion list has no rows", path)
    return rows


def pixel_to_lps(frame, row: float, column: float) -> np.ndarray:
    """LPS mm of pixel (row, column) of a DICOM frame (IPP + column x dc x row-cosine + row x dr x col-cosine)."""
    if frame.ipp is None or frame.iop is None or frame.pixel_spacing is None:
        raise InputError("the instance lacks ImagePositionPatient / ImageOrientationPatient / PixelSpacing",
                         str(frame.path))
    iop = np.asarray(frame.iop, float)
    dr, dc = frame.pixel_spacing
    return np.asarray(frame.ipp, float) + column * dc * iop[:3] + row * dr * iop[3:]
