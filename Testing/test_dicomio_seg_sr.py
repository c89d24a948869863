"""Results as DICOM (issue 15 items 1-2): SEG, fractional SEG, Parametric Map and the TID 1500 SR written by the
shared ``slicercad.dicomio`` writers on a real (written) oblique, anisotropic MR series; read back with highdicom,
pydicom and dcmqi's segimage2itkimage onto the same voxels; dciodvfy (dicom3tools) reports no error."""
import json
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from slicercad.dicom.volume import load_volume
from slicercad.dicom.write import write_series
from slicercad.dicomio.pmap import read_parametric_map, write_parametric_map
from slicercad.dicomio.seg import Segment, read_seg, segment_info, write_fractional_seg, write_seg
from slicercad.dicomio.sr import LesionFinding, read_measurement_report, write_measurement_report
from slicercad.dicomio.terms import Algorithm, class_code
from slicercad.errors import InputError
from slicercad.weak.shapes import sphere_label

from dicom_tools import dciodvfy_errors as _errors
from dicom_tools import dcmqi, tool

SHA = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def series(tmp_path_factory, oblique_image_module):
    folder = tmp_path_factory.mktemp("series")
    files = write_series(oblique_image_module, folder / "mr", modality="MR", series_description="SYNTHETIC oblique",
                         patient={"PatientName": "SYNTHETIC^SEG", "PatientID": "SYN-SEG"})
    image, _ = load_volume(files)
    return folder, files, image


@pytest.fixture(scope="module")
def oblique_image_module():
    from conftest import oblique_direction

    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.normal(100, 20, (9, 30, 34)).astype(np.float32))
    image.SetSpacing((1.1, 0.9, 3.0))
    image.SetOrigin((-20.0, 10.0, 5.0))
    image.SetDirection(oblique_direction((15.0, -10.0, 25.0)).ravel().tolist())
    return image


def _centre(image, ijk):
    return tuple(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk]))


def _segments(image):
    algo = Algorithm("liver_lesion_demo", "3", SHA)
    a = sitk.GetArrayFromImage(sphere_label(image, _centre(image, (10, 12, 4)), 9.0))
    b = sitk.GetArrayFromImage(sphere_label(image, _centre(image, (24, 18, 5)), 12.0))
    return [Segment("L1", a, "hemangioma", algo, site="liver"), Segment("L2", b, "metastasis", algo.corrected())]


def test_seg_reads_back_on_the_same_voxels_with_codes_algorithm_and_original_uids(series, tmp_path):
    folder, files, image = series
    segments = _segments(image)
    path = write_seg(segments, image, files, tmp_path / "l.seg.dcm")
    back = read_seg(path, files, image)
    for n, s in enumerate(segments, start=1):
        assert s.mask.sum() > 5 and np.array_equal(back[n], s.mask.astype(np.uint8))
    ds = pydicom.dcmread(path)
    src = pydicom.dcmread(files[0])
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == src.StudyInstanceUID
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    referenced = {str(i.ReferencedSOPInstanceUID) for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    info = segment_info(path)
    assert [i["type"] for i in info] == [("SCT", "400210000", "Hemangioma"), ("SCT", "14799000", "Neoplasm, Secondary")]
    assert [i["algorithm_type"] for i in info] == ["AUTOMATIC", "SEMIAUTOMATIC"]
    assert all(i["model_sha256"] == SHA and i["algorithm_name"] == "liver_lesion_demo" for i in info)
    cat = ds.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence[0]
    assert (cat.CodingSchemeDesignator, cat.CodeValue) == ("SCT", "49755003")       # as Slicer's terminology
    assert _errors(path) == []
    out = tmp_path / "dcmqi"                             # dcmqi, the library Slicer's SEG plugin uses
    out.mkdir()
    subprocess.run([tool("segimage2itkimage"), "--inputDICOM", str(path), "--outputDirectory", str(out),
                    "--outputType", "nrrd"], check=True, capture_output=True, timeout=60)
    meta = json.loads((out / "meta.json").read_text())
    labels = [a["SegmentLabel"] for group in meta["segmentAttributes"] for a in group]
    for n, s in enumerate(segments, start=1):
        img = sitk.ReadImage(str(out / f"{n}.nrrd"))
        on_grid = sitk.Resample(img, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, img.GetPixelID())
        assert np.array_equal(sitk.GetArrayFromImage(on_grid) > 0, s.mask > 0)
    assert labels == ["L1", "L2"]


def test_weak_label_writer_is_the_shared_one(series, tmp_path):
    from slicercad.weak.dicom_seg import read_dicom_seg, write_dicom_seg

    _, files, image = series
    mask = _segments(image)[0].mask
    path = write_dicom_seg(mask, image, files, tmp_path / "w.seg.dcm", "A", "unet", card={"name": "weak", "sha256": SHA})
    assert np.array_equal(read_dicom_seg(path, files, image), mask)
    (info,) = segment_info(path)
    assert info["algorithm_type"] == "SEMIAUTOMATIC" and info["model_sha256"] == SHA


def test_heat_maps_as_fractional_seg_and_float_parametric_map(series, tmp_path):
    _, files, image = series
    heat = np.random.default_rng(1).random(sitk.GetArrayFromImage(image).shape).astype(np.float32)
    algo = Algorithm("anomaly_glow", "1", SHA)
    frac = write_fractional_seg(heat, image, files, tmp_path / "h.seg.dcm", "anomaly", algorithm=algo)
    assert np.abs(read_seg(frac, files, image)[1] - heat).max() <= 0.5 / 255 + 1e-6
    scores = heat * 40.0 - 7.5                         # a float map with negative values: Parametric Map
    pm = write_parametric_map(scores, image, files, tmp_path / "h.pm.dcm", label="GRADCAM", unit="1",
                              explanation="Grad-CAM", algorithm=algo)
    values, unit = read_parametric_map(pm, files, image)
    assert unit == "1" and np.array_equal(values, scores)
    assert pydicom.dcmread(pm).SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        write_fractional_seg(scores, image, files, tmp_path / "bad.seg.dcm", "x")
    assert _errors(frac) == [] and _errors(pm) == []
    # what Slicer's DICOMSegmentationPlugin runs (--mergeSegments) turns the fractions into label values 0-255:
    # a fractional SEG does not load faithfully in Slicer (the README says so; the Parametric Map does)
    merged = sitk.ReadImage(str(dcmqi("segimage2itkimage", frac, tmp_path / "frac") / "1.nrrd"))
    on_grid = sitk.Resample(merged, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, merged.GetPixelID())
    assert np.array_equal(sitk.GetArrayFromImage(on_grid), np.round(heat * 255).astype(int))


def test_sr_content_reads_back_equal_to_the_result_rows(series, tmp_path):
    _, files, image = series
    segments = _segments(image)
    seg = write_seg(segments, image, files, tmp_path / "l.seg.dcm")
    rows = [LesionFinding("L1", _centre(image, (10, 12, 4)), 9.0, "hemangioma",
                          {"cyst": 0.1, "hemangioma": 0.85, "metastasis": 0.05}, 1, 381.5),
            LesionFinding("L2", _centre(image, (24.3, 18.2, 5.1)), 12.0, "metastasis",
                          {"cyst": 0.01, "hemangioma": 0.02, "metastasis": 0.97})]      # no SEG segment
    algo = Algorithm("liver_lesion_demo", "3", SHA)
    path = write_measurement_report(tmp_path / "r.sr.dcm", rows, image, files, algo, seg_path=seg,
                                    case_values={"anomaly_score": 2.5, "recommended_ti_ms": 310.0},
                                    notice="research use - model trained on synthetic data")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"          # Comprehensive 3D SR
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    back = read_measurement_report(path)
    for want, got in zip(rows, back["lesions"]):
        assert got.lesion_id == want.lesion_id and got.predicted_class == want.predicted_class
        np.testing.assert_allclose(got.centre_lps, want.centre_lps, atol=1e-4)
        assert got.diameter_mm == pytest.approx(want.diameter_mm)
        assert got.probabilities == pytest.approx(want.probabilities, abs=1e-12)
        assert got.segment_number == want.segment_number and got.volume_mm3 == want.volume_mm3
    assert back["case"] == {"anomaly_score": 2.5, "recommended_ti_ms": 310.0}
    assert back["algorithm"] == {"name": "liver_lesion_demo", "version": "3", "model_sha256": SHA}
    assert "research use" in back["notice"] and "synthetic" in back["notice"]
    assert back["seg_instance_uid"] == pydicom.dcmread(seg).SOPInstanceUID
    assert back["source_series_uid"] == pydicom.dcmread(files[0]).SeriesInstanceUID
    # what Slicer's DICOMTID1500Plugin looks for: 3D points and 2D polylines as Image Region planar groups
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sr = hd.sr.srread(str(path))
    points = sr.content.get_planar_roi_measurement_groups(reference_type=codes.DCM.ImageRegion,
                                                          graphic_type=hd.sr.GraphicTypeValues3D.POINT)
    lines = sr.content.get_planar_roi_measurement_groups(reference_type=codes.DCM.ImageRegion,
                                                         graphic_type=hd.sr.GraphicTypeValues.POLYLINE)
    assert len(points) == 2 and len(lines) == 2
    assert points[0].finding_type.value == class_code("hemangioma").value
    line = lines[1].roi.value                          # the diameter: 2 points, diameter apart in mm
    assert line.shape == (2, 2) and (line[1, 0] - line[0, 0]) * image.GetSpacing()[0] == pytest.approx(12.0)
    volumetric = sr.content.get_volumetric_roi_measurement_groups()
    assert len(volumetric) == 1 and volumetric[0].referenced_segment is not None
    assert _errors(path) == []


def test_bad_input_is_refused_with_a_message(series, tmp_path):
    _, files, image = series
    algo = Algorithm("m", "1", SHA)
    with pytest.raises(InputError, match="empty"):
        write_seg([Segment("E", np.zeros(sitk.GetArrayFromImage(image).shape), "cyst", algo)], image, files,
                  tmp_path / "e.seg.dcm")
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(np.array(image.GetOrigin()) + 1.3))
    with pytest.raises(InputError, match="grid does not match"):
        write_seg(_segments(image)[:1], moved, files, tmp_path / "m.seg.dcm")
    row = LesionFinding("X", _centre(image, (5, 5, 2)), 5.0, "fnh", {"cyst": 1.0})
    with pytest.raises(InputError, match="not among the probabilities"):
        write_measurement_report(tmp_path / "x.sr.dcm", [row], image, files, algo)
    row = LesionFinding("X", _centre(image, (5, 5, 2)), 5.0, "cyst", {"cyst": 1.0}, segment_number=4)
    with pytest.raises(InputError, match="no SEG"):
        write_measurement_report(tmp_path / "x.sr.dcm", [row], image, files, algo)
    assert not list(tmp_path.glob("*.dcm"))                        # nothing half-written
