"""Series splitting, time series, resampling of irregular/tilted stacks, and bad input."""
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from slicercad.cli import main
from slicercad.dicom.scan import load_frames, load_volume, scan_folder
from slicercad.dicom.write import write_series
from slicercad.errors import DicomError, SeriesError

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
COEF = np.array([2.0, 3.0, 5.0])   # voxel value = COEF . LPS position (a linear ramp)


def ramp_slice(origin, direction=np.eye(3), size=(12, 10), spacing=(1.5, 2.0)):
    """One-slice image whose voxel values are COEF . (physical LPS position)."""
    j, i = np.mgrid[0:size[1], 0:size[0]]
    pts = np.asarray(origin) + np.multiply.outer(i * spacing[0], direction[:, 0]) \
        + np.multiply.outer(j * spacing[1], direction[:, 1])
    image = sitk.GetImageFromArray((pts @ COEF)[None].astype(np.float32))
    image.SetSpacing(tuple(spacing) + (1.0,))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(direction.ravel().tolist())
    return image


def write_stack(folder, origins, direction=np.eye(3), tags=None, **kw):
    files = []
    for origin in origins:
        files += write_series(ramp_slice(origin, direction), folder, study_uid=STUDY, series_uid=SERIES,
                              tags=tags, **kw)
    return files


def ramp_error(image):
    """Largest |value - COEF . position| over interior voxels (borders may be padded after shifts)."""
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    worst = 0.0
    for k in range(array.shape[0]):
        for j in range(3, array.shape[1] - 3):
            for i in range(3, array.shape[2] - 3):
                p = np.array(image.TransformIndexToPhysicalPoint((i, j, k)))
                worst = max(worst, abs(array[k, j, i] - p @ COEF))
    return worst


def test_two_b_values_split_and_localisers_dropped(tmp_path):
    origins = [(0, 0, 3.0 * k) for k in range(5)]
    write_stack(tmp_path, origins, tags={"DiffusionBValue": 0.0})
    write_stack(tmp_path, origins, tags={"DiffusionBValue": 800.0})
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    loc = write_stack(tmp_path, [(0, 0, 0)], sagittal, tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    off_axis = write_stack(tmp_path, [(5, 5, 5)], np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float))
    result = scan_folder(tmp_path)
    volumes = result.volumes()
    assert [v.split_key.get("b_value") for v in volumes] == [0.0, 800.0]
    assert [v.tags.b_value for v in volumes] == [0.0, 800.0]
    assert len({v.volume_id for v in volumes}) == 2
    assert all(v.kind == "volume" and len(v.files) == 5 for v in volumes)
    reasons = dict(result.skipped)
    assert reasons[loc[0]].startswith("localiser") and reasons[off_axis[0]].startswith("localiser")
    image = volumes[1].load()
    assert image.GetSize() == (12, 10, 5) and np.isclose(image.GetSpacing()[2], 3.0)
    assert ramp_error(image) < 0.01


def test_irregular_spacing_resampled_with_warning_or_strict_error(tmp_path):
    files = write_stack(tmp_path, [(0, 0, z) for z in (0.0, 2.0, 4.0, 7.0, 9.0, 12.0)])
    image, warnings = load_volume(files)
    assert any("irregular slice spacing" in w for w in warnings)
    assert image.GetSize()[2] == 7 and np.isclose(image.GetSpacing()[2], 2.0)   # the median gap
    assert ramp_error(image) < 0.01
    with pytest.raises(SeriesError, match="irregular"):
        load_volume(files, strict=True)


def test_gantry_tilt_resampled_onto_regular_grid(tmp_path):
    tilt = np.radians(15)
    col = np.array([0, np.cos(tilt), -np.sin(tilt)])
    direction = np.c_[[1.0, 0, 0], col, np.cross([1.0, 0, 0], col)]
    # slices advance along z (table motion), not along the tilted slice normal
    files = write_stack(tmp_path, [(0, 0, 4.0 * k) for k in range(6)], direction)
    image, warnings = load_volume(files)
    assert any("gantry tilt" in w for w in warnings)
    assert np.allclose(np.array(image.GetDirection()).reshape(3, 3), direction, atol=1e-6)
    assert np.isclose(image.GetSpacing()[2], 4.0 * np.cos(tilt))
    assert ramp_error(image) < 0.01
    with pytest.raises(SeriesError, match="tilt"):
        load_volume(files, strict=True)


def test_missing_middle_slice_is_series_error(tmp_path):
    files = write_stack(tmp_path, [(0, 0, 2.5 * k) for k in range(8)])
    files[3].unlink()
    with pytest.raises(SeriesError, match="missing slice") as err:
        scan_folder(tmp_path).volumes()[0].load()
    assert files[2].name in str(err.value) and files[4].name in str(err.value)


def test_mixed_orientations_and_duplicates_are_series_errors(tmp_path):
    axial = write_stack(tmp_path / "a", [(0, 0, 0), (0, 0, 2)])
    coronal = write_stack(tmp_path / "c", [(0, 0, 0)], np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float))
    with pytest.raises(SeriesError, match="mixed orientations"):
        load_volume(axial + coronal)
    shutil.copy(axial[0], tmp_path / "copy.dcm")
    with pytest.raises(SeriesError, match="same position"):
        load_volume(axial + [tmp_path / "copy.dcm"])


def test_truncated_and_non_dicom_files(tmp_path):
    data = get_testdata_file("CT_small.dcm")
    cut_pixels, cut_header = tmp_path / "cut_pixels.dcm", tmp_path / "cut_header.dcm"
    blob = Path(data).read_bytes()
    cut_pixels.write_bytes(blob[: len(blob) // 2])
    cut_header.write_bytes(blob[:400])
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DicomError, match="cut_pixels.dcm"):
        load_volume([cut_pixels])
    with pytest.raises(DicomError, match="cut_header.dcm"):
        load_volume([cut_header])
    result = scan_folder(tmp_path)
    reasons = {p.name: r for p, r in result.skipped}
    assert result.n_files == 3 and result.volumes() == []
    assert reasons["notes.txt"] == "not DICOM"
    assert "truncated" in reasons["cut_header.dcm"] and "truncated" in reasons["cut_pixels.dcm"]
    with pytest.raises(DicomError, match="cut_header.dcm"):
        scan_folder(tmp_path, strict=True)


def test_ti_scout_single_position_is_time_series(tmp_path):
    tis = [300.0, 100.0, 250.0, 150.0, 200.0]
    for ti in tis:
        image = ramp_slice((0, 0, 0))
        write_series(image + ti, tmp_path, study_uid=STUDY, series_uid=SERIES, tags={"InversionTime": ti})
    (volume,) = scan_folder(tmp_path).volumes()
    assert volume.kind == "timeseries"
    frames, values, reference = load_frames(volume.files)
    assert values == sorted(tis)
    ramp = sitk.GetArrayFromImage(ramp_slice((0, 0, 0)))[0]
    assert np.allclose(frames - ramp, np.array(sorted(tis))[:, None, None], atol=0.01)
    assert reference.GetSize() == (12, 10, 1) and np.allclose(reference.GetSpacing()[:2], (1.5, 2.0))


def test_legacy_multiframe_with_frame_increment_pointer_is_time_series(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    frames = np.stack([ds.pixel_array + 10 * k for k in range(4)]).astype(np.int16)
    ds.NumberOfFrames = 4
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.FrameTime = 40.0
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "cine.dcm")
    (volume,) = scan_folder(tmp_path).volumes()
    assert volume.kind == "timeseries"
    stack, times, _ = load_frames(volume.files)
    assert times == [0.0, 40.0, 80.0, 120.0]
    assert np.array_equal(stack, frames.astype(np.float32))
    assert volume.load().GetSize() == (64, 64, 4)


def test_written_tags_read_back_and_cli_listing(tmp_path, capsys):
    tags = {"AcquisitionTime": 10 * 3600 + 5 * 60 + 7.5, "ContrastBolusAgent": "Gd-EOB-DTPA", "TriggerTime": 12.0,
            "MagneticFieldStrength": 1.5}
    files = write_stack(tmp_path / "dicom", [(0, 0, 2.0 * k) for k in range(3)], tags=tags,
                        patient={"PatientAge": "061Y", "PatientSex": "F"}, series_description="EOB arterial")
    (tmp_path / "dicom" / "readme.txt").write_text("x")
    (volume,) = scan_folder(tmp_path / "dicom").volumes()
    t = volume.tags
    assert (t.acquisition_time, t.contrast_bolus_agent, t.trigger_time) == (36307.5, "Gd-EOB-DTPA", 12.0)
    assert (t.patient_age_years, t.patient_sex, t.field_strength_t) == (61.0, "F", 1.5)
    assert t.series_description == "EOB arterial" and volume.files == files
    out = tmp_path / "scan.json"
    assert main(["scan", str(tmp_path / "dicom"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 volumes, 1 skipped" in printed and "not DICOM" in printed
    listing = json.loads(out.read_text())
    (series,) = listing["studies"][0]["series"]
    assert series["volumes"][0]["n_frames"] == 3 and listing["n_files"] == 4


def test_dicomdir_tree_scanned():
    folder = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
    result = scan_folder(folder)
    patients = {s.tags.patient_id for s in result.studies}
    assert patients == {"77654033", "98890234"}
    assert sum(r == "DICOMDIR index" for _, r in result.skipped) >= 1
    assert {v.tags.modality for v in result.volumes()} == {"CT", "CR", "MR"}
