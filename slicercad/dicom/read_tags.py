"""Read the attributes later modules need from one pydicom dataset (classic or enhanced)."""
from __future__ import annotations

import re
import struct
from typing import Optional

from pydicom.sequence import Sequence

from .tags import SeriesTags, parse_age_years, parse_dicom_time

# functional-group macros that hold per-frame values in enhanced MR/CT objects
_FRAME_GROUPS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _float(value) -> Optional[float]:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore").split("\\")[0].strip("\x00 ")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value) -> Optional[int]:
    f = _float(value)
    return None if f is None else int(round(f))


def frame_item(ds, index: int, macro: str):
    """The ``macro`` item (e.g. 'PlanePositionSequence') for frame ``index``: per-frame first, then shared."""
    for group in _FRAME_GROUPS:
        seq = ds.get(group)
        if not isinstance(seq, Sequence) or not seq:
            continue
        item = seq[index] if group.startswith("PerFrame") and index < len(seq) else seq[0]
        sub = item.get(macro)
        if isinstance(sub, Sequence) and sub:
            return sub[0]
    return None


def _datetime_time(value) -> Optional[float]:
    """Time of day from a DICOM DT ('YYYYMMDDHHMMSS.FFFFFF')."""
    text = _text(value)
    return parse_dicom_time(re.split(r"[+-]", text[8:])[0]) if len(text) > 8 else None


# manufacturer (upper-case prefix) -> private b-value tag (Siemens IS, GE IS x4, Philips FL)
_PRIVATE_B = (("SIEMENS", (0x0019, 0x100C)), ("GE", (0x0043, 0x1039)), ("PHILIPS", (0x2001, 0x1003)))


def b_value(ds, frame: int = 0) -> Optional[float]:
    """Diffusion b-value (s/mm^2): standard tag, enhanced MR diffusion macro, else the Siemens, GE or
    Philips private tag of the file's manufacturer."""
    if "DiffusionBValue" in ds:
        return _float(ds.DiffusionBValue)
    item = frame_item(ds, frame, "MRDiffusionSequence")
    if item is not None and "DiffusionBValue" in item:
        return _float(item.DiffusionBValue)
    manufacturer = _text(ds.get("Manufacturer")).upper()
    for vendor, tag in _PRIVATE_B:
        if manufacturer.startswith(vendor) and tag in ds:
            value = ds[tag].value
            if vendor == "PHILIPS" and isinstance(value, bytes) and len(value) == 4:   # FL read without its VR
                value = struct.unpack("<f", value)[0]
            value = _float(value)
            # GE adds 1e9 to flag non-standard scaling
            return value % 1e9 if value is not None and vendor == "GE" else value
    return None


def _classic_or_frame(ds, frame: int, keyword: str, sequence: str, item_keyword: str, convert):
    """A value from its classic attribute, else from the enhanced per-frame/shared functional group."""
    if keyword in ds:
        return convert(ds[keyword].value)
    item = frame_item(ds, frame, sequence)
    if item is not None and item_keyword in item:
        return convert(item[item_keyword].value)
    return None


def inversion_time(ds, frame: int = 0) -> Optional[float]:
    """Inversion time in ms (classic tag or enhanced MR modifier macro)."""
    return _classic_or_frame(ds, frame, "InversionTime", "MRModifierSequence", "InversionTimes", _float)


def trigger_time(ds, frame: int = 0) -> Optional[float]:
    """Cardiac trigger delay in ms (classic TriggerTime or the enhanced cardiac synchronisation macro)."""
    return _classic_or_frame(ds, frame, "TriggerTime", "CardiacSynchronizationSequence",
                             "NominalCardiacTriggerDelayTime", _float)


def temporal_position(ds, frame: int = 0) -> Optional[int]:
    """Temporal position (classic identifier or enhanced frame-content index)."""
    return _classic_or_frame(ds, frame, "TemporalPositionIdentifier", "FrameContentSequence",
                             "TemporalPositionIndex", _int)


def diffusion_directionality(ds, frame: int = 0) -> str:
    """DiffusionDirectionality (classic or enhanced MR diffusion macro), upper case."""
    return (_classic_or_frame(ds, frame, "DiffusionDirectionality", "MRDiffusionSequence",
                              "DiffusionDirectionality", _text) or "").upper()


def contrast_agent(ds) -> str:
    """Contrast/bolus agent text, from the classic tag or the coded agent sequence."""
    text = _text(ds.get("ContrastBolusAgent"))
    if not text and ds.get("ContrastBolusAgentSequence"):
        text = _text(ds.ContrastBolusAgentSequence[0].get("CodeMeaning"))
    return text


def read_tags(ds, frame: int = 0) -> SeriesTags:
    """SeriesTags from a dataset (header only is enough); ``frame`` picks per-frame values of enhanced objects."""
    acquisition = parse_dicom_time(ds.get("AcquisitionTime"))
    if acquisition is None:
        acquisition = _datetime_time(ds.get("AcquisitionDateTime"))
        if acquisition is None:
            item = frame_item(ds, frame, "FrameContentSequence")
            if item is not None:
                acquisition = _datetime_time(item.get("FrameAcquisitionDateTime"))
    return SeriesTags(
        modality=_text(ds.get("Modality")),
        study_instance_uid=_text(ds.get("StudyInstanceUID")),
        series_instance_uid=_text(ds.get("SeriesInstanceUID")),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=_text(ds.get("SeriesDescription")),
        protocol_name=_text(ds.get("ProtocolName")),
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
        contrast_bolus_agent=contrast_agent(ds),
        acquisition_time=acquisition,
        content_time=parse_dicom_time(ds.get("ContentTime")),
        series_time=parse_dicom_time(ds.get("SeriesTime")),
        inversion_time=inversion_time(ds, frame),
        trigger_time=trigger_time(ds, frame),
        b_value=b_value(ds, frame),
        diffusion_directionality=diffusion_directionality(ds, frame),
        temporal_position=temporal_position(ds, frame),
        patient_age_years=parse_age_years(ds.get("PatientAge")),
        patient_sex=_text(ds.get("PatientSex")).upper()[:1],
        field_strength_t=_float(ds.get("MagneticFieldStrength")),
        manufacturer=_text(ds.get("Manufacturer")),
        patient_id=_text(ds.get("PatientID")),
        study_date=_text(ds.get("StudyDate")),
        study_description=_text(ds.get("StudyDescription")),
        acquisition_number=_int(ds.get("AcquisitionNumber")),
    )
