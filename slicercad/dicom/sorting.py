"""Split the frames of one series into volumes the way Slicer would, and sort them along the normal.

Rules (documented for users in the README's DICOM section):
1. Frames whose ImageType/FrameType says LOCALIZER are dropped.
2. Frames are grouped by orientation and matrix size. When a series has several orientations,
   groups of a single frame are localisers and are dropped (all of them when every group is single).
3. Different diffusion b-values are always different volumes.
4. A legacy multi-frame whose Frame Increment Pointer steps through time is one time series.
5. A group whose frames all sit at one position is a time series (e.g. a TI scout).
6. Where slice positions repeat, the group is split by the first of inversion time, trigger time,
   temporal position and acquisition number that varies, recursively, until positions are unique.
   Positions still repeating after that stay together with a warning; loading them is a SeriesError.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .frames import FrameInfo

ORIENTATION_TOL = 1e-3      # direction-cosine difference still counted as the same orientation
POSITION_DECIMALS = 2       # positions equal to 0.01 mm are the same slice position
REPEAT_KEYS = ("inversion_time", "trigger_time", "temporal_position", "acquisition_number")


def position_key(frame: FrameInfo):
    return None if frame.ipp is None else tuple(np.round(frame.ipp, POSITION_DECIMALS) + 0.0)


def slice_offset(frame: FrameInfo) -> float:
    """Position along the slice normal (mm)."""
    return float(np.dot(frame.ipp, frame.normal))


def sort_along_normal(frames: list[FrameInfo]) -> list[FrameInfo]:
    """Frames ordered along their common normal; frames without positions keep file/frame order."""
    if all(f.ipp is not None and f.iop is not None for f in frames):
        return sorted(frames, key=lambda f: (slice_offset(f), str(f.path), f.index))
    return sorted(frames, key=lambda f: (f.instance_number if f.instance_number is not None else 0,
                                         str(f.path), f.index))


def _orientation_groups(frames):
    groups: list[tuple[tuple, list[FrameInfo]]] = []
    for f in frames:
        for ref, members in groups:
            same_size = (ref[0], ref[1]) == (f.rows, f.cols)
            same_iop = (ref[2] is None and f.iop is None) or (
                ref[2] is not None and f.iop is not None
                and np.max(np.abs(np.subtract(ref[2], f.iop))) < ORIENTATION_TOL)
            if same_size and same_iop:
                members.append(f)
                break
        else:
            groups.append(((f.rows, f.cols, f.iop), [f]))
    return groups


def _split_by(frames, attr):
    parts = defaultdict(list)
    for f in frames:
        parts[getattr(f, attr)].append(f)
    return sorted(parts.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0))


def _has_repeats(frames) -> bool:
    keys = [position_key(f) for f in frames if f.ipp is not None]
    return len(keys) != len(set(keys))


def _split_repeats(frames, split_key):
    """Recursive rule 5/6; yields (frames, split_key, kind, warnings)."""
    positions = {position_key(f) for f in frames}
    if len(frames) > 1 and len(positions) == 1 and None not in positions:
        yield frames, split_key, "timeseries", []
        return
    if not _has_repeats(frames):
        yield frames, split_key, "single" if len(frames) == 1 else "volume", []
        return
    for attr in REPEAT_KEYS:
        parts = _split_by(frames, attr)
        if len(parts) > 1:
            for value, members in parts:
                yield from _split_repeats(members, {**split_key, attr: value})
            return
    yield frames, split_key, "volume", [
        f"slice positions repeat ({len(frames)} frames at {len(positions)} positions) and no tag separates them"]


def split_series(frames: list[FrameInfo]):
    """Volumes of one series: ([(frames, split_key, kind, warnings)], [(path, reason) dropped])."""
    dropped = [(f.path, "localiser (ImageType LOCALIZER)") for f in frames if f.localizer]
    frames = [f for f in frames if not f.localizer]
    out = []
    series_files = defaultdict(list)
    for f in frames:
        if f.timeseries:
            series_files[f.path].append(f)
    for path, members in series_files.items():
        out.append((members, {"file": path.name}, "timeseries", []))
    frames = [f for f in frames if not f.timeseries]
    groups = _orientation_groups(frames)
    if len(groups) > 1:
        largest = max(len(m) for _, m in groups)
        keep = []
        for ref, members in groups:
            if len(members) == 1 and (largest == 1 or len(members) < largest):
                dropped.append((members[0].path, "localiser (single off-axis slice)"))
            else:
                keep.append((ref, members))
        groups = keep
    multi = len(groups) > 1
    for n, (ref, members) in enumerate(groups):
        key = {"orientation": [round(v, 3) for v in ref[2]] if ref[2] else None} if multi else {}
        by_b = _split_by(members, "b_value")
        for b, part in by_b:
            bkey = {**key, "b_value": b} if len(by_b) > 1 else key
            out.extend(_split_repeats(part, bkey))
    return out, dropped
