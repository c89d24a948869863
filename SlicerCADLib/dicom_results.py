"""Results of a Slicer scene written as DICOM through the core writers (``slicercad.dicomio``) and imported into
Slicer's DICOM database, so they show in the DICOM browser beside their source series and travel with the
DICOM module's export/send. Imports ``slicer`` only; DICOMLib (which needs ctk/qt) is imported inside
``import_into_database`` when running in the Slicer application.

A segmentation node's segments go into one SEG on a reference volume node's own DICOM series (the volume must
be the unresampled series: its files come from ``dicom_nodes.volume_files``). A segment's coding comes from the
``lesion_types`` argument, else its Slicer terminology (category / type / modifier / region triplets, passed
through as they are; Slicer's default "Tissue" counts as none), else its name. Who made it is per segment: a
segment a model added (tag ``SlicerCAD.algorithm`` or the weak labeller's ``SlicerCAD.method``) is the model's
(one Algorithm, or one per tag value), SEMIAUTOMATIC once the user edited it (tag ``SlicerCAD.corrected``); any
other segment (drawn by hand) is MANUAL.

Each module's result in the scene goes the same way (``liver_results_to_dicom``, ``ti_record_to_dicom``,
``anomaly_map_to_dicom``, ``renal_results_to_dicom``): the core writer (``slicercad.dicomio.results*``)
writes SEG / Parametric Map / SR into a folder on the source series, then, unless ``database`` is False, the
files are added to Slicer's DICOM database (``import_into_database``), where the DICOM module's Segmentation,
Parametric Map and TID 1500 plugins load them and its export / send reaches the PACS. A panel writes into
``results_folder`` (its folder, default ``default_results_folder``, then one sub-folder per study) and shows
``written_summary``.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import slicer  # noqa: F401  (this package is the MRML layer)

from slicercad.dicomio.terms import Algorithm, lesion_type_key
from slicercad.errors import InputError

from .dicom_nodes import tags_for_volume_node, volume_files
from .segmentations import segment_tag, segment_to_label_array
from .volumes import volume_node_to_sitk

CORRECTED_TAG = "SlicerCAD.corrected"       # segment tag: the user edited the model's output
ORIGIN_TAG = "SlicerCAD.algorithm"          # segment tag: the model (name) that added the segment
MODEL_TAGS = (ORIGIN_TAG, "SlicerCAD.method")    # (the weak labeller tags its segments with its method)
_DEFAULT_TYPE = "85756007"                  # Slicer's default terminology for a new segment: Tissue / Tissue
_FIELDS = ("category", "type", "type_modifier", None, "region", "region_modifier")


def segment_terminology(segment) -> dict | None:
    """A segment's Slicer terminology as {"category", "type", "type_modifier", "region", "region_modifier":
    (scheme, value, meaning) or None}; None without one (or with Slicer's default Tissue / Tissue)."""
    entry = (segment.GetTerminology() if hasattr(segment, "GetTerminology")
             else segment_tag(segment, "TerminologyEntry"))
    parts = str(entry or "").split("~")[1:]        # context ~ category ~ type ~ modifier ~ anatomic context ~ ...
    out = {}
    for key, text in zip(_FIELDS, parts):
        fields = text.split("^")
        if key and len(fields) >= 3 and fields[0] and fields[1]:
            out[key] = (fields[0], fields[1], fields[2])
    if "category" not in out or "type" not in out or (out["type"][1] == _DEFAULT_TYPE
                                                     and out["category"][1] == _DEFAULT_TYPE):
        return None
    return out


def segment_algorithm(segment, algorithm) -> Algorithm | None:
    """The segment's algorithm: ``algorithm`` (an Algorithm, or a dict {model tag value: Algorithm}, e.g. per
    weak-labeller method) when a model added it (``MODEL_TAGS``), corrected when it was edited
    (``CORRECTED_TAG``); None (MANUAL) for a hand-drawn segment."""
    made_by = next((value for value in (segment_tag(segment, t) for t in MODEL_TAGS) if value), "")
    if not made_by:
        return None
    if isinstance(algorithm, dict):
        if made_by not in algorithm:
            raise InputError(f"no algorithm given for a segment made by {made_by!r} (known: {sorted(algorithm)})",
                             segment.GetName())
        algorithm = algorithm[made_by]
    return algorithm.corrected() if segment_tag(segment, CORRECTED_TAG).lower() in ("1", "true", "yes") else algorithm


def write_segmentation_seg(segmentation_node, reference_volume_node, path, algorithm, *,
                           lesion_types: dict | None = None, segment_ids=None) -> Path:
    """Write the segments (all, or ``segment_ids``) of ``segmentation_node`` as a DICOM SEG on the reference
    volume's series; each segment's algorithm from its tags and ``algorithm`` (``segment_algorithm``)."""
    from slicercad.dicomio.seg import Segment, write_seg

    segmentation = segmentation_node.GetSegmentation()
    ids = list(segment_ids) if segment_ids else [segmentation.GetNthSegmentID(i)
                                                 for i in range(segmentation.GetNumberOfSegments())]
    if not ids:
        raise InputError("the segmentation has no segments", segmentation_node.GetName())
    files = volume_files(reference_volume_node)
    image = volume_node_to_sitk(reference_volume_node)
    segments = []
    for sid in ids:
        segment = segmentation.GetSegment(sid)
        if segment is None:
            raise InputError(f"no segment {sid!r}", segmentation_node.GetName())
        given = (lesion_types or {}).get(sid)
        terminology = None if given else segment_terminology(segment)
        kind = given or lesion_type_key(segment.GetName()) or "lesion"
        mask = segment_to_label_array(segmentation_node, sid, reference_volume_node)
        segments.append(Segment(segment.GetName(), mask, kind, segment_algorithm(segment, algorithm),
                                tracking_id=segment.GetName(), terminology=terminology))
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
    else:
        for f in files:
            database.insert(str(f), False, False)
    _check_indexed(files, database)
    return files


def _check_indexed(files, database) -> None:
    """Every file's instance is in the database (importDicom answers True even when it skipped files)."""
    import pydicom

    if not hasattr(database, "fileForInstance"):
        return
    for f in files:
        uid = str(pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        if not database.fileForInstance(uid):
            raise InputError(f"the DICOM database did not index instance {uid} (not DICOM, or refused)", str(f))


def load_from_database(series_uids) -> list:
    """Load result series (SEG, SR, Parametric Map) through Slicer's DICOM plugins; returns node ids.
    Needs the Slicer application (DICOMSegmentationPlugin, DICOMTID1500Plugin, DICOMParametricMapPlugin)."""
    if not hasattr(slicer, "app"):
        raise InputError("loading through Slicer's DICOM plugins needs the Slicer application", "DICOMUtils")
    from DICOMLib import DICOMUtils

    return list(DICOMUtils.loadSeriesByUID(list(series_uids)))


def default_results_folder(module: str) -> Path:
    """A panel's default folder for DICOM results: Slicer's temporary folder (per user) / SlicerCAD / module."""
    app = getattr(slicer, "app", None)
    return Path(getattr(app, "temporaryPath", None) or tempfile.gettempdir()) / "SlicerCAD" / module / "DICOM results"


def results_folder(chosen, module: str, source) -> Path:
    """Where a panel writes: ``chosen`` (unset: ``default_results_folder``) / the StudyInstanceUID of ``source``
    (a volume node, or the DICOM files of the series, e.g. a TI scout's) - one folder per study, because the
    DICOM database indexes the files in place and another patient's results must never overwrite them."""
    import pydicom

    if source is None or (not hasattr(source, "GetName") and not list(source)):
        raise InputError("select the volume (or series) the results are on", "volume")
    if hasattr(source, "GetName"):
        study, where = tags_for_volume_node(source).study_instance_uid, source.GetName()
    else:
        where = str(list(source)[0])
        study = str(pydicom.dcmread(where, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).get(
            "StudyInstanceUID", ""))
    if not study:
        raise InputError("the DICOM files have no StudyInstanceUID", where)
    base = Path(chosen) if chosen and str(chosen) not in ("", ".") else default_results_folder(module)
    return base / study


def written_summary(paths, database=True) -> str:
    """The panel's status text: the files written (and that they are in the DICOM database)."""
    where = "added to the DICOM database" if database is not False else "not added to the DICOM database"
    return "\n".join([f"Wrote {len(paths)} DICOM file(s), {where}:"] + [str(p) for p in paths])


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


def liver_results_to_dicom(results, lesions, volume_nodes: dict, card: dict, folder, *, database=True) -> list:
    """LiverLesionCAD: ``classify_scene`` results (one per ``lesions`` Lesion, same order, by the model of
    ``card``) as a SEG of sphere ROIs and a TID 1500 SR (centre, diameter, class, probabilities) on the series of
    the reference phase of ``volume_nodes`` ({phase: node}), through the CLI's writer (``write_liver_results``)."""
    from slicercad.dicomio.results import write_liver_results
    from slicercad.liver.phases import REFERENCE_PHASE

    node = volume_nodes.get(REFERENCE_PHASE)
    if node is None:
        raise InputError(f"no {REFERENCE_PHASE} volume: the results are written on its series", REFERENCE_PHASE)
    out = write_liver_results(results, lesions, volume_node_to_sitk(node), volume_files(node), folder, card)
    return _add([out["seg"], out["sr"]], database)


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
        logging.getLogger(__name__).warning("the map %s is not on the grid of its volume: resampled (linear) onto "
                                            "the series' grid for the DICOM result", map_node.GetName())
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
        map_percentile=getattr(r, "map_percentile", None), sample_info=r.sample.info, warnings=r.warnings)
    return _add([out["seg"], out["pm"], out["sr"]], database)


def renal_results_to_dicom(results, masses, reference_volume_node, card: dict, folder, *, database=True) -> list:
    """RenalMassCAD: ``assess_scene`` results (one per ``masses`` Lesion, same order) as a SEG of the masses
    and a TID 1500 SR (centre, diameter, probabilities, per-phase scores) on the reference phase's series."""
    from slicercad.dicomio.results_renal import write_renal_results

    out = write_renal_results(results, masses, volume_node_to_sitk(reference_volume_node),
                              volume_files(reference_volume_node), folder, card)
    return _add([out["seg"], out["sr"]], database)
