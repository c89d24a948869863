"""De-identification for research exports: PS3.15 Basic Profile, with options that keep more.

Options (keys of ``basic_profile.OPTIONS``) as applied here: Retain Patient Characteristics keeps
the attributes its column marks K; Clean Descriptors keeps a text attribute its column marks C only
if it contains no identifier of the source (``audit.forbidden_patterns``) and no run of 5+ digits;
Retain Longitudinal Temporal Information with Modified Dates shifts the dates (DA, and the date of
DT) its column marks C back by a per-patient keyed number of days and keeps times of day, so phase
delays survive. Every other profile attribute is removed.

Pseudonyms and replacement UIDs are keyed HMAC-SHA256 digests with a site secret, so they are
consistent across exports from one site and cannot be reversed or recomputed from the MRN without
the secret (a plain hash of an MRN can be, by hashing every possible MRN).
Attributes outside the profile table are kept only when on a short technical allow-list.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import re

from ..dicom.tags import parse_age_years
from ..errors import InputError
from .audit import forbidden_patterns
from .basic_profile import ACTIONS, EDITION, OPTIONS, PROFILE, PROFILE_CODE, UID_KEYWORDS, VR, code, option_actions

MIN_SECRET_BYTES = 16
SUPPORTED_OPTIONS = ("retain_patient_characteristics", "clean_descriptors", "retain_modified_dates")
DEFAULT_OPTIONS = ("retain_patient_characteristics",)
_KEEPS = {"retain_patient_characteristics": {"K"}, "clean_descriptors": {"C"}, "retain_modified_dates": {"C"}}
_RULES = {option: {k: a for k, a in option_actions(option).items() if a in _KEEPS[option]}
          for option in SUPPORTED_OPTIONS}
_CLEAN_VRS = {"LO", "SH", "ST", "LT", "UT", "CS"}
_DATE_VRS = {"DA", "DT"}
_DIGIT_RUN = re.compile(r"\d{5,}")
MAX_SHIFT_DAYS = 3650
# technical, non-identifying attributes outside Table E.1-1 that a model card or loader may need
SAFE_ATTRIBUTES = frozenset({
    "Modality", "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength", "BodyPartExamined",
    "SliceThickness", "SpacingBetweenSlices", "PixelSpacing", "RepetitionTime", "EchoTime", "InversionTime",
    "FlipAngle", "KVP", "ImageType", "ScanningSequence", "SequenceVariant",
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


def check_options(options) -> tuple[str, ...]:
    """The option keys, in ``SUPPORTED_OPTIONS`` order; refuses unknown or unimplemented ones."""
    options = tuple(options)
    for option in options:
        if option not in SUPPORTED_OPTIONS:
            raise InputError(f"de-identification option {option!r} is not implemented; use some of "
                             f"{list(SUPPORTED_OPTIONS)}", "options")
    return tuple(o for o in SUPPORTED_OPTIONS if o in options)


def _rule(keyword: str, options) -> tuple[str, str] | None:
    """(option, action) of the first applied option that lets ``keyword`` stay, else None."""
    return next(((o, _RULES[o][keyword]) for o in options if keyword in _RULES[o]), None)


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return str(value)


def _shift_date(value: str, days: int) -> str | None:
    text = str(value).strip()
    try:
        date = datetime.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return (date - datetime.timedelta(days=days)).strftime("%Y%m%d") + text[8:]


def date_shift_days(secret, patient_id: str) -> int:
    """Days (1..MAX_SHIFT_DAYS) every date of this patient moves back under the Modified Dates option."""
    return int(keyed_id(secret, "date-shift", str(patient_id).strip()), 16) % MAX_SHIFT_DAYS + 1


def _kept(keyword, value, option, patterns, days):
    """The value an option lets stay, or None when it cannot be cleaned."""
    vr = VR.get(keyword)
    if option == "retain_patient_characteristics":
        return _plain(value)
    if option == "clean_descriptors":
        text = str(value)
        clean = vr in _CLEAN_VRS and not _DIGIT_RUN.search(text) and not any(p.search(text) for p in patterns)
        return text if clean else None
    if vr in _DATE_VRS:
        return _shift_date(value, days)
    return str(value) if vr == "TM" else None


def _deidentify(source_tags: dict, secret, options) -> tuple[dict, list]:
    options = check_options(options)
    patterns = [p for _, p in forbidden_patterns(source_tags)] if "clean_descriptors" in options else []
    days = date_shift_days(secret, source_tags.get("PatientID")) if "retain_modified_dates" in options else 0
    out, retained = {}, []
    for keyword, value in source_tags.items():
        if value in (None, ""):
            continue
        rule = _rule(keyword, options) if keyword in ACTIONS else None
        if keyword in UID_KEYWORDS:
            out[keyword] = replace_uid(secret, value)
        elif rule is not None:
            kept = _kept(keyword, value, rule[0], patterns, days)
            if kept is not None:
                out[keyword] = kept
                retained.append({"attribute": keyword, "basic_profile": ACTIONS[keyword], "action": rule[1],
                                 "option": OPTIONS[rule[0]]["name"]})
        elif keyword not in ACTIONS and keyword in SAFE_ATTRIBUTES:
            out[keyword] = _plain(value)
    out["PatientIdentityRemoved"] = "YES"
    out["DeidentificationMethod"] = "; ".join([PROFILE, *(OPTIONS[o]["name"] for o in options),
                                               "HMAC-SHA256 pseudonyms and UIDs"])
    out["DeidentificationMethodCodeSequence"] = codes(options)
    if "retain_modified_dates" in options:
        out["LongitudinalTemporalInformationModified"] = "MODIFIED"
    return out, retained


def codes(options=DEFAULT_OPTIONS) -> list[dict]:
    """DeidentificationMethodCodeSequence items (CID 7050): the profile, then each applied option."""
    return [code(PROFILE_CODE, "Basic Application Confidentiality Profile"),
            *(code(OPTIONS[o]["code"], OPTIONS[o]["name"]) for o in check_options(options))]


def deidentify_tags(source_tags: dict, secret, options=DEFAULT_OPTIONS) -> dict:
    """De-identified copy of DICOM attributes given by keyword (see the module docstring for ``options``).

    UIDs are replaced; profile attributes stay only as an option allows (stricter than Z/D, which
    this JSON metadata does not need); attributes outside the profile stay only if on ``SAFE_ATTRIBUTES``.
    """
    return _deidentify(source_tags, secret, options)[0]


def retained_attributes(source_tags: dict, secret, options=DEFAULT_OPTIONS) -> list[dict]:
    """The profile attributes ``deidentify_tags`` keeps, each with its Basic Profile action, option and action."""
    return _deidentify(source_tags, secret, options)[1]


def description(options=DEFAULT_OPTIONS) -> dict:
    """The de-identification declaration written into the export's dataset_description.json."""
    options = check_options(options)
    return {
        "profile": PROFILE,
        "table": f"PS3.15 Table E.1-1, edition {EDITION} (slicercad/engine/basic_profile.json)",
        "options": [OPTIONS[o]["name"] for o in options],
        "codes": codes(options),
        "retained_attributes": {OPTIONS[o]["name"]: sorted(_RULES[o]) for o in options},
        "patient_pseudonym": "HMAC-SHA256(site secret, PatientID), first 80 bits, prefix 'P'",
        "uid_replacement": "2.25.<decimal of the first 120 bits of HMAC-SHA256(site secret, original UID)>",
        "clean_descriptors": "text kept only without the source's identifiers or runs of 5+ digits, else removed",
        "modified_dates": "dates moved back by a per-patient keyed 1-3650 days; times of day kept",
        "removed": "every other attribute of PS3.15 Table E.1-1",
        "images": "NRRD pixel data and geometry only; no DICOM header fields",
    }
