"""Labels as DICOM Segmentation (highdicom, which Slicer 5.12 bundles and its DICOMSegmentationPlugin loads).

One writer for every module (weak labels, semi-automatic segmentations, thresholded anomaly maps, lesion
masks): each segment has the terminology it came with (a Slicer segment's category / type / modifier / region
triplets, ``Segment.terminology``), else the SNOMED-CT code of its lesion type (``terms.class_code``), algorithm
type AUTOMATIC for model output, SEMIAUTOMATIC once corrected, MANUAL without an algorithm, and the model's name,
version and sha256 in its Segment Algorithm Identification; the SEG references the source series with its
original UIDs, and its UIDs derive from that series and the content (a rerun writes the same ones). A sphere at
a listed centre and diameter is a SEMIAUTOMATIC "sphere ROI" (``sphere_segment``), never the model's. Heat maps
go as a fractional SEG here (``write_fractional_seg``) or as a float Parametric Map (``pmap``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .sources import sorted_sources
from .terms import (MANUFACTURER, PRIVATE_SCHEME, RESEARCH_NOTICE, SITES, SPHERE_ROI, Algorithm, category_code,
                    class_code, code, coding_scheme_identification, derived_uids)

SOFTWARE_VERSION = "1"


@dataclass
class Segment:
    """One segment: its mask [k, j, i] on the source grid, the lesion type (a class name, ``terms.class_code``)
    or a ``terminology`` {"category", "type", "type_modifier", "region", "region_modifier": (scheme, value,
    meaning) or None} that wins over it, a label, and who made it (``Algorithm``; None = MANUAL)."""

    label: str
    mask: np.ndarray
    lesion_type: str = "lesion"
    algorithm: Algorithm | None = None
    tracking_id: str | None = None
    tracking_uid: str | None = None
    site: str | None = None
    terminology: dict | None = None
    description: str | None = None


def sphere_segment(image, centre_lps, diameter_mm: float, lesion_id: str, lesion_type: str = "lesion",
                   site: str | None = None):
    """(Segment, volume mm3) of a sphere at a listed centre and diameter on ``image``'s grid, labelled
    '<id> sphere', algorithm ``terms.SPHERE_ROI`` (SEMIAUTOMATIC: a person's measurement, not a model's output);
    None when the sphere covers no voxel centre (too small for the grid)."""
    import SimpleITK as sitk

    from ..weak.shapes import sphere_label

    mask = sitk.GetArrayFromImage(sphere_label(image, tuple(centre_lps), float(diameter_mm), "LPS")) > 0
    if not mask.any():
        return None
    segment = Segment(f"{lesion_id} sphere", mask, lesion_type, SPHERE_ROI, tracking_id=str(lesion_id), site=site,
                      description=f"sphere ROI, {float(diameter_mm):g} mm diameter at the listed centre")
    return segment, float(mask.sum()) * float(np.prod(image.GetSpacing()))


# distinct display colours (sRGB) for segments 1, 2, ... (stored as CIELab, as Slicer reads them)
_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230))


def _colour(number: int):
    import highdicom as hd

    return hd.color.CIELabColor.from_rgb(*_COLOURS[(number - 1) % len(_COLOURS)]) \
        if hasattr(hd.color.CIELabColor, "from_rgb") else None


def _description(number: int, seg: Segment, series_uid: str):
    import highdicom as hd
    from pydicom.uid import generate_uid

    algo = seg.algorithm
    kind = "MANUAL" if algo is None else algo.algorithm_type
    if kind not in ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"):
        raise InputError(f"algorithm type must be AUTOMATIC, SEMIAUTOMATIC or MANUAL, got {kind!r}", seg.label)
    terms = seg.terminology or {}
    region = terms.get("region") or (SITES.get(seg.site) if seg.site else None)
    tracking_id = str(seg.tracking_id or seg.label)[:64]
    item = hd.seg.SegmentDescription(
        segment_number=number, segment_label=str(seg.label)[:64],
        segmented_property_category=code(terms["category"]) if terms else category_code(seg.lesion_type),
        segmented_property_type=code(terms["type"]) if terms else class_code(seg.lesion_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues[kind],
        algorithm_identification=None if algo is None else algo.seg_identification(),
        tracking_id=tracking_id,
        tracking_uid=seg.tracking_uid or generate_uid(entropy_srcs=[series_uid, tracking_id, "segment"]),
        anatomic_regions=[code(region)] if region else None, display_color=_colour(number))
    if terms.get("type_modifier"):
        item.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _code_item(terms["type_modifier"])]
    if region and terms.get("region_modifier"):
        item.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_code_item(terms["region_modifier"])]
    if seg.description:
        item.SegmentDescription = str(seg.description)[:64]
    return item


def _code_item(triple):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning = (str(v) for v in triple)
    return item


def _uses_private(dataset) -> bool:
    """Whether a segment's codes use the private scheme (then it is declared in the file)."""
    for seg in dataset.SegmentSequence:
        for key in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
            if any(c.CodingSchemeDesignator == PRIVATE_SCHEME for c in seg.get(key, [])):
                return True
    return False


def _check_shape(array, sources, what):
    want = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if tuple(array.shape[:3]) != want:
        raise InputError(f"{what} shape {tuple(array.shape[:3])} does not fit the series {want}", what)


def _save(dataset, path) -> Path:
    if _uses_private(dataset):
        dataset.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    with atomic_path(path) as tmp:
        dataset.save_as(str(tmp))
    return Path(path)


def write_seg(segments, image, source_files, path, *, series_number: int = 900,
              series_description: str = "SlicerCAD segmentation", content_label: str = "SLICERCAD",
              content_description: str = RESEARCH_NOTICE) -> Path:
    """Write ``segments`` (a list of ``Segment`` on ``image``'s grid, the grid of ``source_files``) as one
    binary SEG; segment numbers follow the list (1, 2, ...). Empty masks are refused."""
    import highdicom as hd

    segments = list(segments)
    if not segments:
        raise InputError("no segments: no DICOM SEG written", str(path))
    sources = sorted_sources(source_files, image)
    stack = []
    for seg in segments:
        mask = (np.asarray(seg.mask) > 0).astype(np.uint8)
        if not mask.any():
            raise InputError("the label is empty: no DICOM SEG written", seg.label)
        _check_shape(mask, sources, seg.label)
        stack.append(mask)
    pixels = np.stack(stack, axis=-1)                       # [frames, rows, cols, segments]
    source_series = str(sources[0].SeriesInstanceUID)
    descriptions = [_description(n, s, source_series) for n, s in enumerate(segments, start=1)]
    series_uid, sop_uid = derived_uids(source_series, None, pixels.tobytes(), series_description, content_label,
                                       *(d.to_json() for d in descriptions))
    dataset = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid,
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="SlicerCAD",
        software_versions=SOFTWARE_VERSION, device_serial_number="0", content_label=content_label,
        content_description=content_description[:64], series_description=series_description[:64],
        omit_empty_frames=False)
    return _save(dataset, path)


def write_fractional_seg(heat_kji, image, source_files, path, label: str, *, algorithm: Algorithm | None = None,
                         lesion_type: str = "anomaly", series_number: int = 901,
                         series_description: str = "SlicerCAD heat map (fractional)") -> Path:
    """A heat map in [0, 1] (attention, Grad-CAM, anomaly probability) as a one-segment fractional SEG
    (PROBABILITY, 8-bit: values quantised to 1/255)."""
    import highdicom as hd

    heat = np.asarray(heat_kji, dtype=np.float32)
    if not np.all(np.isfinite(heat)) or heat.min() < 0.0 or heat.max() > 1.0:
        raise InputError("a fractional SEG holds values in [0, 1]; scale the heat map first "
                         "(or write a Parametric Map)", label)
    sources = sorted_sources(source_files, image)
    _check_shape(heat, sources, label)
    source_series = str(sources[0].SeriesInstanceUID)
    description = _description(1, Segment(label, heat > 0, lesion_type, algorithm), source_series)
    series_uid, sop_uid = derived_uids(source_series, algorithm, heat.tobytes(), description.to_json(),
                                       series_description)
    dataset = hd.seg.Segmentation(
        source_images=sources, pixel_array=heat, segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY, max_fractional_value=255,
        segment_descriptions=[description], series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="SlicerCAD", software_versions=SOFTWARE_VERSION, device_serial_number="0",
        content_label="SLICERCAD", content_description=RESEARCH_NOTICE[:64],
        series_description=series_description[:64], omit_empty_frames=False)
    return _save(dataset, path)


def read_seg(path, source_files, image) -> dict:
    """{segment_number: array [k, j, i]} of a SEG on the source series' grid (uint8 masks for a binary SEG,
    float32 in [0, 1] for a fractional one), matched to the source instances by UID."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    sources = sorted_sources(source_files, image)
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    numbers = [int(n) for n in seg.segment_numbers]
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers,
                                            ignore_spatial_locations=True, assert_missing_frames_are_empty=True,
                                            rescale_fractional=True, dtype=np.float32 if fractional else np.uint8)
    return {n: (arr[..., i].astype(np.float32) if fractional else (arr[..., i] > 0).astype(np.uint8))
            for i, n in enumerate(numbers)}


def _triple(c):
    return None if c is None else (str(c.CodingSchemeDesignator), str(c.CodeValue), str(c.CodeMeaning))


def segment_info(path) -> list:
    """[{number, label, category / type / type_modifier / region (scheme, value, meaning; None when absent),
    description, algorithm_type, algorithm name/version/sha256, tracking_id, tracking_uid}] of a SEG file (for
    checks and the SR's references)."""
    import pydicom

    from .terms import parse_parameters

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    out = []
    for item in ds.SegmentSequence:
        t = item.SegmentedPropertyTypeCodeSequence[0]
        modifier = t.get("SegmentedPropertyTypeModifierCodeSequence") or [None]
        region = item.get("AnatomicRegionSequence") or [None]
        row = {"number": int(item.SegmentNumber), "label": str(item.SegmentLabel),
               "category": _triple(item.SegmentedPropertyCategoryCodeSequence[0]), "type": _triple(t),
               "type_modifier": _triple(modifier[0]), "region": _triple(region[0]),
               "description": str(item.get("SegmentDescription", "")),
               "algorithm_type": str(item.SegmentAlgorithmType),
               "tracking_id": str(item.get("TrackingID", "")), "tracking_uid": str(item.get("TrackingUID", ""))}
        if "SegmentationAlgorithmIdentificationSequence" in item:
            a = item.SegmentationAlgorithmIdentificationSequence[0]
            params = parse_parameters(a.get("AlgorithmParameters", ""))
            row.update(algorithm_name=str(a.AlgorithmName), algorithm_version=str(a.AlgorithmVersion),
                       model_sha256=params.get("model_sha256"))
        out.append(row)
    return out
