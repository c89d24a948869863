"""Dataset manifest: JSON lines, one case per line (``slicercad.manifest/1``).

Each row holds a case: patient pseudonym, age, sex, one image file per phase and a
list of lesions (centre in mm with an explicit coordinate system, diameter, optional
mask, label, size, provenance). Paths are relative to the manifest file. The format is
``manifest.schema.json`` beside this module, and rows are checked against that very file by a
small validator of the JSON Schema keywords it uses (jsonschema is not part of Slicer's Python).
"""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import geometry
from ..atomic import write_text
from ..errors import ManifestError

SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
ROW_SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
SCHEMA = ROW_SCHEMA["properties"]["schema"]["const"]
CASE_KEYS = set(ROW_SCHEMA["properties"])
LESION_KEYS = set(ROW_SCHEMA["$defs"]["lesion"]["properties"])
# keys allowed under "extra"; anything else is refused so identifiers cannot slip in
EXTRA_KEYS = tuple(ROW_SCHEMA["properties"]["extra"]["properties"])
ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}
KEYWORDS = ANNOTATIONS | {"$ref", "type", "const", "enum", "required", "properties", "additionalProperties",
                          "minProperties", "items", "minItems", "maxItems", "minLength", "pattern", "minimum",
                          "maximum", "exclusiveMinimum"}


@dataclass
class Lesion:
    lesion_id: str
    center: tuple
    coordinate_system: str
    diameter_mm: float
    mask: Path | None = None
    label: str | None = None
    size_mm: float | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def center_lps(self) -> np.ndarray:
        return geometry.to_lps(self.center, self.coordinate_system)


@dataclass
class Case:
    case_id: str
    patient: str
    images: dict          # phase -> absolute Path
    lesions: list
    age: float | None = None
    sex: str | None = None
    extra: dict = field(default_factory=dict)
    line: int = 0


@dataclass
class Manifest:
    path: Path
    cases: list
    skipped: list = field(default_factory=list)   # [{"line", "case_id", "error"}] with skip_bad

    @property
    def patients(self) -> list:
        return sorted({c.patient for c in self.cases})

    def lesions(self):
        """Yield (case, lesion) pairs in file order."""
        for case in self.cases:
            for lesion in case.lesions:
                yield case, lesion


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return "non-finite number"
        return "integer" if isinstance(value, int) or value.is_integer() else "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _check_schema(schema, where="#") -> None:
    """Refuse a schema keyword the validator does not enforce (it would be skipped silently)."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{SCHEMA_FILE.name} {where}: keyword(s) {sorted(unknown)} are not supported")
    subs = [(f"{where}/{k}/{name}", sub) for k in ("properties", "$defs") for name, sub in schema.get(k, {}).items()]
    subs += [(f"{where}/{k}", schema[k]) for k in ("items", "additionalProperties") if isinstance(schema.get(k), dict)]
    for path, sub in subs:
        _check_schema(sub, path)


def _types(schema) -> list:
    types = schema.get("type", [])
    return [types] if isinstance(types, str) else types


def _problem(value, schema) -> str | None:
    """What is wrong with ``value`` itself (not its items or fields) under ``schema``; None if nothing."""
    kind, types = _json_type(value), _types(schema)
    if types and kind not in types and not (kind == "integer" and "number" in types):
        return f"must be of type {' or '.join(types)}, got {value!r} ({kind})"
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {schema['enum']}, got {value!r}"
    if kind == "string" and (len(value) < schema.get("minLength", 0)
                             or not re.search(schema.get("pattern", ""), value)):
        return f"must be a non-blank string, got {value!r}"
    if kind in ("integer", "number"):
        lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
        if not lo <= value <= hi:
            return f"must be within {lo:g}..{hi:g}, got {value!r}"
        if value <= schema.get("exclusiveMinimum", -math.inf):
            return f"must be > {schema['exclusiveMinimum']:g}, got {value!r}"
    if kind == "array" and not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
        return f"must have {schema.get('minItems', 0)} to {schema.get('maxItems', 'any')} items, got {value!r}"
    if kind == "object":
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            return f"lacks the required field(s) {missing}"
        if len(value) < schema.get("minProperties", 0):
            return f"must have at least {schema['minProperties']} entry"
        unknown = sorted(k for k in value if k not in schema.get("properties", {}))
        if unknown and schema.get("additionalProperties") is False:
            return f"has unknown field(s) {unknown}; allowed: {sorted(schema.get('properties', {}))}"
    return None


def validate(value, schema, src: str, field: str = "row") -> None:
    """Check ``value`` against ``schema`` (a node of ``ROW_SCHEMA``); a ManifestError names ``src`` and
    the offending ``field`` as a JSON path such as ``lesions[0].diameter_mm``."""
    if "$ref" in schema:  # "#/$defs/lesion"
        schema = functools.reduce(dict.__getitem__, schema["$ref"].removeprefix("#/").split("/"), ROW_SCHEMA)
    problem = _problem(value, schema)
    if problem:
        raise ManifestError(f"'{field}' {problem}", src)
    if isinstance(value, list):
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), src, f"{field}[{i}]")
    elif isinstance(value, dict):
        other = schema.get("additionalProperties", {})
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, other if isinstance(other, dict) else {})
            validate(item, sub, src, key if field == "row" else f"{field}.{key}")


_check_schema(ROW_SCHEMA)


def check_row(row, src: str = "row") -> dict:
    """Check one manifest row against ``manifest.schema.json`` and for unique lesion ids (no file
    access); returns the row."""
    validate(row, ROW_SCHEMA, src)
    ids = [les["lesion_id"] for les in row.get("lesions", [])]
    duplicate = next((lid for n, lid in enumerate(ids) if lid in ids[:n]), None)
    if duplicate is not None:
        raise ManifestError(f"duplicate lesion_id {duplicate!r} in case {row['case_id']!r}", src)
    return row


class _Grid:
    """Image geometry read from a file header (duck-types the sitk.Image getters geometry uses)."""

    def __init__(self, src):
        self._size, self._origin = tuple(src.GetSize()), tuple(src.GetOrigin())
        self._spacing, self._direction = tuple(src.GetSpacing()), tuple(src.GetDirection())

    def GetDimension(self):
        return len(self._size)

    def GetSize(self):
        return self._size

    def GetOrigin(self):
        return self._origin

    def GetSpacing(self):
        return self._spacing

    def GetDirection(self):
        return self._direction


def _read_image(path: Path, what: str, src: str, check_voxels: bool, shown: str) -> _Grid:
    if not path.is_file():
        raise ManifestError(f"{what} file {shown} does not exist", src)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        if not check_voxels:
            reader.ReadImageInformation()
            return _Grid(reader)
        image = reader.Execute()
    except RuntimeError as exc:
        raise ManifestError(f"{what} file {shown} cannot be read as an image ({exc})", src) from exc
    if not np.all(np.isfinite(sitk.GetArrayViewFromImage(image))):
        raise ManifestError(f"{what} file {shown} contains NaN or infinite voxels", src)
    return _Grid(image)


def _inside(image, center_lps) -> bool:
    ijk = geometry.physical_to_ijk(image, center_lps, "LPS")
    dim = image.GetDimension()
    size = np.array(image.GetSize(), dtype=float)
    return bool(np.all(ijk[:dim] >= -0.5) and np.all(ijk[:dim] <= size - 0.5))


def _parse_case(row, root: Path, src: str, classes, phases, check_voxels) -> Case:
    check_row(row, src)
    images = {}
    for phase, rel in row["images"].items():
        if phases is not None and phase not in phases:
            raise ManifestError(f"unknown phase {phase!r}; expected one of {list(phases)}", src)
        images[phase] = root / rel
    grids = {ph: _read_image(p, f"image {ph!r}", src, check_voxels, row["images"][ph])
             for ph, p in images.items()}
    lesions = []
    for les in row.get("lesions", []):
        lsrc = f"{src} lesion {les['lesion_id']!r}"
        label = les.get("label")
        if classes is not None and label is not None and label not in classes:
            raise ManifestError(f"label {label!r} is not in the class list {list(classes)}", lsrc)
        lesion = Lesion(les["lesion_id"], tuple(float(c) for c in les["center"]),
                        les["coordinate_system"], float(les["diameter_mm"]),
                        root / les["mask"] if les.get("mask") else None, label,
                        None if les.get("size_mm") is None else float(les["size_mm"]),
                        dict(les.get("provenance", {})))
        for ph, grid in grids.items():
            if not _inside(grid, lesion.center_lps):
                raise ManifestError(f"centre {list(lesion.center)} ({lesion.coordinate_system}) lies "
                                    f"outside image {ph!r} ({row['images'][ph]})", lsrc)
        if lesion.mask is not None:
            _read_image(lesion.mask, "mask", lsrc, check_voxels, les["mask"])
        lesions.append(lesion)
    return Case(row["case_id"], row["patient"], images, lesions,
                None if row.get("age") is None else float(row["age"]), row.get("sex"),
                dict(row.get("extra", {})))


def load_manifest(path, classes=None, phases=None, skip_bad: bool = False,
                  check_voxels: bool = True) -> Manifest:
    """Read and validate a manifest; every problem names ``<file> line N``.

    ``classes``/``phases`` restrict labels and image phases; ``skip_bad`` drops bad rows
    and lists them in ``Manifest.skipped`` instead of raising.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError("manifest file does not exist", path)
    cases, skipped, ids = [], [], set()
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        src, row = f"{path.name} line {n}", None
        try:
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"not valid JSON ({exc.msg} at column {exc.colno})", src) from exc
            case = _parse_case(row, path.parent, src, classes, phases, check_voxels)
            if case.case_id in ids:
                raise ManifestError(f"duplicate case_id {case.case_id!r}", src)
        except ManifestError as exc:
            if not skip_bad:
                raise
            skipped.append({"line": n, "case_id": row.get("case_id") if isinstance(row, dict) else None,
                            "error": str(exc)})
            continue
        case.line = n
        ids.add(case.case_id)
        cases.append(case)
    return Manifest(path, cases, skipped)


def _locked(path: Path):
    """Exclusive lock on ``<path>.lock`` across processes (filelock: flock on POSIX, msvcrt on Windows)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(path.name + ".lock"))


def append_cases(path, cases) -> dict:
    """Add rows (dicts in manifest format) to a manifest, atomically and under a lock file.

    A row whose case_id exists is merged: lesions are matched by lesion_id (a re-export
    replaces the lesion, never duplicates it) and the case fields are updated.
    Returns counts ``{"cases_added", "lesions_added", "lesions_replaced"}``.
    """
    path = Path(path)
    counts = {"cases_added": 0, "lesions_added": 0, "lesions_replaced": 0}
    new_rows = [check_row(dict(row, schema=row.get("schema", SCHEMA)), f"new row {i}")
                for i, row in enumerate(cases)]
    with _locked(path):
        rows = []
        if path.exists():
            for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if text.strip():
                    try:
                        rows.append(json.loads(text))
                    except json.JSONDecodeError as exc:
                        raise ManifestError(f"not valid JSON ({exc.msg}); fix it before appending",
                                            f"{path.name} line {n}") from exc
        by_id = {r.get("case_id"): r for r in rows}
        for row in new_rows:
            old = by_id.get(row["case_id"])
            if old is None:
                row = json.loads(json.dumps(row))
                rows.append(row)
                by_id[row["case_id"]] = row
                counts["cases_added"] += 1
                counts["lesions_added"] += len(row.get("lesions", []))
                continue
            lesions = {les["lesion_id"]: les for les in old.get("lesions", [])}
            for les in row.get("lesions", []):
                counts["lesions_replaced" if les["lesion_id"] in lesions else "lesions_added"] += 1
                lesions[les["lesion_id"]] = les
            old.update({k: v for k, v in row.items() if k != "lesions"})
            old["lesions"] = list(lesions.values())
        write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return counts
