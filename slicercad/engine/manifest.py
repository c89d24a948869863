"""Dataset manifest: JSON lines, one case per line (``slicercad.manifest/1``).

Each row holds a case: patient pseudonym, age, sex, one image file per phase and a
list of lesions (centre in mm with an explicit coordinate system, diameter, optional
mask, label, size, provenance). Paths are relative to the manifest file. The format
is documented by ``manifest.schema.json`` beside this module.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import geometry
from ..atomic import write_text
from ..errors import ManifestError

SCHEMA = "slicercad.manifest/1"
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
SEXES = ("M", "F", "O")
# keys allowed under "extra"; anything else is refused so identifiers cannot slip in
EXTRA_KEYS = ("field_strength_t", "scanner_model", "site", "split", "dataset", "modality",
              "slice_index", "contrast_agent", "notes")
CASE_KEYS = {"schema", "case_id", "patient", "age", "sex", "images", "lesions", "extra"}
LESION_KEYS = {"lesion_id", "center", "coordinate_system", "diameter_mm", "mask", "label",
               "size_mm", "provenance"}


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


def _finite(value, what, src, positive=False, optional=False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(f"{what} must be a finite number, got {value!r}", src)
    if positive and value <= 0:
        raise ManifestError(f"{what} must be > 0 mm, got {value!r}", src)
    return float(value)


def _text(value, what, src, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{what} must be a non-empty string, got {value!r}", src)
    return value


def check_row(row, src: str = "row") -> dict:
    """Structural check of one manifest row (no file access); returns the row."""
    if not isinstance(row, dict):
        raise ManifestError(f"a row must be a JSON object, got {type(row).__name__}", src)
    if row.get("schema") != SCHEMA:
        raise ManifestError(f"'schema' must be {SCHEMA!r}, got {row.get('schema')!r}", src)
    unknown = set(row) - CASE_KEYS
    if unknown:
        raise ManifestError(f"unknown field(s) {sorted(unknown)}; allowed {sorted(CASE_KEYS)}", src)
    _text(row.get("case_id"), "'case_id'", src)
    _text(row.get("patient"), "'patient'", src)
    age = _finite(row.get("age"), "'age'", src, optional=True)
    if age is not None and not 0 <= age <= 130:
        raise ManifestError(f"'age' must be within 0..130 years, got {age}", src)
    if row.get("sex") not in SEXES + (None,):
        raise ManifestError(f"'sex' must be one of {SEXES} or null, got {row.get('sex')!r}", src)
    images = row.get("images")
    if not isinstance(images, dict) or not images:
        raise ManifestError("'images' must map at least one phase to a file path", src)
    for phase, rel in images.items():
        _text(rel, f"image {phase!r} path", src)
    extra = row.get("extra", {})
    if not isinstance(extra, dict) or set(extra) - set(EXTRA_KEYS):
        bad = sorted(set(extra) - set(EXTRA_KEYS)) if isinstance(extra, dict) else extra
        raise ManifestError(f"'extra' key(s) {bad} are not in the allow-list {list(EXTRA_KEYS)}", src)
    lesions = row.get("lesions", [])
    if not isinstance(lesions, list):
        raise ManifestError("'lesions' must be a list", src)
    seen = set()
    for n, les in enumerate(lesions):
        lsrc = f"{src} lesion {n}"
        if not isinstance(les, dict):
            raise ManifestError("a lesion must be a JSON object", lsrc)
        unknown = set(les) - LESION_KEYS
        if unknown:
            raise ManifestError(f"unknown lesion field(s) {sorted(unknown)}", lsrc)
        lid = _text(les.get("lesion_id"), "'lesion_id'", lsrc)
        if lid in seen:
            raise ManifestError(f"duplicate lesion_id {lid!r} in case {row['case_id']!r}", lsrc)
        seen.add(lid)
        center = les.get("center")
        if not isinstance(center, list) or len(center) != 3:
            raise ManifestError(f"'center' must be [x, y, z] in mm, got {center!r}", lsrc)
        for c in center:
            _finite(c, "'center' coordinate", lsrc)
        if les.get("coordinate_system") not in geometry.COORDINATE_SYSTEMS:
            raise ManifestError(f"'coordinate_system' must be one of {geometry.COORDINATE_SYSTEMS}, "
                                f"got {les.get('coordinate_system')!r}", lsrc)
        _finite(les.get("diameter_mm"), "'diameter_mm'", lsrc, positive=True)
        _finite(les.get("size_mm"), "'size_mm'", lsrc, positive=True, optional=True)
        _text(les.get("mask"), "'mask'", lsrc, optional=True)
        _text(les.get("label"), "'label'", lsrc, optional=True)
        if not isinstance(les.get("provenance", {}), dict):
            raise ManifestError("'provenance' must be an object", lsrc)
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


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive advisory lock on ``<path>.lock`` (fcntl on POSIX, msvcrt on Windows)."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as fh:
        if os.name == "nt":
            import msvcrt
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.name == "nt":
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


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
