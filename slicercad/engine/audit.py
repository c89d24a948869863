"""De-identification audit of a research export (``slicercad audit DIR --source-tags tags.json``).

Walks every file (hidden and temporary ones too) and reports:

- any source identifier — patient name (whole, and each name component of 3+ letters, e.g.
  "DOE^JOHN" → "DOE", "JOHN"), patient ID, other IDs, birth date (DICOM and ISO forms),
  accession number, any original UID (not the public 1.2.840.10008.* ones) — found case-insensitively as a whole token in file
  names, JSON, CSV, text, NRRD headers, DICOM element values, or printable runs of other files;
- any PS3.15 Basic Profile attribute present with a value (JSON keys, CSV columns, NRRD header
  fields, DICOM elements), except those the Retain Patient Characteristics Option keeps and
  replaced UIDs.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InputError
from .basic_profile import ACTIONS, RETAINED, UID_KEYWORDS

HELP = "audit a research export for identifiers (PS3.15 Basic Profile + source names/IDs/UIDs)"
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator", "AdmissionID")
TEXT_SUFFIXES = {".json", ".jsonl", ".csv", ".tsv", ".md", ".html", ".htm", ".txt", ".log", ".xml", ".yaml",
                 ".yml", ".ini", ".cfg"}
MIN_COMPONENT = 3
STANDARD_UID_ROOT = "1.2.840.10008."  # public DICOM UIDs (SOP classes, transfer syntaxes)
_PRINTABLE = re.compile(rb"[\x20-\x7e]{4,}")


def _values(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _values(v)]
    text = str(value).strip()
    return [text] if text else []


def _token(value: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])", re.IGNORECASE)


def forbidden_patterns(source_identifiers) -> list[tuple[str, re.Pattern]]:
    """(description, compiled pattern) for every identifier of one or more sources."""
    sources = source_identifiers if isinstance(source_identifiers, (list, tuple)) else [source_identifiers]
    found: dict[str, re.Pattern] = {}
    for tags in sources:
        if not isinstance(tags, dict):
            raise InputError(f"source identifiers must be a dict of DICOM keywords, got {type(tags).__name__}",
                             "source_identifiers")
        for keyword in NAME_KEYWORDS:
            for name in _values(tags.get(keyword)):
                found[f"{keyword} {name!r}"] = _token(name)
                for part in re.split(r"[\^=,\s]+", name):
                    if len(part) >= MIN_COMPONENT:
                        found[f"{keyword} component {part!r}"] = _token(part)
        for keyword in ID_KEYWORDS:
            for value in _values(tags.get(keyword)):
                found[f"{keyword} {value!r}"] = _token(value)
        for value in _values(tags.get("PatientBirthDate")):
            found[f"PatientBirthDate {value!r}"] = _token(value)
            if re.fullmatch(r"\d{8}", value):
                for sep in "-/.":
                    iso = sep.join((value[:4], value[4:6], value[6:]))
                    found[f"PatientBirthDate {iso!r}"] = _token(iso)
        for keyword, value in tags.items():
            if keyword.endswith("UID"):
                for uid in (u for u in _values(value) if not u.startswith(STANDARD_UID_ROOT)):
                    found[f"original {keyword} {uid!r}"] = re.compile(
                        r"(?<![0-9.])" + re.escape(uid) + r"(?![0-9]|\.[0-9])")
    return list(found.items())


def _attribute_problem(keyword: str, value, allowed=frozenset()) -> str | None:
    if keyword not in ACTIONS or keyword in RETAINED or keyword in UID_KEYWORDS or keyword in allowed:
        return None
    action = ACTIONS[keyword]
    if _values(value) or action.startswith("X") and "Z" not in action:
        return f"Basic Profile attribute {keyword} (action {action}) is present"
    return None


def _json_attributes(obj, where, problems, allowed):
    if isinstance(obj, dict):
        for key, value in obj.items():
            issue = _attribute_problem(str(key), value, allowed)
            if issue:
                problems.append(f"{where}: {issue}")
            _json_attributes(value, where, problems, allowed)
    elif isinstance(obj, list):
        for item in obj:
            _json_attributes(item, where, problems, allowed)


def _structured(path: Path, rel: str, text: str, problems: list, allowed) -> None:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            _json_attributes(json.loads(text), rel, problems, allowed)
        except json.JSONDecodeError:
            problems.append(f"{rel}: not valid JSON, audited as text only")
    elif suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                _json_attributes(json.loads(line), f"{rel} line {n}", problems, allowed)
            except json.JSONDecodeError:
                problems.append(f"{rel} line {n}: not valid JSON, audited as text only")
    elif suffix in (".csv", ".tsv") and text:
        for column in re.split(r"[,\t;]", text.splitlines()[0]):
            issue = _attribute_problem(column.strip().strip('"'), "column", allowed)
            if issue:
                problems.append(f"{rel}: column {issue}")


def _nrrd_header(data: bytes, rel: str, problems: list, allowed) -> str:
    import pydicom

    header = data.split(b"\n\n", 1)[0].decode("latin-1")
    for line in header.splitlines():
        if ":=" in line:
            key, value = line.split(":=", 1)
            key = key.strip()
            tag = re.fullmatch(r"([0-9A-Fa-f]{4})\|([0-9A-Fa-f]{4})", key)
            keyword = pydicom.datadict.keyword_for_tag(int(tag[1] + tag[2], 16)) if tag else key
            issue = _attribute_problem(keyword, value, allowed)
            if issue:
                problems.append(f"{rel}: header field {key}: {issue}")
    return header


def _dicom_text(path: Path, rel: str, problems: list, allowed) -> str | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    parts = []
    meta = list(ds.file_meta) if ds.file_meta else []
    for elem in [*meta, *ds.iterall()]:
        if elem.VR == "SQ":
            issue = _attribute_problem(elem.keyword, ["sequence"] if len(elem.value) else [], allowed)
        else:
            parts.append(str(elem.value))
            issue = _attribute_problem(elem.keyword, elem.value, allowed)
        if issue:
            problems.append(f"{rel}: DICOM {issue}")
    return "\n".join(parts)


def _file_text(path: Path, rel: str, problems: list, allowed) -> str:
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in (".nrrd", ".nhdr"):
        return _nrrd_header(data, rel, problems, allowed)
    if suffix == ".dcm" or data[128:132] == b"DICM":
        text = _dicom_text(path, rel, problems, allowed)
        if text is not None:
            return text
    if suffix in TEXT_SUFFIXES:
        text = data.decode("utf-8", "replace")
        _structured(path, rel, text, problems, allowed)
        return text
    return "\n".join(m.decode("ascii") for m in _PRINTABLE.findall(data))


def declared_retained(root: Path) -> frozenset:
    """Profile attributes the export's dataset_description.json declares kept under its options (Clean
    Descriptors, Modified Dates): present by design, while their values are still searched for identifiers."""
    path = root / "dataset_description.json"
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))["deidentification"]["retained_attributes"]
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()
    return frozenset(k for keywords in kept.values() for k in keywords) if isinstance(kept, dict) else frozenset()


def audit_export(folder, source_identifiers) -> list[str]:
    """Problems found in ``folder`` (empty list: clean) against the source identifiers.

    ``source_identifiers``: a dict of DICOM keyword → value (or a list of such dicts, one per source).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError("export folder not found", str(root))
    patterns = forbidden_patterns(source_identifiers)
    allowed = declared_retained(root)
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            for what, pattern in patterns:
                if pattern.search(name):
                    problems.append(f"{rel}: file name contains {what}")
            if name not in filenames or path.is_symlink():
                continue
            text = _file_text(path, rel, problems, allowed)
            for what, pattern in patterns:
                if pattern.search(text):
                    problems.append(f"{rel}: contains {what}")
    return problems


def add_arguments(parser) -> None:
    parser.add_argument("folder", help="export folder to audit")
    parser.add_argument("--source-tags", required=True,
                        help="JSON file: DICOM keyword -> value of the source (or a list, one object per source)")


def run(args) -> int:
    path = Path(args.source_tags)
    try:
        tags = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read source tags JSON: {exc}", str(path)) from exc
    problems = audit_export(args.folder, tags)
    for problem in problems:
        print(problem)
    print(f"audit: {len(problems)} problem(s) in {args.folder}")
    return 1 if problems else 0
