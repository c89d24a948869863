"""RT dose as a label: RTDOSE files written with pydicom (scaling, units, relative / absolute frame
offsets), onto an image grid, isodose in Gy or % of a prescription, one component per target."""
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from slicercad.errors import DicomError, GeometryError, InputError
from slicercad.weak.rtdose import (RTDOSE_SOP_CLASS, isodose_label, prescription_from_rtplan, read_rtdose,
                                   threshold_gy)

ORIGIN = np.array([-40.0, -30.0, -20.0])
SPACING = (2.0, 2.5, 3.0)   # x (columns), y (rows), z (frames)
SHAPE = (16, 24, 32)        # frames, rows, columns
TARGETS = [(np.array([-10.0, 0.0, 5.0]), 20.0), (np.array([12.0, 10.0, 10.0]), 10.0)]  # centre LPS, peak Gy


def dose_gy():
    """Two Gaussian 'shots' (Gy) on the dose grid [k, j, i]."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    pts = ORIGIN + np.stack([i * SPACING[0], j * SPACING[1], k * SPACING[2]], -1)
    return sum(peak * np.exp(-np.sum((pts - c) ** 2, -1) / (2 * 6.0 ** 2)) for c, peak in TARGETS)


def write_rtdose(path, absolute=False, reverse=False, units="GY", scaling=1e-3, values=None):
    values = dose_gy() if values is None else values
    if reverse:
        values = values[::-1]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTDOSE_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = RTDOSE_SOP_CLASS, meta.MediaStorageSOPInstanceUID, "RTDOSE"
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = units, "PHYSICAL", "PLAN"
    ds.DoseGridScaling = f"{scaling:.6g}"
    z0 = ORIGIN[2] + (SHAPE[0] - 1) * SPACING[2] if reverse else ORIGIN[2]
    ds.ImagePositionPatient = [f"{v:g}" for v in (ORIGIN[0], ORIGIN[1], z0)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [SPACING[1], SPACING[0]]
    step = -SPACING[2] if reverse else SPACING[2]
    offsets = np.arange(SHAPE[0]) * step
    ds.GridFrameOffsetVector = [f"{v:g}" for v in (offsets + z0 if absolute else offsets)]
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.NumberOfFrames, ds.Rows, ds.Columns = SHAPE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.PixelData = np.round(values / scaling).astype(np.uint32).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def reference(spacing=(1.5, 1.5, 2.0), size=(40, 40, 24), origin=(-30.0, -25.0, -12.0)):
    img = sitk.Image(list(size), sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


@pytest.mark.parametrize("absolute,reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_rtdose_geometry_and_scaling(tmp_path, absolute, reverse):
    grid = read_rtdose(write_rtdose(tmp_path / "dose.dcm", absolute, reverse))
    assert grid.units == "GY"
    img = grid.image
    assert img.GetSize() == SHAPE[::-1] and img.GetSpacing() == pytest.approx(SPACING)
    np.testing.assert_allclose(img.GetOrigin(), ORIGIN, atol=1e-6)
    arr = sitk.GetArrayFromImage(img)
    np.testing.assert_allclose(arr, dose_gy(), atol=1e-3)      # DoseGridScaling applied, frames in order
    peak = np.unravel_index(np.argmax(arr), arr.shape)
    p = np.array(img.TransformIndexToPhysicalPoint([int(v) for v in peak[::-1]]))
    assert np.linalg.norm(p - TARGETS[0][0]) < 3.0


def test_isodose_in_gy_and_percent_gives_one_component_per_target(tmp_path):
    grid = read_rtdose(write_rtdose(tmp_path / "dose.dcm"))
    ref = reference()
    label, table = isodose_label(grid.image, ref, 5.0, "Gy")
    assert [r["label"] for r in table] == [1, 2] and table[0]["volume_mm3"] > table[1]["volume_mm3"]
    arr = sitk.GetArrayFromImage(label)
    for (centre, _), lab in zip(TARGETS, (1, 2)):
        kji = np.round(np.array(ref.TransformPhysicalPointToContinuousIndex(centre.tolist()))[::-1]).astype(int)
        assert arr[tuple(kji)] == lab
    # 50 % of a 10 Gy prescription is the same 5 Gy level
    label_pct, table_pct = isodose_label(grid.image, ref, 50.0, "%", prescription_gy=10.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label_pct), arr)
    # the 5 Gy sphere of a Gaussian shot: radius 6 * sqrt(2 ln(peak / 5))
    r = 6.0 * np.sqrt(2 * np.log(20.0 / 5.0))
    assert table[0]["volume_mm3"] == pytest.approx(4 / 3 * np.pi * r ** 3, rel=0.08)


def test_relative_units_rtplan_and_errors(tmp_path):
    rel = read_rtdose(write_rtdose(tmp_path / "rel.dcm", units="RELATIVE", values=dose_gy() / 20.0))
    assert rel.units == "RELATIVE"
    assert threshold_gy(50, "%", None, "RELATIVE") == 0.5
    assert threshold_gy(10, "Gy", 20.0, "RELATIVE") == 0.5
    _, table = isodose_label(rel.image, reference(), 50.0, "%", units="RELATIVE")
    assert len(table) == 1        # only the 20 Gy shot reaches half of the maximum
    plan = Dataset()
    plan.file_meta = FileMetaDataset()
    plan.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plan.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    plan.file_meta.MediaStorageSOPInstanceUID = plan.SOPInstanceUID = generate_uid()
    plan.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    plan.Modality = "RTPLAN"
    refs = [Dataset(), Dataset()]
    refs[0].TargetPrescriptionDose, refs[1].TargetPrescriptionDose = 18.0, 24.0
    plan.DoseReferenceSequence = refs
    plan.save_as(str(tmp_path / "plan.dcm"), enforce_file_format=True)
    dose, notes = prescription_from_rtplan(tmp_path / "plan.dcm")
    assert dose == 24.0 and "18.0, 24.0" in notes[0]          # targets prescribed differently are named
    grid = read_rtdose(write_rtdose(tmp_path / "dose.dcm"))
    with pytest.raises(GeometryError, match="does not overlap"):
        isodose_label(grid.image, reference(origin=(500.0, 500.0, 500.0)), 5.0)
    with pytest.raises(InputError, match="prescription"):
        isodose_label(grid.image, reference(), 50.0, "%")
    with pytest.raises(InputError, match="reaches"):
        isodose_label(grid.image, reference(), 100.0, "Gy")
    ds = pydicom.dcmread(tmp_path / "dose.dcm")
    ds.GridFrameOffsetVector = [0] + [3.0] * (SHAPE[0] - 1)
    ds.save_as(str(tmp_path / "bad.dcm"))
    with pytest.raises(DicomError, match="GridFrameOffsetVector"):
        read_rtdose(tmp_path / "bad.dcm")
    with pytest.raises(DicomError, match="not an RTDOSE"):
        read_rtdose(tmp_path / "plan.dcm")


def test_relative_percent_grid_max_level_and_the_gamma_knife_convention(tmp_path):
    """DICOM fixes no scale for RELATIVE: a percent-scaled grid (maximum ~100) is read as percent, so 50 %
    of the reference is the same level as on a fraction-scaled grid (not 0.5 % of it, the whole grid)."""
    frac = read_rtdose(write_rtdose(tmp_path / "f.dcm", units="RELATIVE", values=dose_gy() / 20.0))
    pct = read_rtdose(write_rtdose(tmp_path / "p.dcm", units="RELATIVE", values=dose_gy() / 20.0 * 100.0,
                                   scaling=1e-2))
    assert (frac.relative_scale, pct.relative_scale) == ("fraction", "percent")
    assert any("percent" in w for w in pct.warnings()) and not frac.warnings()
    np.testing.assert_allclose(sitk.GetArrayFromImage(pct.image), sitk.GetArrayFromImage(frac.image), atol=1e-2)
    a, t_frac = isodose_label(frac.image, reference(), 50.0, "%", units="RELATIVE")
    b, t_pct = isodose_label(pct.image, reference(), 50.0, "%", units="RELATIVE")
    assert len(t_pct) == len(t_frac) == 1
    assert np.mean(sitk.GetArrayFromImage(a) != sitk.GetArrayFromImage(b)) < 1e-3
    forced = read_rtdose(tmp_path / "p.dcm", relative_scale="fraction")       # the user's override wins
    assert forced.relative_scale == "fraction" and sitk.GetArrayFromImage(forced.image).max() > 90
    with pytest.raises(InputError, match="relative_scale"):
        read_rtdose(tmp_path / "p.dcm", relative_scale="permille")
    # % of max dose: a Gamma Knife plan prescribed at the 50 % isodose -- its prescription isodose is
    # 100 % of the prescription (prescription = half the maximum) and 50 % of the maximum: the same voxels
    grid = read_rtdose(write_rtdose(tmp_path / "gk.dcm"))
    peak = float(sitk.GetArrayFromImage(grid.image).max())
    by_rx, _ = isodose_label(grid.image, reference(), 100.0, "% of prescription", prescription_gy=peak / 2)
    by_max, _ = isodose_label(grid.image, reference(), 50.0, "% of max dose")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_rx), sitk.GetArrayFromImage(by_max))
    assert threshold_gy(50.0, "% max", max_dose=peak) == pytest.approx(peak / 2)
    assert threshold_gy(100.0, "%", peak / 2) == pytest.approx(peak / 2)
    summed = pydicom.dcmread(tmp_path / "gk.dcm")
    summed.DoseSummationType = "BEAM"
    summed.save_as(str(tmp_path / "beam.dcm"))
    assert "BEAM" in read_rtdose(tmp_path / "beam.dcm").warnings()[0]


def test_cli_dose_percent_of_max_warns_on_another_frame_of_reference(tmp_path, capsys):
    from slicercad.cli import main as cli_main
    from slicercad.dicom.write import write_series

    path = write_rtdose(tmp_path / "dose.dcm")
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = generate_uid()                   # not the image's
    ds.save_as(str(path))
    write_series(reference(), tmp_path / "ct", modality="CT", series_number=2)
    out = tmp_path / "iso.nrrd"
    assert cli_main(["weak", "dose", "--rtdose", str(path), "--image", str(tmp_path / "ct"), "--level", "50",
                     "--unit", "%max", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FrameOfReferenceUID" in printed and "target 1" in printed
    peak = float(sitk.GetArrayFromImage(read_rtdose(path).image).max())
    expected, _ = isodose_label(read_rtdose(path).image, reference(), 0.5 * peak, "Gy")
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.mean((label > 0) != (sitk.GetArrayFromImage(expected) > 0)) < 0.01
