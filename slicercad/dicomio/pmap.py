"""A float heat map (attention, Grad-CAM, anomaly) as a DICOM Parametric Map (highdicom; Slicer's
DICOMParametricMapPlugin loads it) on the source series' grid, with its units in the Real World Value Mapping
(UCUM: '1' for unitless scores, or any UCUM code) and the algorithm in the content description.

What Slicer 5.12's plugin needs beyond the IOD as highdicom writes it (it converts with dcmqi's
paramap2itkimage, then reads ``QuantityValueCode`` from its meta.json): a Quantity Definition (concept
'Quantity', here the map's quantity code) in the Real World Value Mapping, and the Frame Anatomy functional
group (a required Parametric Map functional group highdicom leaves out; paramap2itkimage crashes without it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .sources import sorted_sources
from .terms import MANUFACTURER, RESEARCH_NOTICE, SITES, Algorithm, code, derived_uids, private_code


def write_parametric_map(values_kji, image, source_files, path, *, label: str = "HEATMAP",
                         explanation: str = "heat map", unit: str = "1", unit_meaning: str = "no units",
                         quantity: str = "heat_map", algorithm: Algorithm | None = None, site: str | None = None,
                         series_number: int = 902, series_description: str = "SlicerCAD heat map") -> Path:
    """Write ``values_kji`` (float, on the source grid) as a FLOAT Parametric Map (32-bit, no rescaling);
    ``quantity`` a private concept key of ``terms.PRIVATE``, ``site`` a key of ``terms.SITES``."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    values = np.asarray(values_kji, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise InputError("the heat map holds NaN or infinite values", label)
    sources = sorted_sources(source_files, image)
    want = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if values.shape != want:
        raise InputError(f"heat map shape {values.shape} does not fit the series {want}", label)
    lo, hi = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label[:16], lut_explanation=explanation[:64], unit=Code(unit, "UCUM", unit_meaning),
        value_range=(lo, hi), slope=1.0, intercept=0.0, quantity_definition=private_code(quantity))
    what = "" if algorithm is None else f" {algorithm.name} v{algorithm.version}"
    series_uid, sop_uid = derived_uids(str(sources[0].SeriesInstanceUID), algorithm, values.tobytes(), label,
                                       explanation, unit, quantity, str(site), series_description)
    dataset = hd.pm.ParametricMap(
        source_images=sources, pixel_array=values, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="SlicerCAD", software_versions="1",
        device_serial_number="0", contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping], window_center=(lo + hi) / 2.0, window_width=max(hi - lo, 1e-6),
        content_label=label[:16].upper().replace(" ", "_"),
        content_description=(explanation + what)[:64], series_description=series_description[:64])
    dataset.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [_frame_anatomy(site)]   # (laterality there)
    sha = f"; model_sha256={algorithm.sha256}" if algorithm is not None and algorithm.sha256 else ""
    dataset.ImageComments = RESEARCH_NOTICE + sha
    with atomic_path(path) as tmp:
        dataset.save_as(str(tmp))
    return Path(path)


def _frame_anatomy(site):
    from pydicom.dataset import Dataset

    region = code(SITES.get(site, ("SCT", "38266002", "Entire body")))      # an anatomic region when none is known
    item, anatomy = Dataset(), Dataset()
    anatomy.CodeValue, anatomy.CodingSchemeDesignator, anatomy.CodeMeaning = region.value, region.scheme_designator, \
        region.meaning
    item.AnatomicRegionSequence = [anatomy]
    item.FrameLaterality = "U"                 # unpaired
    return item


def read_parametric_map(path, source_files, image) -> tuple:
    """(values [k, j, i] float32 on the source grid, unit code value) of a Parametric Map (frames matched to
    the source slices by position)."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    sources = sorted_sources(source_files, image)
    positions = np.array([[float(v) for v in s.ImagePositionPatient] for s in sources])
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    out = np.zeros((len(sources), int(ds.Rows), int(ds.Columns)), np.float32)
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ipp = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = int(np.argmin(np.linalg.norm(positions - ipp, axis=1)))
        if np.linalg.norm(positions[k] - ipp) > 1e-3:
            raise InputError("a Parametric Map frame lies on no slice of the source series", str(path))
        out[k] = pixels[f]
    mapping = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    return out, str(mapping.MeasurementUnitsCodeSequence[0].CodeValue)
