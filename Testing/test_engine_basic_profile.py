"""PS3.15 Table E.1-1 as committed: complete, and equal to the published transcriptions it was generated from."""
import importlib.util
from pathlib import Path

import pytest

from slicercad.engine import basic_profile as bp

SCRIPT = Path(__file__).parents[1] / "Scripts" / "make_basic_profile.py"
BASIC_ACTIONS = {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


def _generator():
    spec = importlib.util.spec_from_file_location("make_basic_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(tag):
    return next(r for r in bp.TABLE if r["tag"] == tag)


def test_table_is_complete_with_edition_and_known_rows():
    assert bp.EDITION == "2026c" and "dicom-anonymizer" in bp.SOURCES["basic"] and "idiscore" in bp.SOURCES["options"]
    assert len(bp.TABLE) > 600 and len(bp.ACTIONS) > 600 and len({r["tag"] for r in bp.TABLE}) == len(bp.TABLE)
    assert {r["basic"] for r in bp.TABLE} == BASIC_ACTIONS
    known = {"PatientName": ("(0010,0010)", "Z"), "PatientID": ("(0010,0020)", "Z/D"),
             "PatientBirthDate": ("(0010,0030)", "Z"), "StudyInstanceUID": ("(0020,000D)", "U"),
             "AccessionNumber": ("(0008,0050)", "Z"), "InstitutionName": ("(0008,0080)", "X/Z/D"),
             "ContrastBolusAgent": ("(0018,0010)", "Z/D"), "ContrastBolusStartTime": ("(0018,1042)", "X"),
             "SeriesTime": ("(0008,0031)", "X/D"), "SeriesDescription": ("(0008,103E)", "X"),
             "ReferencedImageSequence": ("(0008,1140)", "X/Z/U*"), "AcquisitionDateTime": ("(0008,002A)", "X/Z/D")}
    for keyword, (tag, action) in known.items():
        row = _row(tag)
        assert (row["keyword"], row["basic"]) == (keyword, action) and bp.ACTIONS[keyword] == action
    private = _row("(gggg,eeee)")
    assert private["basic"] == "X" and private["options"] == {"retain_safe_private": "C"}
    assert _row("(60xx,3000)")["basic"] == "X" and _row("(50xx,xxxx)")["basic"] == "X"
    assert _row("(0018,0010)")["options"] == {"clean_descriptors": "C"}
    assert _row("(0008,0032)")["options"] == {"retain_full_dates": "K", "retain_modified_dates": "C"}
    assert {o["code"] for o in bp.OPTIONS.values()} == {f"1131{n:02d}" for n in range(3, 13)}
    assert {"PatientAge", "PatientSex", "PatientWeight", "PatientSize"} <= bp.RETAINED
    assert {"StudyInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"} <= bp.UID_KEYWORDS


def test_basic_column_equals_dicom_anonymizer_transcription():
    pytest.importorskip("dicomanonymizer")
    generated = _generator().basic_rows()
    committed = [{k: v for k, v in r.items() if k != "options"} for r in bp.TABLE if r["tag"] != "(gggg,eeee)"]
    assert committed == generated


def test_option_columns_equal_idiscore_transcription():
    if importlib.util.find_spec("idiscore") is None:
        pytest.skip("idiscore (Python >= 3.12) not installed")
    options, columns = _generator().option_columns()
    assert bp.OPTIONS == options
    assert {r["tag"]: r["options"] for r in bp.TABLE} == {r["tag"]: columns.get(r["tag"], {}) for r in bp.TABLE}
