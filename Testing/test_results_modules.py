"""Results of CardiacTICorrector, AnomalyCT and RenalMassCAD as DICOM through the one set of writers
(``slicercad results ti|anomaly|renal``): read back with pydicom / highdicom equal to each module's own result
record, dciodvfy reports no error, bad input is refused. All inputs SYNTHETIC (Testing/module_results_data.py)."""
import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import module_results_data as data
from dicom_tools import dciodvfy_errors as _errors
from dicom_tools import dcmqi as _dcmqi
from slicercad.cli import main as cli_main
from slicercad.dicomio.sr import read_measurement_report
from slicercad.errors import InputError

def test_ti_record_as_tid1501_sr(tmp_path, capsys):
    from slicercad.dicomio.results_ti import ti_case_values, write_ti_report
    from slicercad.ti.cli import correct_path, load_default_model

    scout = data.ti_scout(tmp_path / "scout")
    card_path = data.ti_model(tmp_path / "model")
    assert cli_main(["results", "ti", "--scout", str(scout), "--model", str(card_path), "--out",
                     str(tmp_path / "out")]) == 0
    model, card = load_default_model(str(card_path))
    (record,) = correct_path(scout, model=model, card=card)          # what `slicercad ti correct` writes
    sr = tmp_path / "out" / "ti.sr.dcm"
    back = read_measurement_report(sr)
    want = {"null_ti_ms": record["null_ti_ms"], "blood_null_ti_ms": record["blood_null_ti_ms"],
            "recommended_ti_ms": record["recommended_ti_ms"], "ti_uncertainty_ms": record["uncertainty_ms"]}
    assert {k: back["case"][k] for k in want} == pytest.approx(want, abs=1e-9)
    assert [back["case"]["optimal_ti_low_ms"], back["case"]["optimal_ti_high_ms"]] == \
        pytest.approx(record["rule"]["optimal_range_ms"], abs=0.05)
    assert back["case_text"]["method"] == record["method"] and record["method"] in ("fused", "physics", "cnn")
    assert back["case_text"]["rule"] == record["rule"]["statement"] and "ON THE SCOUT" in back["case_text"]["rule"]
    assert back["algorithm"] == {"name": "ti_random_test", "version": "1", "model_sha256": card["sha256"]}
    assert "synthetic" in back["notice"] and back["lesions"] == []
    ds = pydicom.dcmread(sr)
    source = pydicom.dcmread(next(scout.glob("*.dcm")), stop_before_pixels=True)
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in evidence.ReferencedSOPSequence] == [source.SOPInstanceUID]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and ds.StudyInstanceUID == source.StudyInstanceUID
    assert _errors(sr) == []
    meta = _dcmqi("tid1500reader", sr, tmp_path / "tid1500")         # DICOMTID1500Plugin's path for a case-only SR
    (group,) = json.loads((meta / "meta.json").read_text())["Measurements"]
    values = {m["quantity"]["CodeMeaning"]: float(m["value"]) for m in group["measurementItems"]}
    assert group["TrackingIdentifier"] == "case"
    assert values["Myocardial null TI on the scout"] == record["null_ti_ms"]
    assert cli_main(["results", "ti", "--scout", str(scout), "--model", "none", "--out", str(tmp_path / "phys")]) == 0
    physics = read_measurement_report(tmp_path / "phys" / "ti.sr.dcm")
    assert physics["algorithm"]["name"] == "ti_physics_fit" and physics["algorithm"]["model_sha256"] is None
    assert physics["case_text"]["method"].startswith("physics") and "synthetic" not in physics["notice"]
    values, texts = ti_case_values({**record, "ti_scale": "relative", "rule": None, "recommended_ti_ms": None})
    assert "recommended_ti_ms" not in values and "RELATIVE" in texts["method"] and "relative" in texts["rule"]
    with pytest.raises(InputError, match="no null TI"):
        write_ti_report({**record, "null_ti_ms": None}, [next(scout.glob("*.dcm"))], tmp_path / "x.sr.dcm", card)


def test_anomaly_map_as_seg_parametric_map_and_sr(tmp_path):
    from slicercad.anomaly.detector import load_detector
    from slicercad.dicom.volume import load_volume
    from slicercad.dicomio.pmap import read_parametric_map
    from slicercad.dicomio.results_anomaly import write_anomaly_results
    from slicercad.dicomio.seg import read_seg, segment_info

    study = data.head_ct(tmp_path / "head")
    card = data.anomaly_model(tmp_path / "model")
    assert cli_main(["results", "anomaly", "--study", str(study), "--model", str(card), "--out",
                     str(tmp_path / "out")]) == 0
    files = sorted(study.glob("*.dcm"))
    image, _ = load_volume(files)
    result = load_detector(card, "head_ct").score_image(image)          # the product path, scored again
    expected = sitk.GetArrayFromImage(result.map_image(image))
    values, unit = read_parametric_map(tmp_path / "out" / "anomaly.pm.dcm", files, image)
    assert unit == "1" and np.array_equal(values, expected)
    flagged = expected > result.threshold
    assert (tmp_path / "out" / "anomaly.seg.dcm").exists() == bool(flagged.any())    # a SEG only when flagged
    back = read_measurement_report(tmp_path / "out" / "report.sr.dcm")
    assert back["case"]["anomaly_score"] == pytest.approx(result.score, abs=1e-9)
    assert back["case"]["anomaly_percentile"] == pytest.approx(result.percentile, abs=1e-9)
    assert back["case"]["anomaly_flagged_volume_mm3"] == pytest.approx(flagged.sum() * np.prod(image.GetSpacing()))
    assert back["case"]["anomaly_map_threshold"] == pytest.approx(result.threshold, abs=1e-9)
    assert back["algorithm"]["model_sha256"] == result.card["sha256"]
    assert f"fit_dice {round(result.sample.info['fit_dice'], 3)}" in back["case_text"]["alignment"]   # the registration
    # the thresholded map as SEG (a threshold the tiny model's map crosses: the writer is under test)
    cut = float(np.quantile(expected, 0.99))
    out = write_anomaly_results(expected, image, files, tmp_path / "cut", score=result.score,
                                percentile=result.percentile, threshold=cut, card=result.card)
    mask = read_seg(out["seg"], files, image)[1]
    assert mask.sum() > 0 and np.array_equal(mask > 0, expected > cut)
    (info,) = segment_info(out["seg"])
    assert info["algorithm_type"] == "AUTOMATIC" and info["model_sha256"] == result.card["sha256"]
    assert read_measurement_report(out["sr"])["case"]["anomaly_flagged_volume_mm3"] == \
        pytest.approx(mask.sum() * np.prod(image.GetSpacing()))
    for path in (out["seg"], out["pm"], out["sr"]):
        assert _errors(path) == []
    pm = _dcmqi("paramap2itkimage", tmp_path / "out" / "anomaly.pm.dcm", tmp_path / "pm")
    meta = json.loads((pm / "meta.json").read_text())     # what DICOMParametricMapPlugin reads: volume, quantity, units
    assert meta["QuantityValueCode"]["CodeMeaning"] == "Anomaly z-score vs normals"
    assert meta["MeasurementUnitsCode"]["CodeValue"] == "1"
    on_grid = sitk.Resample(sitk.ReadImage(str(pm / "pmap.nrrd")), image, sitk.Transform(),
                            sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayFromImage(on_grid), expected, atol=1e-6)
    quiet = write_anomaly_results(np.zeros_like(expected), image, files, tmp_path / "quiet", score=1.0,
                                  percentile=10.0, threshold=1.0, card=result.card)
    assert quiet["seg"] is None and not (tmp_path / "quiet" / "anomaly.seg.dcm").exists()   # nothing flagged
    assert "no voxel above" in read_measurement_report(quiet["sr"])["case_text"]["status"]
    with pytest.raises(InputError, match="does not fit the series"):
        write_anomaly_results(expected[:-1], image, files, tmp_path / "bad", score=1.0, percentile=1.0,
                              threshold=result.threshold, card=result.card)


def test_renal_masses_as_seg_and_tid1500_sr(tmp_path):
    from slicercad.dicom.volume import load_volume
    from slicercad.dicomio.results_renal import renal_results, write_renal_results
    from slicercad.dicomio.seg import read_seg, segment_info
    from slicercad.liver.lesion_files import read_lesions
    from slicercad.weak.shapes import sphere_label

    card = data.renal_model(tmp_path / "model")
    study, masses = data.renal_study(tmp_path / "renal")
    out = renal_results(study, read_lesions(masses), tmp_path / "out", card, clinical={"age_years": 70, "male": 1})
    scored, flagged = out["rows"]
    assert scored["status"] == "scored" and scored["model_used"] == "combined" and flagged["status"] != "scored"
    back = read_measurement_report(out["sr"])
    a, b = back["lesions"]
    assert (a.lesion_id, a.predicted_class, a.site) == ("m1", scored["call"], "kidney")
    assert a.probabilities["malignant"] == pytest.approx(scored["p_combined"], abs=1e-9)
    assert {k.removeprefix("P(malignant) "): v for k, v in a.scores.items() if k.startswith("P(")} == \
        pytest.approx(scored["probabilities"], abs=1e-9)
    assert a.diameter_mm == 24.0 and b.diameter_mm == 45.0 and (b.predicted_class, b.probabilities) == ("mass", {})
    assert "big: flagged" in back["case_text"]["status"] and "> 40 mm" in back["case_text"]["status"]
    ref_files = sorted((study / "03_nephrographic").glob("*.dcm"))
    image, _ = load_volume(ref_files)
    np.testing.assert_allclose(a.centre_lps, read_lesions(masses)[0].center_lps(), atol=1e-4)
    seg = read_seg(out["seg"], ref_files, image)
    sphere = sitk.GetArrayFromImage(sphere_label(image, a.centre_lps, 24.0, "LPS"))
    assert np.array_equal(seg[1], (sphere > 0).astype(np.uint8)) and seg[2].sum() > seg[1].sum()
    info = segment_info(out["seg"])                  # sphere ROIs of the listed masses: coded Mass, not the call
    assert [i["type"][2] for i in info] == ["Mass", "Mass"] and {i["algorithm_type"] for i in info} == {"SEMIAUTOMATIC"}
    assert b.status.startswith("flagged, not scored") and a.status is None
    assert back["seg_instance_uid"] == pydicom.dcmread(out["seg"]).SOPInstanceUID
    assert _errors(out["seg"]) == [] and _errors(out["sr"]) == []
    seg_dir = _dcmqi("segimage2itkimage", out["seg"], tmp_path / "dcmqi")     # as DICOMSegmentationPlugin runs it
    meta = json.loads((seg_dir / "meta.json").read_text())
    assert [a["SegmentLabel"] for group in meta["segmentAttributes"] for a in group] == ["m1 sphere", "big sphere"]
    with pytest.raises(InputError, match="result"):
        write_renal_results(out["rows"][:1], read_lesions(masses), image, ref_files, tmp_path / "bad",
                            json.loads(card.read_text()))
