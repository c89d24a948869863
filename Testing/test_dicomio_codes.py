"""Coding of results as DICOM (issue 15 review): one meaning per code (class probabilities as one concept with
the class as a HAS CONCEPT MOD), distinct codes for renal calls and unknown classes, sphere ROIs that are not
the model's, per-lesion handling of a sphere too small for the grid, source slices that are ambiguous, and UIDs
that a rerun reproduces. All inputs SYNTHETIC."""
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from slicercad.dicom.volume import load_volume
from slicercad.dicom.write import write_series
from slicercad.dicomio.seg import Segment, segment_info, write_seg
from slicercad.dicomio.sr import LesionFinding, read_measurement_report, write_measurement_report
from slicercad.dicomio.terms import PRIVATE_SCHEME, Algorithm, class_code
from slicercad.errors import InputError
from slicercad.liver.roi import Lesion

from dicom_tools import dciodvfy_errors

SHA = "fedcba9876543210" * 4
ALGO = Algorithm("coding_test", "2", SHA)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    image = sitk.GetImageFromArray(np.random.default_rng(5).normal(100, 10, (6, 24, 20)).astype(np.float32))
    image.SetSpacing((1.0, 1.2, 2.5))
    files = write_series(image, tmp_path_factory.mktemp("s") / "mr", modality="MR", series_description="SYNTHETIC")
    grid, _ = load_volume(files)
    return files, grid


def _centre(image, ijk):
    return tuple(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk]))


def _nums(path):
    """[(concept (scheme, value, meaning), [modifier (scheme, value, meaning)])] of every NUM in the SR."""
    out = []

    def walk(items):
        for i in items:
            if i.ValueType == "NUM":
                c = i.ConceptNameCodeSequence[0]
                mods = [tuple(str(v) for v in (m.ConceptCodeSequence[0].CodingSchemeDesignator,
                                               m.ConceptCodeSequence[0].CodeValue,
                                               m.ConceptCodeSequence[0].CodeMeaning))
                        for m in i.get("ContentSequence", []) if m.RelationshipType == "HAS CONCEPT MOD"
                        and m.ValueType == "CODE"]
                out.append(((str(c.CodingSchemeDesignator), str(c.CodeValue), str(c.CodeMeaning)), mods))
            walk(i.get("ContentSequence", []))

    walk(pydicom.dcmread(path).ContentSequence)
    return out


def test_one_meaning_per_code_with_the_class_as_modifier(series, tmp_path):
    files, image = series
    rows = [LesionFinding("L1", _centre(image, (8, 10, 2)), 6.0, "angiomyolipoma",
                          {"cyst": 0.2, "angiomyolipoma": 0.5, "oncocytoma": 0.3},
                          scores={"P(x) arterial": 0.4, "P(x) venous": 0.6})]
    path = write_measurement_report(tmp_path / "r.sr.dcm", rows, image, files, ALGO)
    meanings = {}
    for concept, _ in _nums(path):
        meanings.setdefault(concept[:2], set()).add(concept[2])
    assert all(len(m) == 1 for m in meanings.values()), meanings          # a scheme + value has one meaning
    probs = [mods for concept, mods in _nums(path) if concept[:2] == (PRIVATE_SCHEME, "P001")]
    assert len(probs) == 3 and all(len(m) == 1 for m in probs)
    found = {m[0] for m in probs}
    assert ("SCT", "367643001", "Cyst") in found and len({m[:2] for m in found}) == 3    # distinct class codes
    unknown = {m for m in found if m[0] == PRIVATE_SCHEME}
    assert {m[2] for m in unknown} == {"angiomyolipoma", "oncocytoma"}              # the names kept
    (back,) = read_measurement_report(path)["lesions"]
    assert back.probabilities == pytest.approx(rows[0].probabilities)
    assert back.predicted_class == "angiomyolipoma" and back.scores == pytest.approx(rows[0].scores)
    assert dciodvfy_errors(path) == []
    assert class_code("angiomyolipoma") != class_code("oncocytoma")
    assert class_code("angiomyolipoma") == class_code("angiomyolipoma")              # stable across calls
    with pytest.raises(InputError, match="same code"):                            # two names, one SNOMED code
        write_measurement_report(tmp_path / "x.sr.dcm", [LesionFinding(
            "L", rows[0].centre_lps, 5.0, "tumor", {"tumor": 0.5, "neoplasm": 0.5})], image, files, ALGO)
    with pytest.raises(InputError, match="1-64 characters"):
        write_measurement_report(tmp_path / "y.sr.dcm", [LesionFinding(
            "L", rows[0].centre_lps, 5.0, "a" * 70, {"a" * 70: 1.0})], image, files, ALGO)


def _renal_row(mass_id, call=None, p=0.5):
    if call is None:
        return {"mass_id": mass_id, "diameter_mm": 8.0, "status": "flagged, not scored", "flags": ["> 40 mm"]}
    return {"mass_id": mass_id, "diameter_mm": 8.0, "status": "scored", "call": call, "p_combined": p,
            "model_used": "combined", "cutoff": 0.5, "probabilities": {"arterial": 0.3, "venous": 0.7}, "notes": []}


def test_renal_calls_have_three_codes_and_spheres_are_not_the_models(series, tmp_path):
    from slicercad.dicomio.results_renal import write_renal_results

    files, image = series
    masses = [Lesion(n, _centre(image, ijk), 8.0) for n, ijk in (("b", (5, 6, 2)), ("m", (14, 16, 3)),
                                                                 ("u", (10, 10, 4)))]
    rows = [_renal_row("b", "benign", 0.2), _renal_row("m", "malignant", 0.8), _renal_row("u")]
    card = {"name": "renal_codes_test", "version": "1", "sha256": SHA}
    out = write_renal_results(rows, masses, image, files, tmp_path / "out", card)
    back = read_measurement_report(out["sr"])
    assert [x.predicted_class for x in back["lesions"]] == ["benign", "malignant", "mass"]
    ds = pydicom.dcmread(out["sr"])
    findings = [str(i.ConceptCodeSequence[0].CodeValue) for g in ds.ContentSequence[-1].ContentSequence
                for i in g.ContentSequence if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue ==
                "121071" and "ContentSequence" in g]
    assert ["3898006", "86049000", "4147007"] == list(dict.fromkeys(findings))     # three calls, three codes
    assert back["lesions"][2].status.startswith("flagged, not scored: > 40 mm")
    assert back["lesions"][0].scores["cutoff combined"] == 0.5
    info = segment_info(out["seg"])                       # the spheres: the person's ROI, not model output
    assert [i["label"] for i in info] == ["b sphere", "m sphere", "u sphere"]
    assert {i["algorithm_type"] for i in info} == {"SEMIAUTOMATIC"} and not any(i["model_sha256"] for i in info)
    assert {i["algorithm_name"] for i in info} == {"SlicerCAD sphere ROI from centre/diameter"}
    assert all("sphere ROI" in i["description"] for i in info) and {i["type"][1] for i in info} == {"4147007"}
    volumes = [(c, m) for c, m in _nums(out["sr"]) if c[1] in ("118565006", "P026")]
    assert volumes and all(c == (PRIVATE_SCHEME, "P026", "ROI sphere volume") for c, _ in volumes)
    assert all(x.sphere_roi and x.volume_mm3 > 0 for x in back["lesions"])
    assert dciodvfy_errors(out["seg"]) == [] and dciodvfy_errors(out["sr"]) == []


def test_a_sphere_smaller_than_a_voxel_is_reported_without_a_segment(series, tmp_path):
    from slicercad.dicomio.results_renal import write_renal_results

    files, image = series
    masses = [Lesion("ok", _centre(image, (5, 6, 2)), 8.0), Lesion("tiny", _centre(image, (10.5, 10.5, 3.5)), 0.3)]
    rows = [_renal_row("ok", "benign", 0.1), _renal_row("tiny", "malignant", 0.9)]
    out = write_renal_results(rows, masses, image, files, tmp_path / "out", {"name": "r", "sha256": SHA})
    assert [i["label"] for i in segment_info(out["seg"])] == ["ok sphere"]
    ok, tiny = read_measurement_report(out["sr"])["lesions"]
    assert ok.segment_number == 1 and tiny.segment_number is None and tiny.predicted_class == "malignant"


def test_ambiguous_source_slices_are_refused(series, tmp_path):
    import shutil

    from pydicom.uid import generate_uid

    files, image = series
    mask = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    mask[2, 5:9, 5:9] = 1
    twice = tmp_path / "twice"
    twice.mkdir()
    for f in files:
        shutil.copy(f, twice / f.name)
    echo = pydicom.dcmread(files[2])
    echo.SOPInstanceUID = generate_uid()                  # a second echo at the same position
    echo.save_as(twice / "echo2.dcm")
    with pytest.raises(InputError, match="two instances at one slice position"):
        write_seg([Segment("A", mask, "cyst", ALGO)], image, sorted(twice.glob("*.dcm")), tmp_path / "a.seg.dcm")
    other = pydicom.dcmread(files[3])
    other.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    other.save_as(twice / "echo2.dcm")
    with pytest.raises(InputError, match="another size or orientation"):
        write_seg([Segment("A", mask, "cyst", ALGO)], image, sorted(twice.glob("*.dcm")), tmp_path / "a.seg.dcm")
    assert not list(tmp_path.glob("*.seg.dcm"))


def test_rerun_writes_the_same_uids_and_other_content_other_ones(series, tmp_path):
    files, image = series
    mask = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    mask[1:3, 4:9, 6:10] = 1

    def uids(path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)

    a = uids(write_seg([Segment("A", mask, "cyst", ALGO)], image, files, tmp_path / "a.seg.dcm"))
    b = uids(write_seg([Segment("A", mask, "cyst", ALGO)], image, files, tmp_path / "b.seg.dcm"))
    mask[2, 8, 9] = 0
    c = uids(write_seg([Segment("A", mask, "cyst", ALGO)], image, files, tmp_path / "c.seg.dcm"))
    assert a == b and a[0] != c[0] and a[1] != c[1] and a[0] != a[1]
    row = [LesionFinding("L1", _centre(image, (8, 10, 2)), 6.0, "cyst", {"cyst": 0.7, "hemangioma": 0.3})]
    r1 = uids(write_measurement_report(tmp_path / "1.sr.dcm", row, image, files, ALGO))
    r2 = uids(write_measurement_report(tmp_path / "2.sr.dcm", row, image, files, ALGO))
    row[0].probabilities = {"cyst": 0.6, "hemangioma": 0.4}
    r3 = uids(write_measurement_report(tmp_path / "3.sr.dcm", row, image, files, ALGO))
    assert r1 == r2 and r3[1] != r1[1]
