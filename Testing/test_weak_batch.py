"""Batch mode (``slicercad weak segment``): the series of an x, y, z row picks the volume of a study holding
two; a report's long / short axis (no direction) is drawn as the sphere of the same volume, flagged; a bad
row is recorded in labels.csv and the batch goes on (exit status 1)."""
import csv

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.cli import main as cli_main
from slicercad.weak.lesion_list import read_lesion_list
from slicercad.weak.segment import segment_baseline, sphere_shape
from slicercad.weak.shapes import axes_diameters


def _image(origin=(0.0, 0.0, 0.0)):
    arr = np.zeros((40, 48, 48), np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 1.0))
    img.SetOrigin(origin)
    return img


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_series_number_is_read_with_x_y_z(tmp_path):
    path = _write_csv(tmp_path / "l.csv", [{"study": "s", "lesion_id": "A", "x": 1, "y": 2, "z": 3,
                                            "coordinate_system": "LPS", "series_number": 7, "diameter_mm": 5}])
    assert read_lesion_list(path)[0].series == "7"


def test_two_series_in_one_study_and_a_bad_row_does_not_stop_the_batch(tmp_path):
    from slicercad.dicom.write import write_series
    from pydicom.uid import generate_uid

    study = tmp_path / "studies" / "two"
    uid = generate_uid()
    write_series(_image(), study / "a", series_number=7, study_uid=uid)
    write_series(_image((300.0, 0.0, 0.0)), study / "b", series_number=8, study_uid=uid)   # elsewhere
    centre = [24.0, 24.0, 20.0]
    row = {"study": "two", "x": centre[0], "y": centre[1], "z": centre[2], "coordinate_system": "LPS",
           "diameter_mm": 10.0}
    lesions = _write_csv(tmp_path / "l.csv", [
        {**row, "lesion_id": "ok7", "series_number": 7},
        {**row, "lesion_id": "outside8", "series_number": 8},      # the centre lies outside series 8
        {**row, "lesion_id": "noseries"},                           # two volumes, no series: refused
        {**row, "lesion_id": "missing", "study": "nowhere"},
        {**row, "lesion_id": "ok7b", "series_number": 7}])
    out = tmp_path / "out"
    code = cli_main(["weak", "segment", "--studies", str(tmp_path / "studies"), "--lesions", str(lesions),
                     "--out", str(out), "--method", "sphere"])
    assert code == 1
    table = {r["lesion_id"]: r for r in csv.DictReader(open(out / "labels.csv"))}
    assert {k: r["status"] for k, r in table.items()} == {"ok7": "ok", "outside8": "error", "noseries": "error",
                                                         "missing": "error", "ok7b": "ok"}
    assert "outside the image" in table["outside8"]["error"]
    assert "series_number" in table["noseries"]["error"] and "not found" in table["missing"]["error"]
    label = sitk.ReadImage(table["ok7"]["file"])
    np.testing.assert_allclose(label.GetOrigin(), (0.0, 0.0, 0.0), atol=1e-3)   # series 7's grid
    assert table["ok7"]["error"] == ""


def test_long_and_short_axis_without_a_direction_is_the_equal_volume_sphere():
    img = _image()
    centre = np.array([24.0, 24.0, 20.0])
    d = axes_diameters(20.0, 10.0)
    res = segment_baseline("sphere", img, centre, d, "LPS")
    assert res.warnings and "without a direction" in res.warnings[0]
    eq = (20.0 * 10.0 * 10.0) ** (1 / 3)
    assert res.volume_mm3 == pytest.approx(4 / 3 * np.pi * (eq / 2) ** 3, rel=0.08)
    kji = np.argwhere(res.mask)
    extent = kji.max(0) - kji.min(0)                   # (S-I, A-P, L-R) voxels: a sphere, not L-R long
    assert extent.max() - extent.min() <= 1 and extent.max() < 16
    # with axes (an ROI) the ellipsoid is oriented: long axis cranio-caudal here
    axes = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float).T
    assert sphere_shape(d, axes) == (d, [])
    kji = np.argwhere(segment_baseline("sphere", img, centre, d, "LPS", axes=axes).mask)
    extent = kji.max(0) - kji.min(0)
    assert extent[0] >= 18 and extent[2] <= 10
