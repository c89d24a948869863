"""Labels as DICOM Segmentation (highdicom, which Slicer 5.12 bundles and its DICOMSegmentationPlugin loads).

One writer for every module (weak labels, semi-automatic segmentations, thresholded anomaly maps, lesion
masks): each segment has SNOMED-CT terminology for its lesion type (``terms.LESION_TYPES``), algorithm type
AUTOMATIC for model output or SEMIAUTOMATIC once corrected, and the model's name, version and sha256 in its
Segment Algorithm Identification; the SEG references the source series with its original UIDs. Heat maps go
as a fractional SEG here (``write_fractional_seg``) or as a float Parametric Map (``pmap``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .sources import sorted_sources
from .terms import MANUFACTURER, RESEARCH_NOTICE, Algorithm, category_code, class_code, code, SITES

SOFTWARE_VERSION = "1"


@dataclass
class Segment:
    """One segment: its mask [k, j, i] on the source grid, the lesion type (a key or class name of
    ``terms.LESION_TYPES``), a label, and who made it (``Algorithm``; None = MANUAL)."""

    label: str
    mask: np.ndarray
    lesion_type: str = "lesion"
    algorithm: Algorithm | None = None
    tracking_id: str | None = None
    tracking_uid: str | None = None
    site: str | None = None


# distinct display colours (sRGB) for segments 1, 2, ... (stored as CIELab, as Slicer reads them)
_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230))


def _colour(number: int):
    import highdicom as hd

    return hd.color.CIELabColor.from_rgb(*_COLOURS[(number - 1) % len(_COLOURS)]) \
        if hasattr(hd.color.CIELabColor, "from_rgb") else None


def _description(number: int, seg: Segment):
    import highdicom as hd
    from pydicom.uid import generate_uid

    algo = seg.algorithm
    kind = "MANUAL" if algo is None else algo.algorithm_type
    if kind not in ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL"):
        raise InputError(f"algorithm type must be AUTOMATIC, SEMIAUTOMATIC or MANUAL, got {kind!r}", seg.label)
    sites = [code(SITES[seg.site])] if seg.site in SITES else None
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=str(seg.label)[:64],
        segmented_property_category=category_code(seg.lesion_type),
        segmented_property_type=class_code(seg.lesion_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues[kind],
        algorithm_identification=None if algo is None else algo.seg_identification(),
        tracking_id=str(seg.tracking_id or seg.label)[:64], tracking_uid=seg.tracking_uid or generate_uid(),
        anatomic_regions=sites, display_color=_colour(number))


def _check_shape(array, sources, what):
    want = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if tuple(array.shape[:3]) != want:
        raise InputError(f"{what} shape {tuple(array.shape[:3])} does not fit the series {want}", what)


def _save(dataset, path) -> Path:
    with atomic_path(path) as tmp:
        dataset.save_as(str(tmp))
    return Path(path)


def write_seg(segments, image, source_files, path, *, series_number: int = 900,
              series_description: str = "SlicerCAD segmentation", content_label: str = "SLICERCAD",
              content_description: str = RESEARCH_NOTICE) -> Path:
    """Write ``segments`` (a list of ``Segment`` on ``image``'s grid, the grid of ``source_files``) as one
    binary SEG; segment numbers follow the list (1, 2, ...). Empty masks are refused."""
    import highdicom as hd
    from pydicom.uid import generate_uid

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
    dataset = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n, s) for n, s in enumerate(segments, start=1)],
        series_instance_uid=generate_uid(), series_number=series_number, sop_instance_uid=generate_uid(),
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
    from pydicom.uid import generate_uid

    heat = np.asarray(heat_kji, dtype=np.float32)
    if not np.all(np.isfinite(heat)) or heat.min() < 0.0 or heat.max() > 1.0:
        raise InputError("a fractional SEG holds values in [0, 1]; scale the heat map first "
                         "(or write a Parametric Map)", label)
    sources = sorted_sources(source_files, image)
    _check_shape(heat, sources, label)
    description = _description(1, Segment(label, heat > 0, lesion_type, algorithm))
    dataset = hd.seg.Segmentation(
        source_images=sources, pixel_array=heat, segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY, max_fractional_value=255,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
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


def segment_info(path) -> list:
    """[{number, label, type (scheme, value, meaning), algorithm_type, algorithm name/version/sha256,
    tracking_id, tracking_uid}] of a SEG file (for checks and the SR's references)."""
    import pydicom

    from .terms import parse_parameters

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    out = []
    for item in ds.SegmentSequence:
        t = item.SegmentedPropertyTypeCodeSequence[0]
        row = {"number": int(item.SegmentNumber), "label": str(item.SegmentLabel),
               "type": (str(t.CodingSchemeDesignator), str(t.CodeValue), str(t.CodeMeaning)),
               "algorithm_type": str(item.SegmentAlgorithmType),
               "tracking_id": str(item.get("TrackingID", "")), "tracking_uid": str(item.get("TrackingUID", ""))}
        if "SegmentationAlgorithmIdentificationSequence" in item:
            a = item.SegmentationAlgorithmIdentificationSequence[0]
            params = parse_parameters(a.get("AlgorithmParameters", ""))
            row.update(algorithm_name=str(a.AlgorithmName), algorithm_version=str(a.AlgorithmVersion),
                       model_sha256=params.get("model_sha256"))
        out.append(row)
    return out
