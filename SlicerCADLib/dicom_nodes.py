"""DICOM tags of a volume node, wherever it came from, for phase assignment.

Inside Slicer a volume loaded by the DICOM module carries ``DICOM.instanceUIDs`` (space-separated
SOP instance UIDs) and ``slicer.dicomDatabase`` knows their files. A volume loaded by
``SlicerCADLib.study.load_study`` carries ``SlicerCAD.files`` (a JSON list of paths) and, for a
volume taken from one frame range of an enhanced multi-frame file, ``SlicerCAD.frame``.
Tags are read from the first file (and frame) of the volume, as ``slicercad.dicom.scan`` does:
the first slice along the normal, so both paths give the same tags to the phase assignment.
"""
from __future__ import annotations

import json
from pathlib import Path

import pydicom
import slicer

from slicercad.dicom.read_tags import read_tags
from slicercad.dicom.tags import SeriesTags
from slicercad.errors import DicomError

FILES_ATTRIBUTE = "SlicerCAD.files"
FRAME_ATTRIBUTE = "SlicerCAD.frame"
UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


def set_volume_files(node, files, frame: int = 0) -> None:
    """Record the DICOM files (and enhanced-object frame) a volume node was built from."""
    node.SetAttribute(FILES_ATTRIBUTE, json.dumps([str(Path(f)) for f in files]))
    node.SetAttribute(FRAME_ATTRIBUTE, str(int(frame)))


def volume_files(node) -> list[str]:
    """The DICOM files behind ``node``: Slicer's DICOM database first, then ``SlicerCAD.files``."""
    uids = (node.GetAttribute(UIDS_ATTRIBUTE) or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if uids and database is not None:
        files = [database.fileForInstance(uid) for uid in uids]
        missing = [uid for uid, f in zip(uids, files) if not f]
        if missing:
            raise DicomError(f"{len(missing)} instance(s) not in the DICOM database, e.g. {missing[0]}",
                             node.GetName())
        return files
    text = node.GetAttribute(FILES_ATTRIBUTE)
    if not text:
        where = "Slicer's DICOM database is not available" if uids else f"no {UIDS_ATTRIBUTE} attribute"
        raise DicomError(f"volume has no DICOM source: {where} and no {FILES_ATTRIBUTE} attribute", node.GetName())
    try:
        files = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DicomError(f"{FILES_ATTRIBUTE} is not a JSON list of paths ({exc.msg})", node.GetName()) from None
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise DicomError(f"{FILES_ATTRIBUTE} must be a non-empty JSON list of paths", node.GetName())
    return files


def _read_header(path: str):
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except FileNotFoundError:
        raise DicomError("DICOM file not found", path) from None
    except Exception as exc:  # pydicom raises several types for damaged files
        raise DicomError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None


def tags_for_volume_node(node) -> SeriesTags:
    """SeriesTags of the volume behind ``node``, read from its first file (and recorded frame)."""
    if node is None:
        raise DicomError("no volume node given", "node")
    files = volume_files(node)
    try:
        frame = int(node.GetAttribute(FRAME_ATTRIBUTE) or 0)
    except ValueError:
        raise DicomError(f"{FRAME_ATTRIBUTE} must be an integer frame index", node.GetName()) from None
    return read_tags(_read_header(files[0]), frame)
