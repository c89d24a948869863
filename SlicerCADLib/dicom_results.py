"""Results of a Slicer scene written as DICOM through the core writers (``slicercad.dicomio``) and imported into
Slicer's DICOM database, so they show in the DICOM browser beside their source series and travel with the
DICOM module's export/send. Imports ``slicer`` only; DICOMLib (which needs ctk/qt) is imported inside
``import_into_database`` when running in the Slicer application.

A segmentation node's segments go into one SEG on a reference volume node's own DICOM series (the volume must
be the unresampled series: its files come from ``dicom_nodes.volume_files``). A segment's lesion type comes
from the ``lesion_types`` argument, else its Slicer terminology (the type code), else its name. Segments the
user edited are written SEMIAUTOMATIC (``corrected``), model output AUTOMATIC.

Each module's result in the scene goes the same way (``ti_record_to_dicom``, ``anomaly_map_to_dicom``,
``renal_results_to_dicom``): the core writer (``slicercad.dicomio.results_*``) writes SEG / Parametric Map / SR
into a folder on the source series, then, unless ``database`` is False, the files are added to Slicer's DICOM
database (``import_into_database``), where the DICOM module's Segmentation, Parametric Map and TID 1500
plugins load them and its export / send reaches the PACS.
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


def _add(paths, database) -> list:
    """The written files, added to ``database`` (True: Slicer's; False: none; else that database object)."""
    paths = [Path(p) for p in paths if p]
    if database is not False:
        import_into_database(paths, None if database is True else database)
    return paths


def _series_files(series_uid: str, database) -> list:
    if database is None or isinstance(database, bool):
        database = getattr(slicer, "dicomDatabase", None)
    files = list(database.filesForSeries(series_uid)) if database is not None and series_uid else []
    if not files:
        raise InputError("the scout series is not in Slicer's DICOM database: give its DICOM files (scout_files)",
                         series_uid or "series_instance_uid")
    return files


def ti_record_to_dicom(record: dict, folder, card: dict | None = None, *, scout_files=None, database=True) -> list:
    """CardiacTICorrector: the record of ``CardiacTICorrectorLib.scout.estimate`` as a TID 1500 SR (case values
    in TID 1501) on the scout's DICOM files (``scout_files``, else the record's series in the database)."""
    from slicercad.dicomio.results_ti import write_ti_report

    files = list(scout_files) if scout_files else _series_files(record.get("series_instance_uid"), database)
    return _add([write_ti_report(record, files, Path(folder) / "ti.sr.dcm", card)], database)


def _on_grid(map_node, image):
    """The map node's values [k, j, i] on ``image``'s grid (resampled, linear, when its geometry differs)."""
    import numpy as np
    import SimpleITK as sitk

    values = volume_node_to_sitk(map_node)
    same = values.GetSize() == image.GetSize() and all(
        np.allclose(getattr(values, f)(), getattr(image, f)(), atol=1e-4)
        for f in ("GetOrigin", "GetSpacing", "GetDirection"))
    if not same:
        values = sitk.Resample(values, image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(values).astype(np.float32)


def anomaly_map_to_dicom(map_node, volume_node, result, folder, *, threshold: float | None = None,
                         database=True) -> list:
    """AnomalyCT: the map node over ``volume_node`` (``AnomalyCTLib.logic.score_volume``; ``result`` its
    ``ScoreResult`` or detector ``Result``) as a Parametric Map, the map above ``threshold`` (default: the
    model's) as a SEG, and the case score and percentile in a TID 1500 SR, on the volume's DICOM series."""
    from slicercad.dicomio.results_anomaly import write_anomaly_results

    r = getattr(result, "result", result)
    image = volume_node_to_sitk(volume_node)
    out = write_anomaly_results(
        _on_grid(map_node, image), image, volume_files(volume_node), folder, score=r.score,
        percentile=r.percentile, threshold=float(r.threshold if threshold is None else threshold), card=r.card,
        variant_score=getattr(r, "variant", None), map_score=getattr(r, "map_score", None),
        map_percentile=getattr(r, "map_percentile", None))
    return _add([out["seg"], out["pm"], out["sr"]], database)


def renal_results_to_dicom(results, masses, reference_volume_node, card: dict, folder, *, database=True) -> list:
    """RenalMassCAD: ``assess_scene`` results (one per ``masses`` Lesion, same order) as a SEG of the masses
    and a TID 1500 SR (centre, diameter, probabilities, per-phase scores) on the reference phase's series."""
    from slicercad.dicomio.results_renal import write_renal_results

    out = write_renal_results(results, masses, volume_node_to_sitk(reference_volume_node),
                              volume_files(reference_volume_node), folder, card)
    return _add([out["seg"], out["sr"]], database)
