"""Scan a folder (recursively; loose files or a DICOMDIR tree) into studies -> series -> volumes.

Splitting and sorting follow ``sorting.py``; pixel loading and geometry checks ``volume.py``.
Symbolic links to folders and files are followed, each real folder and file once. Non-DICOM files,
non-image objects (SEG, RT, SR...), colour images, localisers and broken links are skipped and listed
with the reason; ``ScanResult.empty_reason`` says why a scan found nothing. A file whose DICOM header
is corrupt is skipped with the reason, or raises DicomError with ``strict=True``.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from ..errors import DicomError, SeriesError
from .frames import NON_IMAGE_MODALITIES, FrameInfo, check_pixel_data, frames_from_header, read_header
from .read_tags import read_tags
from .sorting import sort_along_normal, split_series
from .tags import SeriesTags
from .volume import assemble, load_frames, load_volume, stack_frames

__all__ = ["VolumeRecord", "SeriesRecord", "StudyRecord", "ScanResult", "scan_folder", "load_volume", "load_frames"]

_KEY_PREFIX = {"b_value": "b", "inversion_time": "ti", "trigger_time": "tt", "temporal_position": "tp",
               "acquisition_number": "acq", "orientation": "ori", "file": "f"}


@dataclasses.dataclass
class VolumeRecord:
    """One loadable volume (or time series, or single image) of a series."""

    volume_id: str
    files: list[Path]
    tags: SeriesTags
    split_key: dict
    kind: str                      # "volume" | "timeseries" | "single"
    warnings: list[str]
    spacing_known: bool
    photometric: str
    frames: list[FrameInfo] = dataclasses.field(default_factory=list, repr=False)

    def load(self, strict: bool = False) -> sitk.Image:
        """3D LPS image after rescale (MONOCHROME1 inverted). For a time series the third axis is
        frame order (1 mm nominal spacing); ``load_frames`` gives the frame times too. Load-time
        warnings are added to ``warnings``."""
        frames = self.frames or [f for p in self.files for f in frames_from_header(read_header(p), p)]
        if self.kind == "timeseries":
            values, _, reference = stack_frames(frames)
            image = sitk.GetImageFromArray(values)
            image.SetOrigin(reference.GetOrigin())
            image.SetDirection(reference.GetDirection())
            image.SetSpacing(reference.GetSpacing()[:2] + (1.0,))
            new = ["time series: third axis is frame order"]
        else:
            image, new = assemble(frames, strict)
        self.warnings.extend(w for w in new if w not in self.warnings)
        return image


@dataclasses.dataclass
class SeriesRecord:
    series_instance_uid: str
    tags: SeriesTags
    volumes: list[VolumeRecord]


@dataclasses.dataclass
class StudyRecord:
    study_instance_uid: str
    tags: SeriesTags
    series: list[SeriesRecord]

    def volumes(self) -> list[VolumeRecord]:
        return [v for s in self.series for v in s.volumes]


@dataclasses.dataclass
class ScanResult:
    studies: list[StudyRecord]
    skipped: list[tuple[Path, str]]
    n_files: int

    def volumes(self) -> list[VolumeRecord]:
        return [v for s in self.studies for v in s.volumes()]

    def empty_reason(self) -> str | None:
        """Why no volume was found (None when some were): no files, or the skip reasons with examples."""
        if self.studies:
            return None
        if not self.n_files and not self.skipped:
            return "no files in the folder"
        by_reason: dict[str, list[Path]] = defaultdict(list)
        for path, reason in self.skipped:
            by_reason[reason].append(path)
        kinds = "; ".join(f"{len(paths)} {reason} (e.g. {', '.join(p.name for p in paths[:3])})"
                          for reason, paths in sorted(by_reason.items(), key=lambda kv: -len(kv[1])))
        if set(by_reason) == {"not DICOM"}:
            return f"no DICOM among {self.n_files} files: {kinds}"
        if by_reason and all(r.startswith("unreadable") for r in by_reason):
            return f"all {self.n_files} files unreadable: {kinds}"
        return f"no image volume among {self.n_files} files: {kinds}"


def _files_under(folder: Path, skipped: list) -> list[Path]:
    """Files under ``folder``, following symbolic links to folders and files; a folder or file reached
    twice (a link loop, two links to one study) is walked once, broken links are listed as skipped."""
    files, seen_dirs, seen_files = [], set(), set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            dirs.clear()
            continue
        seen_dirs.add(real)
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            target = os.path.realpath(path)
            if path.is_symlink() and not os.path.exists(target):
                skipped.append((path, f"broken symbolic link (to {os.readlink(path)})"))
            elif target in seen_files:
                skipped.append((path, "same file reached again through a symbolic link"))
            else:
                seen_files.add(target)
                files.append(path)
    for path in files:
        if path.name.upper() == "DICOMDIR":
            _check_dicomdir(path, skipped)
    return files


def _check_dicomdir(path: Path, skipped: list) -> None:
    """List files a DICOMDIR references but that are absent (the files present are scanned anyway)."""
    try:
        ds = pydicom.dcmread(path, force=True)
        records = ds.get("DirectoryRecordSequence") or []
    except Exception as exc:
        skipped.append((path, f"unreadable DICOMDIR ({type(exc).__name__})"))
        return
    for record in records:
        ref = record.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        target = path.parent.joinpath(*parts)
        if not target.exists():
            skipped.append((target, "listed in DICOMDIR but missing"))


def _volume_id(series_uid: str, split_key: dict, taken: set) -> str:
    parts = [series_uid]
    for name in sorted(split_key):
        value = split_key[name]
        if name == "orientation":
            value = "".join("xyz"[int(np.argmax(np.abs(np.cross(value[:3], value[3:]))))]) if value else "none"
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{_KEY_PREFIX.get(name, name)}{value}")
    base = re.sub(r"[^A-Za-z0-9._-]", "_", "_".join(parts))
    vid, n = base, 2
    while vid in taken:
        vid, n = f"{base}_{n}", n + 1
    taken.add(vid)
    return vid


def _reason(exc: DicomError) -> str:
    """The error message without the file name (the skipped list already holds the path)."""
    text = str(exc)
    return text[len(exc.source) + 2:] if exc.source and text.startswith(f"{exc.source}: ") else text


def _read(path: Path, strict: bool, skipped: list):
    """(header, frames) of an image file, or None after recording why it was skipped."""
    try:
        ds = read_header(path)
    except InvalidDicomError:
        skipped.append((path, "not DICOM"))
        return None
    except OSError as exc:
        skipped.append((path, f"unreadable ({exc.strerror})"))
        return None
    except DicomError as exc:
        if strict:
            raise
        skipped.append((path, _reason(exc)))
        return None
    modality = str(ds.get("Modality", "")).upper()
    sop_class = ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
    if "DirectoryRecordSequence" in ds:
        skipped.append((path, "DICOMDIR index"))
    elif modality in NON_IMAGE_MODALITIES:
        skipped.append((path, f"not an image (Modality {modality})"))
    elif "Rows" not in ds and "Image Storage" not in getattr(sop_class, "name", ""):
        skipped.append((path, "not an image (no Rows/Columns)"))
    elif int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        skipped.append((path, f"colour image (SamplesPerPixel={ds.SamplesPerPixel})"))
    else:
        try:
            check_pixel_data(ds, path)
            return ds, frames_from_header(ds, path)
        except DicomError as exc:
            if strict:
                raise
            skipped.append((path, _reason(exc)))
    return None


def scan_folder(folder, strict: bool = False) -> ScanResult:
    """Scan ``folder`` recursively into studies, series and volumes (see module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError("not a folder", folder)
    skipped: list[tuple[Path, str]] = []
    files = _files_under(folder, skipped)
    by_series: dict[tuple, list] = defaultdict(list)
    headers: dict[Path, pydicom.Dataset] = {}
    for path in files:
        read = _read(path, strict, skipped)
        if read is None:
            continue
        ds, frames = read
        headers[path] = ds
        by_series[(str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))].extend(frames)
    studies: dict[str, list[SeriesRecord]] = defaultdict(list)
    taken: set = set()
    for (study_uid, series_uid), frames in by_series.items():
        groups, dropped = split_series(frames)
        skipped.extend(dropped)
        volumes = []
        for members, split_key, kind, warnings in groups:
            if warnings and strict:
                raise SeriesError("; ".join(warnings), members[0].path)
            members = sort_along_normal(members) if kind != "timeseries" else members
            first = members[0]
            tags = read_tags(headers[first.path], first.index)
            paths = list(dict.fromkeys(f.path for f in members))
            volumes.append(VolumeRecord(
                volume_id=_volume_id(series_uid or first.path.stem, split_key, taken), files=paths, tags=tags,
                split_key=split_key, kind=kind, warnings=list(warnings),
                spacing_known=all(f.pixel_spacing is not None for f in members),
                photometric=first.photometric, frames=members))
        if volumes:
            studies[study_uid].append(SeriesRecord(series_uid, volumes[0].tags, volumes))
    result = []
    for study_uid, series in studies.items():
        series.sort(key=lambda s: (s.tags.series_number is None, s.tags.series_number or 0, s.series_instance_uid))
        result.append(StudyRecord(study_uid, series[0].tags, series))
    result.sort(key=lambda s: (s.tags.study_date, s.study_instance_uid))
    return ScanResult(studies=result, skipped=skipped, n_files=len(files))
