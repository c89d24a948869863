"""Age and sex of a renal study from DICOM tags (editable in the panel). pydicom only.

Age: PatientAge (AS: '064Y', months/weeks/days converted) when present, else the completed years between
PatientBirthDate and StudyDate (SeriesDate, AcquisitionDate as fall-backs); ``source`` says which. An age of 0
('000Y', the usual anonymisation placeholder -- pydicom's CT_small.dcm has it) is treated as missing, never as
a newborn (a renal mass model is not for infants; ``inference`` also refuses ages outside the card's training
range).
Sex: PatientSex 'M' -> male 1, 'F' -> 0; 'O', empty or missing -> None (the combined model then falls back to the
image-only model, and says so).
"""
from __future__ import annotations

from datetime import date

from ..dicom.tags import parse_age_years
from ..errors import InputError

SEX_CODES = {"M": 1, "F": 0}


def _date(text):
    t = str(text or "").strip()
    if len(t) != 8 or not t.isdigit():
        return None
    try:
        return date(int(t[:4]), int(t[4:6]), int(t[6:]))
    except ValueError:
        return None


def age_from_dates(birth, study) -> float | None:
    """Completed years from DICOM DA ``birth`` to DA ``study`` (None when either is missing or unparsable)."""
    b, s = _date(birth), _date(study)
    if b is None or s is None:
        return None
    if s < b:
        raise InputError(f"StudyDate {study} is before PatientBirthDate {birth}", "PatientBirthDate")
    return float(s.year - b.year - ((s.month, s.day) < (b.month, b.day)))


def clinical_from_dataset(ds) -> dict:
    """{"age_years", "male", "age_source", "sex_source"} from a pydicom Dataset (or dict of keywords)."""
    get = ds.get if hasattr(ds, "get") else (lambda k, d=None: getattr(ds, k, d))
    raw_age = str(get("PatientAge", "") or "").strip()
    age = parse_age_years(raw_age)
    source = "PatientAge"
    placeholder = age is not None and age <= 0.0
    if placeholder:
        age = None
    if age is None:
        study = next((get(k, None) for k in ("StudyDate", "SeriesDate", "AcquisitionDate") if get(k, None)), None)
        age = age_from_dates(get("PatientBirthDate", None), study)
        source = "PatientBirthDate + StudyDate" if age is not None else "missing"
        if placeholder:
            source = f"PatientAge {raw_age!r} is a placeholder (anonymised), treated as missing; " + source
    sex_text = str(get("PatientSex", "") or "").strip().upper()
    male = SEX_CODES.get(sex_text)
    return {"age_years": age, "male": male, "age_source": source,
            "sex_source": f"PatientSex {sex_text!r}" if male is not None else
            (f"PatientSex {sex_text!r}: not M/F, treated as missing" if sex_text else "missing")}


def clinical_from_file(path) -> dict:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise InputError(f"cannot read DICOM tags ({exc})", path) from exc
    return clinical_from_dataset(ds)
