"""De-identification for research exports: PS3.15 Basic Profile with the Retain Patient Characteristics Option.

Pseudonyms and replacement UIDs are keyed HMAC-SHA256 digests with a site secret, so they
are consistent across exports from one site and cannot be reversed or recomputed from the
MRN without the secret (a plain hash of an MRN can be, by hashing every possible MRN).
Attributes outside the profile table are kept only when on a short technical allow-list.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac

from ..dicom.tags import parse_age_years
from ..errors import InputError
from .basic_profile import ACTIONS, CODES, OPTION, PROFILE, RETAINED, UID_KEYWORDS

MIN_SECRET_BYTES = 16
# technical, non-identifying attributes outside Table E.1-1 that a model card or loader may need
SAFE_ATTRIBUTES = frozenset({
    "Modality", "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength", "BodyPartExamined",
    "SliceThickness", "SpacingBetweenSlices", "PixelSpacing", "RepetitionTime", "EchoTime", "InversionTime",
    "FlipAngle", "KVP", "ContrastBolusAgent", "ImageType", "ScanningSequence", "SequenceVariant",
    "ConvolutionKernel", "Rows", "Columns", "BitsStored", "PhotometricInterpretation", "RescaleSlope",
    "RescaleIntercept", "RescaleType", "DiffusionBValue", "TemporalPositionIdentifier",
})


def check_secret(secret) -> bytes:
    """The site secret as bytes; refuses short or missing secrets."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < MIN_SECRET_BYTES:
        raise InputError(f"the site secret must be at least {MIN_SECRET_BYTES} bytes (keep it outside the export)",
                         "site_secret")
    return bytes(secret)


def _digest(secret: bytes, domain: str, value) -> bytes:
    return hmac.new(check_secret(secret), f"{domain}\0{value}".encode("utf-8"), hashlib.sha256).digest()


def pseudonym(secret, patient_id: str) -> str:
    """Pseudonymous patient id: ``P`` + 20 hex digits of HMAC-SHA256(site secret, PatientID)."""
    if not str(patient_id or "").strip():
        raise InputError("PatientID is required to derive a pseudonym", "source_tags.PatientID")
    return "P" + _digest(secret, "patient", str(patient_id).strip()).hex()[:20]


def keyed_id(secret, domain: str, *parts) -> str:
    """Stable 16-hex-digit id for ``parts`` (e.g. study UID + lesion key) under ``domain``."""
    return _digest(secret, domain, "\0".join(str(p) for p in parts)).hex()[:16]


def replace_uid(secret, uid: str) -> str:
    """Replacement UID ``2.25.<decimal of 120 HMAC bits>``: the same input gives the same UID."""
    return "2.25." + str(int.from_bytes(_digest(secret, "uid", str(uid).strip())[:15], "big"))


def _age_from_dates(birth, study) -> float | None:
    try:
        b = datetime.datetime.strptime(str(birth).strip()[:8], "%Y%m%d").date()
        s = datetime.datetime.strptime(str(study).strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return round((s - b).days / 365.25, 2) if s >= b else None


def patient_characteristics(source_tags: dict) -> tuple[float | None, str | None]:
    """(age in years, sex 'M'/'F'/'O') kept under the option; age from birth and study dates if needed."""
    age = parse_age_years(source_tags.get("PatientAge"))
    if age is None and source_tags.get("PatientBirthDate") and source_tags.get("StudyDate"):
        age = _age_from_dates(source_tags["PatientBirthDate"], source_tags["StudyDate"])
    sex = str(source_tags.get("PatientSex") or "").strip().upper() or None
    return age, sex if sex in ("M", "F", "O") else None


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return str(value)


def deidentify_tags(source_tags: dict, secret) -> dict:
    """De-identified copy of DICOM attributes given by keyword.

    UIDs are replaced; attributes the option keeps stay; every other profile attribute is
    removed (stricter than Z/D/C, which this JSON metadata does not need); attributes
    outside the profile stay only if on ``SAFE_ATTRIBUTES``.
    """
    out = {}
    for keyword, value in source_tags.items():
        if value in (None, ""):
            continue
        if keyword in UID_KEYWORDS:
            out[keyword] = replace_uid(secret, value)
        elif keyword in RETAINED or (keyword not in ACTIONS and keyword in SAFE_ATTRIBUTES):
            out[keyword] = _plain(value)
    out["PatientIdentityRemoved"] = "YES"
    out["DeidentificationMethod"] = f"{PROFILE}; {OPTION}; HMAC-SHA256 pseudonyms and UIDs"
    out["DeidentificationMethodCodeSequence"] = [dict(code) for code in CODES]
    return out


def description() -> dict:
    """The de-identification declaration written into the export's dataset_description.json."""
    return {
        "profile": PROFILE,
        "options": [OPTION],
        "codes": [dict(code) for code in CODES],
        "retained_attributes": sorted(RETAINED),
        "patient_pseudonym": "HMAC-SHA256(site secret, PatientID), first 80 bits, prefix 'P'",
        "uid_replacement": "2.25.<decimal of the first 120 bits of HMAC-SHA256(site secret, original UID)>",
        "removed": "every other attribute of PS3.15 Table E.1-1 (subset in slicercad.engine.basic_profile)",
        "images": "NRRD pixel data and geometry only; no DICOM header fields",
    }
