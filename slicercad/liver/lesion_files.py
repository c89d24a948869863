"""Lesion lists from files: a CSV with a coordinate-system column, or a Slicer markups ``.mrk.json``.

A ``.mrk.json`` is read without Slicer. Fiducial control points are lesion centres (named by their
label); line markups are diameters, matched as ``SlicerCADLib.markups.lesions_from_markups`` does:
a line goes to the nearest centre (distance to its midpoint or either endpoint) when that distance
is at most its length, a centre keeps its longest line, and an unmatched line is a lesion of its
own centred on its midpoint. Positions use the file's ``coordinateSystem`` (LPS or RAS).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import to_lps
from .inference import read_lesion_csv
from .roi import Lesion


def _points(markup, path, k) -> list:
    points = []
    for i, cp in enumerate(markup.get("controlPoints") or []):
        if cp.get("positionStatus", "defined") != "defined":
            continue
        pos = np.asarray(cp.get("position"), dtype=float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise InputError(f"control point {i} position must be 3 numbers", f"{path} markup {k}")
        points.append((str(cp.get("label") or f"{markup.get('name', 'L')}-{i + 1}"), pos))
    return points


def read_markups_lesions(path) -> list:
    """Lesions (LPS) from a Slicer ``.mrk.json``; InputError naming a lesion without a diameter."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read markups JSON ({exc})", str(path)) from None
    centres, lines = [], []
    for k, markup in enumerate(doc.get("markups") or []):
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"coordinateSystem must be LPS or RAS, got {system!r}", f"{path} markup {k}")
        points = [(name, to_lps(p, system)) for name, p in _points(markup, path, k)]
        kind = markup.get("type")
        if kind == "Fiducial":
            centres.extend([name, p, None] for name, p in points)
        elif kind == "Line":
            if len(points) != 2:
                raise InputError(f"a diameter line needs 2 placed points, got {len(points)}", f"{path} markup {k}")
            lines.append((str(markup.get("name") or f"line-{k + 1}"), points[0][1], points[1][1]))
        else:
            raise InputError(f"markup type {kind!r} is not a lesion mark (Fiducial or Line)", f"{path} markup {k}")
    own = []
    for name, p0, p1 in lines:
        length = float(np.linalg.norm(p1 - p0))
        if centres:
            dists = [min(np.linalg.norm(c[1] - q) for q in (p0, p1, (p0 + p1) / 2)) for c in centres]
            nearest = int(np.argmin(dists))
            if dists[nearest] <= length:
                centres[nearest][2] = max(length, centres[nearest][2] or 0.0)
                continue
        own.append([name, (p0 + p1) / 2, length])
    lesions = []
    for name, centre, diameter in centres + own:
        if diameter is None:
            raise InputError("no diameter: add a line across the lesion near its centre point", name)
        lesions.append(Lesion(name, tuple(float(v) for v in centre), diameter, "LPS").check())
    if not lesions:
        raise InputError("no lesion marked in the markups file", str(path))
    return lesions


def read_lesions(path) -> list:
    """Lesions from a ``.mrk.json`` (Slicer markups) or a ``.csv`` lesion list (see ``read_lesion_csv``)."""
    name = Path(path).name.lower()
    if name.endswith(".json"):
        return read_markups_lesions(path)
    if name.endswith(".csv"):
        return read_lesion_csv(path)
    raise InputError("lesion list must be a .csv (with coordinate_system column) or a Slicer .mrk.json", str(path))
