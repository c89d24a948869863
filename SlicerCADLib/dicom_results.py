"""Results of a Slicer scene written as DICOM through the core writers (``slicercad.dicomio``) and imported into
Slicer's DICOM database, so they show in the DICOM browser beside their source series and travel with the
DICOM module's export/send. Imports ``slicer`` only; DICOMLib (which needs ctk/qt) is imported inside
``import_into_database`` when running in the Slicer application.

A segmentation node's segments go into one SEG on a reference volume node's own DICOM series (the volume must
be the unresampled series: its files come from ``dicom_nodes.volume_files``). A segment's lesion type comes
from the ``lesion_types`` argument, else its Slicer terminology (the type code), else its name. Segments the
user edited are written SEMIAUTOMATIC (``corrected``), model output AUTOMATIC.
"""
from __future__ import annotations

from pathlib import Path

import slicer  # noqa: F401  (this package is the MRML layer)

from slicercad.dicomio.terms import LESION_TYPES, Algorithm, lesion_type_key
from slicercad.errors import InputError

from .dicom_nodes import volume_files
from .segmentations import segment_to_label_array
from .volumes import volume_node_to_sitk

CORRECTED_TAG = "SlicerCAD.corrected"
_BY_CODE = {t[1]: key for key, (_, t) in reversed(LESION_TYPES.items()) if key != "anomaly"}


def segment_lesion_type(segment) -> str:
    """The lesion-type key of a segment: its terminology's type code when it is one we know, else its name."""
    if hasattr(segment, "GetTerminology"):             # Slicer >= 5.0
        entry = segment.GetTerminology() or ""
    else:
        import vtk

        ref = vtk.reference("")
        entry = str(ref) if segment.GetTag("TerminologyEntry", ref) else ""
    parts = str(entry).split("~")             # context ~ category ~ type ~ modifier ~ anatomic context ~ ...
    fields = parts[2].split("^") if len(parts) > 2 else []
    if len(fields) >= 2 and fields[1] in _BY_CODE:
        return _BY_CODE[fields[1]]
    return lesion_type_key(segment.GetName())


def write_segmentation_seg(segmentation_node, reference_volume_node, path, algorithm: Algorithm, *,
                           lesion_types: dict | None = None, segment_ids=None, corrected: bool | None = None) -> Path:
    """Write the segments (all, or ``segment_ids``) of ``segmentation_node`` as a DICOM SEG on the reference
    volume's series; ``corrected`` (default: the node's ``SlicerCAD.corrected`` attribute) -> SEMIAUTOMATIC."""
    from slicercad.dicomio.seg import Segment, write_seg

    segmentation = segmentation_node.GetSegmentation()
    ids = list(segment_ids) if segment_ids else [segmentation.GetNthSegmentID(i)
                                                 for i in range(segmentation.GetNumberOfSegments())]
    if not ids:
        raise InputError("the segmentation has no segments", segmentation_node.GetName())
    if corrected is None:
        corrected = (segmentation_node.GetAttribute(CORRECTED_TAG) or "").lower() in ("1", "true", "yes")
    algo = algorithm.corrected() if corrected else algorithm
    files = volume_files(reference_volume_node)
    image = volume_node_to_sitk(reference_volume_node)
    segments = []
    for sid in ids:
        segment = segmentation.GetSegment(sid)
        if segment is None:
            raise InputError(f"no segment {sid!r}", segmentation_node.GetName())
        kind = (lesion_types or {}).get(sid) or segment_lesion_type(segment)
        mask = segment_to_label_array(segmentation_node, sid, reference_volume_node)
        segments.append(Segment(segment.GetName(), mask, kind, algo, tracking_id=segment.GetName()))
    return write_seg(segments, image, files, path,
                     series_description=f"SlicerCAD {segmentation_node.GetName()}"[:64])


def import_into_database(paths, database=None) -> list:
    """Add result files to Slicer's DICOM database (``slicer.dicomDatabase`` unless given); returns the
    files added. In the application this is DICOMUtils.importDicom per folder (ctkDICOMIndexer); with a bare
    database object its ``insert(path, storeFile, generateThumbnail)`` is used."""
    files = []
    for p in map(Path, paths):
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    missing = [f for f in files if not f.exists()]
    if missing or not files:
        raise InputError("no such result file" if missing else "no result files", str(missing[0] if missing else paths))
    database = database if database is not None else getattr(slicer, "dicomDatabase", None)
    if database is None:
        raise InputError("Slicer's DICOM database is not open (open the DICOM module once)", "dicomDatabase")
    if hasattr(slicer, "app") and database is getattr(slicer, "dicomDatabase", None):
        from DICOMLib import DICOMUtils

        for folder in sorted({f.parent for f in files}):
            if not DICOMUtils.importDicom(str(folder), database):
                raise InputError("the DICOM database refused the folder", str(folder))
        return files
    for f in files:
        database.insert(str(f), False, False)
    return files


def load_from_database(series_uids) -> list:
    """Load result series (SEG, SR, Parametric Map) through Slicer's DICOM plugins; returns node ids.
    Needs the Slicer application (DICOMSegmentationPlugin, DICOMTID1500Plugin, DICOMParametricMapPlugin)."""
    if not hasattr(slicer, "app"):
        raise InputError("loading through Slicer's DICOM plugins needs the Slicer application", "DICOMUtils")
    from DICOMLib import DICOMUtils

    return list(DICOMUtils.loadSeriesByUID(list(series_uids)))
