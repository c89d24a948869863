"""A lesion label as a DICOM Segmentation (highdicom, which Slicer 5.12 bundles) referencing the source
series, so a PACS or Slicer's DICOM module shows it on the same voxels. Only for labels on the grid of an
unresampled single-frame series (one label slice per source instance, matched by position)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError

MANUFACTURER = "SlicerCAD"
MODEL_NAME = "WeakLabelSegmenter"
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _sorted_sources(files, image):
    """Source datasets in the label's slice order (by position along the image's k axis)."""
    import pydicom

    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    origin = np.array(image.GetOrigin(), float)
    step = float(image.GetSpacing()[2])
    by_k = {}
    for f in files:
        ds = pydicom.dcmread(str(f))
        for keyword in _TYPE2:          # empty Type 2 attributes highdicom copies (in memory only)
            if keyword not in ds:
                setattr(ds, keyword, "")
        k = float((np.array(ds.ImagePositionPatient, float) - origin) @ direction[:, 2]) / step
        if abs(k - round(k)) > 0.05:
            raise InputError("the label's grid does not match the source series (a resampled volume?): DICOM SEG "
                             "needs the series' own slices", str(f))
        by_k[int(round(k))] = ds
    n = image.GetSize()[2]
    if sorted(by_k) != list(range(n)):
        raise InputError(f"the series has {len(by_k)} slices at the label's positions, the label {n}", "series")
    return [by_k[k] for k in range(n)]


def write_dicom_seg(mask_kji, image, source_files, path, segment_label: str, method: str = "unet",
                    series_number: int = 900) -> Path:
    """Write ``mask_kji`` (on ``image``'s grid, which is the grid of ``source_files``) as a binary SEG."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    mask = (np.asarray(mask_kji) > 0).astype(np.uint8)
    if not mask.any():
        raise InputError("the label is empty: no DICOM SEG written", segment_label)
    sources = _sorted_sources(source_files, image)
    if mask.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise InputError(f"label shape {mask.shape} does not fit the series", segment_label)
    family = {"unet": codes.cid7162.ArtificialIntelligence, "region_growing": codes.cid7162.NeighborhoodAnalysis,
              "watershed": codes.cid7162.MorphologicalOperations}.get(method, codes.cid7162.DeformableModels)
    algorithm = hd.AlgorithmIdentificationSequence(name=f"SlicerCAD weak_lesion {method}", version="1",
                                                   family=family)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=str(segment_label)[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Mass,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME, software_versions="1", device_serial_number="0",
        content_description="lesion label from a centre and a size (research use)")
    with atomic_path(path) as tmp:
        seg.save_as(str(tmp))
    return Path(path)


def read_dicom_seg(path, source_files, image) -> np.ndarray:
    """The SEG's segment 1 back on the source series' grid [k, j, i] (for checks)."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    sources = _sorted_sources(source_files, image)
    uids = [ds.SOPInstanceUID for ds in sources]
    arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1],
                                            ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
    return np.asarray(arr[..., 0] > 0, dtype=np.uint8)
