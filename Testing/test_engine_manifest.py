"""Dataset manifest: valid rows load, every bad row is named, appends are atomic and deduplicated."""
import json
import multiprocessing as mp

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad import geometry
from slicercad.engine.manifest import (ROW_SCHEMA, SCHEMA, SCHEMA_FILE, _check_schema, append_cases, check_row,
                                       load_manifest, validate)
from slicercad.errors import ManifestError

CLASSES = ["cyst", "hemangioma", "metastasis"]
PHASES = ["arterial", "portal"]


def _image(path, value=0.0, nan=False):
    arr = np.full((4, 10, 12), value, dtype=np.float32)  # k, j, i
    if nan:
        arr[1, 2, 3] = np.nan
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    img.SetOrigin((-10.0, 20.0, 5.0))
    sitk.WriteImage(img, str(path))


def _row(case_id, patient="P1", **changes):
    row = {"schema": SCHEMA, "case_id": case_id, "patient": patient, "age": 61.0, "sex": "F",
           "images": {"arterial": f"images/{case_id}_a.nrrd", "portal": f"images/{case_id}_p.nrrd"},
           "lesions": [{"lesion_id": "L1", "center": [-3.0, 27.0, 8.0], "coordinate_system": "LPS",
                        "diameter_mm": 6.0, "mask": None, "label": "cyst", "size_mm": 6.0,
                        "provenance": {"annotator": "R1"}}],
           "extra": {"field_strength_t": 3.0}}
    row.update(changes)
    return row


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "images").mkdir()
    for cid in ("c1", "c2", "c3"):
        for suffix in ("a", "p"):
            _image(tmp_path / "images" / f"{cid}_{suffix}.nrrd")
    return tmp_path


def _write(root, rows):
    path = root / "manifest.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_valid_manifest_loads_with_absolute_paths_and_lps_centres(dataset):
    ras = _row("c2", "P2")
    ras["lesions"][0].update(center=[3.0, -27.0, 8.0], coordinate_system="RAS")
    m = load_manifest(_write(dataset, [_row("c1"), ras, _row("c3", "P2")]), CLASSES, PHASES)
    assert [c.case_id for c in m.cases] == ["c1", "c2", "c3"] and m.patients == ["P1", "P2"]
    assert m.cases[0].images["portal"] == dataset / "images" / "c1_p.nrrd"
    np.testing.assert_allclose(m.cases[1].lesions[0].center_lps, [-3.0, 27.0, 8.0])
    assert [les.lesion_id for _, les in m.lesions()] == ["L1"] * 3 and m.skipped == []


def _lesion(**kw):
    les = _row("x")["lesions"][0]
    les.update(kw)
    return [les]


BAD = [
    (lambda: _row("c2", images={"arterial": "images/missing.nrrd"}),
     "image 'arterial' file images/missing.nrrd does not exist"),
    (lambda: _row("c2", images={"delayed": "images/c2_a.nrrd"}), "unknown phase 'delayed'"),
    (lambda: _row("c2", lesions=_lesion(label="scar")), "label 'scar' is not in the class list"),
    (lambda: _row("c2", lesions=_lesion(center=[80.0, 27.0, 8.0])), "outside image 'arterial'"),
    (lambda: _row("c2", lesions=_lesion(coordinate_system="RAS")), "outside image 'arterial'"),
    (lambda: _row("c2", lesions=_lesion(diameter_mm=-1)), "'lesions[0].diameter_mm' must be > 0, got -1"),
    (lambda: _row("c2", lesions=_lesion(mask="masks/none.nrrd")), "mask file masks/none.nrrd does not"),
    (lambda: _row("c2", sex="male"), "'sex' must be one of"),
    (lambda: _row("c2", extra={"PatientName": "DOE^JOHN"}), "'extra' has unknown field(s) ['PatientName']"),
    (lambda: _row("c2", patient_name="x"), "'row' has unknown field(s) ['patient_name']"),
    # wrong types name the field
    (lambda: _row("c2", age="61"), "'age' must be of type number or null, got '61' (string)"),
    (lambda: _row("c2", age=131), "'age' must be within 0..130, got 131"),
    (lambda: _row("c2", lesions=_lesion(diameter_mm="6")), "'lesions[0].diameter_mm' must be of type number"),
    (lambda: _row("c2", lesions=_lesion(center=[1.0, "27", 8.0])), "'lesions[0].center[1]' must be of type number"),
    (lambda: _row("c2", lesions=_lesion(center=[1.0, 27.0])), "'lesions[0].center' must have 3 to 3 items"),
    (lambda: '{"schema": "slicercad.manifest/1", "case_id": "c2", "patient": "P1", "images": {"arterial": '
             '"images/c2_a.nrrd"}, "lesions": [{"lesion_id": "L1", "center": [0, 0, 0], "coordinate_system": '
             '"LPS", "diameter_mm": NaN}]}', "'lesions[0].diameter_mm' must be of type number, got nan"),
    (lambda: _row("c2", extra={"slice_index": 2.5}), "'extra.slice_index' must be of type integer, got 2.5"),
    (lambda: _row("c2", images={"arterial": 3}), "'images.arterial' must be of type string"),
    (lambda: _row("  "), "'case_id' must be a non-blank string"),
    (lambda: _row("c2", lesions=[{"lesion_id": "L1"}]), "'lesions[0]' lacks the required field(s) ['center'"),
    (lambda: _row("c2", lesions=_lesion() * 2), "duplicate lesion_id 'L1'"),
    (lambda: _row("c2", lesions=_lesion(coordinate_system="ras")), "'lesions[0].coordinate_system' must be one of"),
    (lambda: _row("c2", sex=None, age=None, lesions=_lesion(mask=None, label=None, size_mm=None) + [
        dict(_lesion()[0], lesion_id="L2", size_mm=0)]), "'lesions[1].size_mm' must be > 0"),
    (lambda: _row("c2", schema="other/2"), "'schema' must be"),
    (lambda: _row("c1"), "duplicate case_id 'c1'"),
    (lambda: '{"schema": ', "not valid JSON"),
]


@pytest.mark.parametrize("make,message", BAD)
def test_bad_rows_raise_naming_line_and_problem(dataset, make, message):
    path = _write(dataset, [_row("c1"), make()])
    with pytest.raises(ManifestError) as err:
        load_manifest(path, CLASSES, PHASES)
    assert str(err.value).startswith("manifest.jsonl line 2") and message in str(err.value)


def test_nan_voxels_are_refused_unless_voxels_are_not_checked(dataset):
    _image(dataset / "images" / "c2_p.nrrd", nan=True)
    path = _write(dataset, [_row("c1"), _row("c2")])
    with pytest.raises(ManifestError, match=r"line 2: image 'portal' file images/c2_p.nrrd contains NaN"):
        load_manifest(path, CLASSES, PHASES)
    assert len(load_manifest(path, CLASSES, PHASES, check_voxels=False).cases) == 2


def test_skip_bad_keeps_good_rows_and_reports_the_rest(dataset):
    path = _write(dataset, [_row("c1"), _row("c2", lesions=_lesion(label="scar")), "not json",
                            _row("c3", "P3")])
    m = load_manifest(path, CLASSES, PHASES, skip_bad=True)
    assert [c.case_id for c in m.cases] == ["c1", "c3"]
    assert [(s["line"], s["case_id"]) for s in m.skipped] == [(2, "c2"), (3, None)]
    assert "scar" in m.skipped[0]["error"]


def test_the_shipped_schema_file_is_what_validates():
    assert ROW_SCHEMA == json.loads(SCHEMA_FILE.read_text()) and SCHEMA == "slicercad.manifest/1"
    lesion = ROW_SCHEMA["$defs"]["lesion"]["properties"]
    assert tuple(lesion["coordinate_system"]["enum"]) == geometry.COORDINATE_SYSTEMS
    with pytest.raises(ValueError, match=r"#/properties/x: keyword\(s\) \['uniqueItems'\] are not supported"):
        _check_schema({"properties": {"x": {"type": "array", "uniqueItems": True}}})
    stricter = json.loads(json.dumps(ROW_SCHEMA))          # a rule changed in the schema changes the check
    stricter["properties"]["age"]["maximum"] = 100
    row = _row("c1", age=120.0)
    assert check_row(row) is row
    with pytest.raises(ManifestError, match="'age' must be within 0..100, got 120.0"):
        validate(row, stricter, "test")


def test_append_dedupes_cases_and_replaces_lesions_by_id(dataset):
    path = dataset / "manifest.jsonl"
    assert append_cases(path, [_row("c1"), _row("c2", "P2")])["cases_added"] == 2
    again = _row("c1")
    again["lesions"][0]["label"] = "hemangioma"
    again["lesions"].append(dict(again["lesions"][0], lesion_id="L2"))
    counts = append_cases(path, [again])
    assert counts == {"cases_added": 0, "lesions_added": 1, "lesions_replaced": 1}
    m = load_manifest(path, CLASSES, PHASES)
    assert [c.case_id for c in m.cases] == ["c1", "c2"]
    assert [(les.lesion_id, les.label) for les in m.cases[0].lesions] == [("L1", "hemangioma"),
                                                                          ("L2", "hemangioma")]
    with pytest.raises(ManifestError, match="new row 0.*'sex'"):
        append_cases(path, [_row("c9", sex="X")])
    assert len(path.read_text().splitlines()) == 2


def _append_many(args):
    path, worker = args
    for i in range(8):
        append_cases(path, [_row(f"w{worker}-{i}", f"P{worker}", images={"arterial": "a.nrrd"})])


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = tmp_path / "manifest.jsonl"
    with mp.get_context("spawn").Pool(3) as pool:
        pool.map(_append_many, [(path, w) for w in range(3)])
    ids = [json.loads(line)["case_id"] for line in path.read_text().splitlines()]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(3) for i in range(8))
    assert not list(tmp_path.glob(".manifest.jsonl.*"))   # no temporary files left behind
