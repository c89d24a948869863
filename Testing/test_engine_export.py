"""Training-set export: manifest row, crops, de-identification, idempotence, crash safety."""
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.engine import deid
from slicercad.engine.export import DESCRIPTION, export_lesion, secret_fingerprint
from slicercad.engine.manifest import check_row, load_manifest
from slicercad.errors import GeometryError, InputError

SECRET = b"site-secret-0123456789"
TAGS = {"PatientName": "DOE^JOHN", "PatientID": "MRN123456", "PatientBirthDate": "19600214",
        "AccessionNumber": "ACC998877", "StudyInstanceUID": "1.2.826.0.1.3680043.2.1125.1",
        "SeriesInstanceUID": "1.2.826.0.1.3680043.2.1125.2", "PatientAge": "061Y", "PatientSex": "F",
        "PatientWeight": "64", "Modality": "MR", "InstitutionName": "General Hospital", "StudyDate": "20210301"}
UID = re.compile(r"2\.25\.[1-9][0-9]*")


def _volume(offset):
    arr = np.full((20, 60, 60), offset, np.int16)
    arr[8:12, 25:35, 25:35] += 100
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 2.5))
    img.SetOrigin((-20.0, -30.0, 10.0))
    return img


def _export(root, label="cyst", edited=False, key=None, tags=TAGS, center_index=(30, 30, 10), crop_mm=24.0,
            deid_options=deid.DEFAULT_OPTIONS):
    ref = _volume(10)
    lesion = {"center_lps": ref.TransformIndexToPhysicalPoint(center_index), "diameter_mm": 8.0, "label": label,
              "mask": sitk.Cast(_volume(0) > 50, sitk.sitkUInt8), "lesion_key": key}
    return export_lesion(root, {"hbp": ref, "t2": _volume(20)}, lesion, tags, SECRET, "reader-1", edited,
                         {"cyst": 0.7, "hemangioma": 0.2, "metastasis": 0.1}, crop_mm=crop_mm,
                         deid_options=deid_options)


def _manifest_rows(root):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]


def test_row_format_files_and_crop_geometry(tmp_path):
    row = _export(tmp_path)
    assert check_row(row) is row and _manifest_rows(tmp_path) == [row]
    assert row["patient"] == deid.pseudonym(SECRET, "MRN123456") and row["age"] == 61.0 and row["sex"] == "F"
    lesion = row["lesions"][0]
    assert lesion["coordinate_system"] == "LPS" and lesion["label"] == "cyst" and lesion["size_mm"] == 8.0
    assert lesion["provenance"]["annotator"] == "reader-1" and lesion["provenance"]["edited"] is False
    assert lesion["provenance"]["model_prediction"]["cyst"] == 0.7
    manifest = load_manifest(tmp_path / "manifest.jsonl")
    assert len(manifest.cases) == 1
    source = _volume(10)
    crop = sitk.ReadImage(str(tmp_path / row["images"]["hbp"]))
    # the source's own voxels (same grid): 24 mm + 1 voxel each side of the centre, clipped to the image
    assert crop.GetSize() == (33, 33, 13) and crop.GetSpacing() == source.GetSpacing()
    assert crop.GetDirection() == source.GetDirection() and "offsets_mm" not in lesion["provenance"]
    assert source.TransformPhysicalPointToIndex(crop.GetOrigin()) == (14, 14, 4)
    arr, src = sitk.GetArrayFromImage(crop), sitk.GetArrayFromImage(source)
    assert arr.dtype == src.dtype and np.array_equal(arr, src[4:17, 14:47, 14:47])
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / lesion["mask"])))
    assert mask.dtype == np.uint8 and mask.shape == arr.shape
    assert np.array_equal(mask, (sitk.GetArrayFromImage(_volume(0)) > 50)[4:17, 14:47, 14:47])
    header = (tmp_path / row["images"]["t2"]).read_bytes().split(b"\n\n")[0].decode()
    assert ":=" not in header  # no key/value metadata, only geometry


def test_deidentification_declared_and_consistent(tmp_path):
    row = _export(tmp_path)
    description = json.loads((tmp_path / "dataset_description.json").read_text())["deidentification"]
    assert "Basic Application Level Confidentiality Profile" in description["profile"]
    assert description["options"] == ["Retain Patient Characteristics Option"]
    assert "edition 2026c" in description["table"]
    assert [c["CodeValue"] for c in description["codes"]] == ["113100", "113108"]
    kept = set(description["retained_attributes"]["Retain Patient Characteristics Option"])
    assert {"PatientAge", "PatientSex", "PatientWeight", "PatientSize"} <= kept
    meta = json.loads((tmp_path / "cases" / row["case_id"] / "metadata.json").read_text())["dicom"]
    assert meta["PatientAge"] == "061Y" and meta["PatientSex"] == "F" and meta["PatientWeight"] == "64"
    assert meta["Modality"] == "MR" and meta["PatientIdentityRemoved"] == "YES"
    for gone in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName", "StudyDate"):
        assert gone not in meta
    study = meta["StudyInstanceUID"]
    assert UID.fullmatch(study) and len(study) <= 64 and study == deid.replace_uid(SECRET, TAGS["StudyInstanceUID"])
    assert study != deid.replace_uid(b"another-site-secret-xyz", TAGS["StudyInstanceUID"])
    # keyed, not a plain hash: nobody without the secret can recompute it from the MRN
    plain = hashlib.sha256(b"MRN123456").hexdigest()
    assert row["patient"][1:] not in plain and row["patient"] != deid.pseudonym(b"another-site-secret-xyz", "MRN123456")
    no_age = {k: v for k, v in TAGS.items() if k != "PatientAge"}
    assert deid.patient_characteristics(no_age)[0] == pytest.approx(61.04, abs=0.01)


PHASE_TAGS = {**TAGS, "ContrastBolusAgent": "Gd-EOB-DTPA", "SeriesDescription": "t1_vibe_fs_tra 20min",
              "ProtocolName": "DOE liver", "AcquisitionTime": "103015.5", "ContrastBolusStartTime": "101000",
              "SeriesDate": "20210301", "AcquisitionDateTime": "20210301103015"}
KEPT = ("ContrastBolusAgent", "SeriesDescription", "AcquisitionTime", "ContrastBolusStartTime", "SeriesDate",
        "AcquisitionDateTime")
OPTIONS = ("retain_patient_characteristics", "clean_descriptors", "retain_modified_dates")


def _metadata(root, row):
    return json.loads((root / "cases" / row["case_id"] / "metadata.json").read_text())


def test_retention_options_keep_and_declare_phase_attributes(tmp_path):
    plain = _metadata(tmp_path / "a", _export(tmp_path / "a", tags=PHASE_TAGS))
    assert not set(KEPT) & set(plain["dicom"]) and plain["deidentification"]["retained"][0]["attribute"] == "PatientAge"
    row = _export(tmp_path / "b", tags=PHASE_TAGS, deid_options=OPTIONS)
    meta = _metadata(tmp_path / "b", row)
    dicom = meta["dicom"]
    assert dicom["ContrastBolusAgent"] == "Gd-EOB-DTPA" and dicom["SeriesDescription"] == "t1_vibe_fs_tra 20min"
    assert dicom["AcquisitionTime"] == "103015.5" and dicom["ContrastBolusStartTime"] == "101000"  # delays survive
    days = deid.date_shift_days(SECRET, TAGS["PatientID"])
    assert 1 <= days <= deid.MAX_SHIFT_DAYS and dicom["SeriesDate"] == dicom["AcquisitionDateTime"][:8] != "20210301"
    assert dicom["StudyDate"] == dicom["SeriesDate"] and dicom["LongitudinalTemporalInformationModified"] == "MODIFIED"
    assert "ProtocolName" not in dicom  # contains a name component of the patient: not clean, removed
    assert [c["CodeValue"] for c in dicom["DeidentificationMethodCodeSequence"]] == ["113100", "113108", "113105",
                                                                                     "113107"]
    why = {r["attribute"]: (r["option"], r["basic_profile"], r["action"]) for r in meta["deidentification"]["retained"]}
    assert why["ContrastBolusAgent"] == ("Clean Descriptors Option", "Z/D", "C")
    assert why["AcquisitionTime"] == ("Retain Longitudinal Temporal Information with Modified Dates Option", "X/Z", "C")
    assert set(KEPT) <= set(why) and "ProtocolName" not in why
    description = json.loads((tmp_path / "b" / "dataset_description.json").read_text())["deidentification"]
    assert description["options"][1:] == ["Clean Descriptors Option",
                                          "Retain Longitudinal Temporal Information with Modified Dates Option"]
    assert "ContrastBolusAgent" in description["retained_attributes"]["Clean Descriptors Option"]
    with pytest.raises(InputError, match="exported with de-identification options"):
        _export(tmp_path / "b", tags=PHASE_TAGS, key="other")  # one declaration per dataset
    with pytest.raises(InputError, match="not implemented"):
        _export(tmp_path / "c", deid_options=("retain_uid",))


def test_each_phase_cropped_at_its_own_offset_and_offsets_kept(tmp_path):
    ref, t2 = _volume(10), _volume(20)
    t2.SetSpacing((1.0, 1.0, 3.0))                        # another grid: kept, never resampled onto the first
    centre = ref.TransformIndexToPhysicalPoint((30, 30, 10))
    lesion = {"center_lps": centre, "diameter_mm": 8.0, "label": "cyst", "mask": None,
              "offsets_mm": {"t2": (4.0, 0.0, 0.0), "hbp": (0.0, 0.0, 0.0)}, "acquisition": {"b_value": 800.0}}
    row = export_lesion(tmp_path, {"hbp": ref, "t2": t2}, lesion, TAGS, SECRET, "r", False, None, crop_mm=10.0)
    provenance = row["lesions"][0]["provenance"]
    assert provenance["offsets_mm"] == {"t2": [4.0, 0.0, 0.0]} and provenance["acquisition"] == {"b_value": 800.0}
    crop = sitk.ReadImage(str(tmp_path / row["images"]["t2"]))
    assert crop.GetSpacing() == t2.GetSpacing()
    mid = crop.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in crop.GetSize()])
    assert np.allclose(mid, np.asarray(centre) + [4.0, 0.0, 0.0], atol=1.0)   # centred on centre + offset
    with pytest.raises(InputError, match="not exported"):
        export_lesion(tmp_path, {"hbp": ref}, lesion, TAGS, SECRET, "r", False, None)


def test_another_site_secret_is_refused_for_the_same_dataset(tmp_path):
    _export(tmp_path, key="F1")
    description = (tmp_path / DESCRIPTION).read_text()
    fingerprint = json.loads(description)["site_secret_fingerprint"]
    assert fingerprint == secret_fingerprint(SECRET) != secret_fingerprint(b"another-site-secret-xyz")
    assert SECRET.decode() not in description and re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    ref = _volume(10)
    lesion = {"center_lps": ref.TransformIndexToPhysicalPoint((20, 20, 8)), "diameter_mm": 8.0, "label": "cyst"}
    with pytest.raises(InputError, match="another site secret.*pseudonym") as info:
        export_lesion(tmp_path, {"hbp": ref}, lesion, TAGS, b"another-site-secret-xyz", "r", False, None)
    assert info.value.source == str(tmp_path / DESCRIPTION) and len(_manifest_rows(tmp_path)) == 1
    _export(tmp_path, key="F2", center_index=(20, 20, 8))          # the site's own secret: accepted
    assert len(_manifest_rows(tmp_path)) == 2


def test_reexport_replaces_instead_of_duplicating(tmp_path):
    first = _export(tmp_path, key="F1")
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    second = _export(tmp_path, key="F1", label="hemangioma", edited=True)
    rows = _manifest_rows(tmp_path)
    assert len(rows) == 1 and len(rows[0]["lesions"]) == 1 and second["case_id"] == first["case_id"]
    assert rows[0]["lesions"][0]["label"] == "hemangioma" and rows[0]["lesions"][0]["provenance"]["edited"] is True
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files
    _export(tmp_path, key="F2", center_index=(20, 20, 8))
    assert len(_manifest_rows(tmp_path)) == 2


def test_kill_between_temp_write_and_rename_keeps_previous_manifest(tmp_path):
    _export(tmp_path, key="F1")
    before = (tmp_path / "manifest.jsonl").read_bytes()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        real_replace = os.replace
        def dying_replace(src, dst, *a, **k):
            if str(dst).endswith("manifest.jsonl"):
                os._exit(9)  # killed after the temporary manifest is written, before the rename
            return real_replace(src, dst, *a, **k)
        os.replace = dying_replace
        from pathlib import Path
        from test_engine_export import _export
        _export(Path({str(tmp_path)!r}), key="F2", center_index=(20, 20, 8))
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert (tmp_path / "manifest.jsonl").read_bytes() == before
    assert list(tmp_path.glob(".manifest.jsonl.*tmp*"))  # the half-done temporary file never replaced it
    assert len(_manifest_rows(tmp_path)) == 1
    _export(tmp_path, key="F2", center_index=(20, 20, 8))  # a retry completes normally
    assert len(_manifest_rows(tmp_path)) == 2


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="site secret"):
        export_lesion(tmp_path, {"hbp": _volume(0)}, {"center_lps": (0, 0, 30), "diameter_mm": 5.0},
                      TAGS, b"short", "r", False, None)
    with pytest.raises(GeometryError, match="outside"):
        export_lesion(tmp_path, {"hbp": _volume(0)}, {"center_lps": (500, 0, 30), "diameter_mm": 5.0},
                      TAGS, SECRET, "r", False, None)
    with pytest.raises(InputError, match="PatientID"):
        _export(tmp_path, tags={k: v for k, v in TAGS.items() if k != "PatientID"})
    with pytest.raises(InputError, match="phase name"):
        export_lesion(tmp_path, {"../x": _volume(0)}, {"center_lps": (0, 0, 30), "diameter_mm": 5.0},
                      TAGS, SECRET, "r", False, None)
    assert not (tmp_path / "manifest.jsonl").exists()


def test_default_crop_covers_the_liver_roi_of_the_largest_supported_lesion():
    from slicercad.engine.export import DEFAULT_CROP_MM
    from slicercad.liver.task import DEFAULT_CONFIG, MAX_DIAMETER_MM, VALID_RANGES, export_crop_mm, roi_spec

    assert MAX_DIAMETER_MM == VALID_RANGES["diameter_mm"][1] == 40.0
    assert DEFAULT_CROP_MM == export_crop_mm() == roi_spec(DEFAULT_CONFIG).field_of_view(40.0) == 120.0
