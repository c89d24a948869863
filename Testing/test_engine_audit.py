"""De-identification audit: passes on a real export, fails on each kind of planted identifier."""
import argparse
import json

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from slicercad.engine import audit
from slicercad.engine.audit import audit_export
from slicercad.engine.export import export_lesion

SECRET = b"site-secret-0123456789"
CT = get_testdata_file("CT_small.dcm", download=False)


def _source_tags():
    ds = pydicom.dcmread(CT)
    return {e.keyword: str(e.value) for e in ds if e.keyword and e.VR not in ("SQ", "OB", "OW")}


def _real_export(root):
    """Export a lesion from a real DICOM CT slice with its real header attributes."""
    tags = _source_tags()
    image = sitk.ReadImage(CT)  # carries the DICOM header in its metadata dictionary
    centre = image.TransformIndexToPhysicalPoint((64, 64, 0))
    row = export_lesion(root, {"ct": image}, {"center_lps": centre, "diameter_mm": 12.0, "label": "nodule",
                                              "mask": None}, tags, SECRET, "reader-1", True, {"nodule": 0.8})
    return tags, row


def test_real_export_is_clean(tmp_path):
    tags, row = _real_export(tmp_path)
    assert tags["PatientName"] and tags["PatientID"] and tags["StudyInstanceUID"]
    assert audit_export(tmp_path, tags) == []
    assert row["age"] is not None or "PatientAge" not in tags


def test_options_keep_declared_attributes_and_still_catch_identifiers(tmp_path):
    """Clean Descriptors / Modified Dates keep profile attributes the description declares: the audit
    accepts exactly those, and still finds an identifier planted in one of their values."""
    tags = _source_tags()
    tags.update(ContrastBolusAgent="Gd-EOB-DTPA", SeriesDescription="HBP 20 min")
    image = sitk.ReadImage(CT)
    export_lesion(tmp_path, {"ct": image}, {"center_lps": image.TransformIndexToPhysicalPoint((64, 64, 0)),
                                            "diameter_mm": 12.0, "label": "nodule", "mask": None}, tags, SECRET,
                  "reader-1", True, None, deid_options=("clean_descriptors", "retain_modified_dates"))
    assert audit_export(tmp_path, tags) == []
    kept = json.loads((tmp_path / "dataset_description.json").read_text())["deidentification"]["retained_attributes"]
    assert "ContrastBolusAgent" in {k for keywords in kept.values() for k in keywords}
    (tmp_path / "dataset_description.json").unlink()  # without the declaration the same files fail
    assert any("ContrastBolusAgent" in p for p in audit_export(tmp_path, tags))
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"SeriesDescription": f"HBP {tags['PatientName']}"}))
    assert any("planted.json: contains" in p for p in audit_export(tmp_path, tags))


def test_planted_patient_name_fails(tmp_path):
    tags, row = _real_export(tmp_path)
    meta_path = tmp_path / "cases" / row["case_id"] / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["dicom"]["PatientName"] = tags["PatientName"]
    meta_path.write_text(json.dumps(meta))
    problems = audit_export(tmp_path, tags)
    assert any("Basic Profile attribute PatientName" in p for p in problems)
    assert any(p.startswith(f"cases/{row['case_id']}/metadata.json: contains PatientName") for p in problems)


def test_name_components_ids_dates_uids_in_text_csv_and_names(tmp_path):
    tags = {"PatientName": "DOE^JOHN", "PatientID": "MRN123456", "PatientBirthDate": "19600214",
            "AccessionNumber": "ACC998877", "StudyInstanceUID": "1.2.3.4.5.6789"}
    assert audit_export(tmp_path, tags) == []
    (tmp_path / "notes.md").write_text("Reviewed with john on the 2nd; doesn't matter.\n")  # 'DOE' inside 'doesn't'
    (tmp_path / "labels.csv").write_text("case,born\nC1,1960-02-14\n")
    (tmp_path / "1.2.3.4.5.6789.txt").write_text("ok")
    (tmp_path / "log.txt").write_text("study 2.25.11.2.3.4.5.67890 and acc998877\n")
    (tmp_path / "blob.bin").write_bytes(np.random.default_rng(0).bytes(64) + b"MRN123456" + bytes(8))
    problems = audit_export(tmp_path, tags)
    joined = "\n".join(problems)
    assert "notes.md: contains PatientName component 'JOHN'" in joined
    assert "component 'DOE'" not in joined
    assert "labels.csv: contains PatientBirthDate '1960-02-14'" in joined
    assert "1.2.3.4.5.6789.txt: file name contains original StudyInstanceUID" in joined
    assert "log.txt: contains AccessionNumber" in joined and "log.txt: contains original" not in joined
    assert "blob.bin: contains PatientID 'MRN123456'" in joined


def test_dicom_and_nrrd_headers(tmp_path):
    tags = _source_tags()
    ds = pydicom.dcmread(CT)
    ds.save_as(tmp_path / "raw.dcm")
    sitk.WriteImage(sitk.ReadImage(CT), str(tmp_path / "with_header.nrrd"))  # keeps DICOM fields as key:=value
    problems = "\n".join(audit_export(tmp_path, tags))
    assert "raw.dcm: DICOM Basic Profile attribute PatientName" in problems
    assert "raw.dcm: contains original StudyInstanceUID" in problems
    assert "with_header.nrrd: header field 0010|0010" in problems
    clean = pydicom.dcmread(CT)
    for elem in list(clean):
        if elem.keyword in audit.UID_KEYWORDS:
            elem.value = "2.25.1234"
        elif elem.keyword in audit.ACTIONS and elem.keyword not in audit.RETAINED:
            if "Z" in audit.ACTIONS[elem.keyword]:
                elem.value = ""  # zero length is allowed where the profile says Z
            else:
                del clean[elem.tag]
    clean.file_meta.MediaStorageSOPInstanceUID = "2.25.1234"
    (tmp_path / "raw.dcm").unlink()
    (tmp_path / "with_header.nrrd").unlink()
    clean.save_as(tmp_path / "deid.dcm")
    assert audit_export(tmp_path, tags) == []  # SOPClassUID (a public standard UID) stays unflagged
    assert "PatientAge" in clean or "PatientSex" in clean


def test_cli_exit_codes(tmp_path, capsys):
    tags, row = _real_export(tmp_path / "export")
    tag_file = tmp_path / "tags.json"
    tag_file.write_text(json.dumps(tags))
    parser = argparse.ArgumentParser()
    audit.add_arguments(parser)
    assert audit.run(parser.parse_args([str(tmp_path / "export"), "--source-tags", str(tag_file)])) == 0
    (tmp_path / "export" / f"{tags['PatientID']}.json").write_text("{}")
    assert audit.run(parser.parse_args([str(tmp_path / "export"), "--source-tags", str(tag_file)])) == 1
    assert "file name contains PatientID" in capsys.readouterr().out
