"""The source's identifying DICOM attributes behind a volume node, for a research export
(``slicercad.engine.export.export_lesion``) and its audit (``slicercad.engine.audit.audit_export``).
Imports ``slicer`` (through ``dicom_nodes``) but never Qt.
"""
from __future__ import annotations

import pydicom

from slicercad.engine.basic_profile import ACTIONS
from slicercad.errors import DicomError

from .dicom_nodes import volume_files

# Identifying and characteristic attributes read from the source file, beyond the profile's list.
EXTRA_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
                  "StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber")


def source_identifiers(volume_node) -> dict:
    """DICOM attributes by keyword (Basic Profile attributes present + ``EXTRA_KEYWORDS``) from the
    first file behind ``volume_node``; values as text (sequences left out)."""
    path = volume_files(volume_node)[0]
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several types for damaged files
        raise DicomError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
    out = {}
    for keyword in dict.fromkeys((*ACTIONS, *EXTRA_KEYWORDS)):
        element = ds.get(keyword)
        if element is None or element in ("", None) or isinstance(element, pydicom.Sequence):
            continue
        out[keyword] = str(element)
    if not out.get("PatientID"):
        raise DicomError("source file has no PatientID; the export needs it for the pseudonym", path)
    return out
