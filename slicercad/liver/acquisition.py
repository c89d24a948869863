"""Acquisition values a liver model checks, read from DICOM attributes (pure Python: no numpy/torch).

``acquisition_from_tags(tags_by_phase)`` takes, per phase, a mapping of DICOM attributes (keys:
keywords such as ``"MagneticFieldStrength"``, tag strings ``"(0018,0087)"`` / ``"0018,0087"`` /
``"00180087"``, integer tags ``0x00180087`` or ``(0x0018, 0x0087)``; a pydicom ``Dataset`` works
too), and returns what the model card is checked against, so the MRML layer only passes tags:

- ``field_strength_t``: MagneticFieldStrength (0018,0087), from the reference phase if present,
  else any phase;
- ``b_value``: the DWI series' b-value (an ADC map has none: it is derived from the DWI): standard
  DiffusionBValue (0018,9087), else the vendors' private attributes: GE (0043,1039) (first value;
  GE adds 10^9 as a flag, which is removed), Siemens (0019,100C), Philips (2001,1003);
- ``adc_units``: the ADC map's units from its Real World Value Mapping (0040,9096) ->
  MeasurementUnitsCodeSequence (0040,08EA) CodeValue (UCUM: ``mm2/s``, ``um2/s``,
  ``10-6.mm2/s``, ``10-3.mm2/s``), with the mapping's slope/intercept when present;
- ``adc_kind``: ``"eADC"`` when the ADC series says it is an exponential ADC (ImageType or
  description containing EADC / EXP), which a model expecting ADC must refuse.
Missing values are left out (never guessed): the inference path then warns that they are unknown.
"""
from __future__ import annotations

import re

FIELD_STRENGTH = ("MagneticFieldStrength", 0x00180087)
B_VALUE_STANDARD = ("DiffusionBValue", 0x00189087)
B_VALUE_PRIVATE = (("GE", 0x00431039), ("Siemens", 0x0019100C), ("Philips", 0x20011003))
RWVM_SEQUENCE = ("RealWorldValueMappingSequence", 0x00409096)
UNITS_SEQUENCE = ("MeasurementUnitsCodeSequence", 0x004008EA)
# UCUM code value -> factor to 1e-3 mm^2/s (the unit the liver models are trained in)
ADC_UNITS = {"mm2/s": 1e3, "mm^2/s": 1e3, "um2/s": 1e-3, "um^2/s": 1e-3, "10-6.mm2/s": 1e-3, "10-6mm2/s": 1e-3,
             "1e-6 mm2/s": 1e-3, "10-3.mm2/s": 1.0, "10-3mm2/s": 1.0, "1e-3 mm2/s": 1.0, "10-5.mm2/s": 1e-2,
             "m2/s": 1e9}


_EADC_WORDS = {"EADC", "EXP", "EXPONENTIAL", "EXP_ADC", "ADC_EXP", "EXPADC", "ADCEXP"}


def _tag_int(key) -> int | None:
    if isinstance(key, int):
        return key
    if isinstance(key, tuple) and len(key) == 2:
        return (int(key[0]) << 16) | int(key[1])
    if isinstance(key, str):
        m = re.fullmatch(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?", key.strip())
        if m:
            return int(m.group(1) + m.group(2), 16)
    if hasattr(key, "group") and hasattr(key, "element"):   # pydicom BaseTag
        return (int(key.group) << 16) | int(key.element)
    return None


def _value(x):
    return getattr(x, "value", x)          # pydicom DataElement -> its value


def get_tag(tags, keyword: str | None, tag: int):
    """The value of one attribute from ``tags`` by keyword or by tag number (None when absent)."""
    if tags is None:
        return None
    if keyword and hasattr(tags, "get"):
        try:
            v = tags.get(keyword)
        except Exception:  # noqa: BLE001 - odd mappings (pydicom raises on some keys)
            v = None
        if v is not None:
            return _value(v)
    try:
        if hasattr(tags, "__contains__") and tag in tags:     # pydicom Dataset accepts int tags
            return _value(tags[tag])
    except Exception:  # noqa: BLE001
        pass
    if hasattr(tags, "items"):
        for key, v in tags.items():
            if _tag_int(key) == tag:
                return _value(v)
    return None


def _first_number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "ignore")
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\\,\s]+", value.strip().strip("\x00")) if p]
        value = parts[0] if parts else None
    elif isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (int, float))):
        value = next(iter(value), None)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None          # NaN -> None


def b_value_from_tags(tags) -> tuple[float | None, str | None]:
    """(b-value s/mm^2, the attribute it came from) of a DWI series' tags; (None, None) when absent."""
    v = _first_number(get_tag(tags, *B_VALUE_STANDARD))
    if v is not None:
        return v, "DiffusionBValue (0018,9087)"
    for vendor, tag in B_VALUE_PRIVATE:
        v = _first_number(get_tag(tags, None, tag))
        if v is None:
            continue
        if vendor == "GE" and v >= 1e9:
            v -= 1e9
        if vendor == "GE" and v > 1e5:
            v = v % 1e5
        return v, f"{vendor} private ({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return None, None


def _sequence_items(value) -> list:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    try:
        return list(value)
    except TypeError:
        return []


def adc_units_from_tags(tags) -> dict:
    """{'adc_units', 'adc_unit_factor', 'adc_rwvm_slope', 'adc_rwvm_intercept'} from a Real World Value
    Mapping, as far as present (empty when there is none or its units are not an ADC unit)."""
    out = {}
    for item in _sequence_items(get_tag(tags, *RWVM_SEQUENCE)):
        for code in _sequence_items(get_tag(item, *UNITS_SEQUENCE)):
            unit = str(get_tag(code, "CodeValue", 0x00080100) or "").strip()
            if unit in ADC_UNITS:
                out.update(adc_units=unit, adc_unit_factor=ADC_UNITS[unit])
                slope = _first_number(get_tag(item, "RealWorldValueSlope", 0x00409225))
                intercept = _first_number(get_tag(item, "RealWorldValueIntercept", 0x00409224))
                if slope is not None:
                    out["adc_rwvm_slope"] = slope
                if intercept is not None:
                    out["adc_rwvm_intercept"] = intercept
                return out
    return out


def is_exponential_adc(tags) -> bool:
    """True when the series says it is an exponential ADC (eADC: exp(-b ADC), unitless)."""
    words = []
    image_type = get_tag(tags, "ImageType", 0x00080008)
    if image_type is not None:
        words += [str(w) for w in (image_type if not isinstance(image_type, str) else image_type.split("\\"))]
    for key, tag in (("SeriesDescription", 0x0008103E), ("ProtocolName", 0x00181030)):
        words += re.split(r"[\s_\-]+", str(get_tag(tags, key, tag) or ""))
    words = [w.strip().upper() for w in words if w and w.strip()]
    return any(w in _EADC_WORDS or w.startswith("EADC") for w in words)


def acquisition_from_tags(tags_by_phase: dict, reference_phase: str = "hepatobiliary") -> dict:
    """Field strength, DWI b-value, ADC units and kind from per-phase DICOM tags (see module doc).

    Also returns ``sources``: which attribute each value came from, for the result's provenance.
    """
    tags_by_phase = {p: t for p, t in (tags_by_phase or {}).items() if t is not None}
    out, sources = {}, {}
    order = [reference_phase] + [p for p in tags_by_phase if p != reference_phase]
    for phase in order:
        v = _first_number(get_tag(tags_by_phase.get(phase), *FIELD_STRENGTH))
        if v is not None and v > 0:
            out["field_strength_t"] = v
            sources["field_strength_t"] = f"MagneticFieldStrength (0018,0087) of {phase}"
            break
    dwi = tags_by_phase.get("DWI")
    b, where = b_value_from_tags(dwi)
    if b is not None:
        out["b_value"] = b
        sources["b_value"] = f"{where} of DWI"
    adc = tags_by_phase.get("ADC")
    if adc is not None:
        out["adc_tags_read"] = bool(adc)     # the ADC series' tags were read (units / eADC checked on them)
        units = adc_units_from_tags(adc)
        if units:
            out.update(units)
            sources["adc_units"] = "RealWorldValueMapping (0040,9096) of ADC"
        if is_exponential_adc(adc):
            out["adc_kind"] = "eADC"
            sources["adc_kind"] = "ImageType / SeriesDescription of ADC"
    if sources:
        out["sources"] = sources
    return out
