"""Real DICOM files shipped in pydicom / pydicom-data load with the right shape, spacing and values."""
import shutil
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from slicercad.dicom.read_tags import read_tags
from slicercad.dicom.scan import load_volume, scan_folder


def data_file(name):
    return Path(get_testdata_file(name, download=False))


def raw(name):
    ds = pydicom.dcmread(data_file(name))
    return ds, ds.pixel_array.astype(np.float64)


def test_ct_small_rescaled_int16():
    ds, pixels = raw("CT_small.dcm")
    image, warnings = load_volume([data_file("CT_small.dcm")])
    assert warnings == []
    assert image.GetPixelID() == sitk.sitkInt16
    assert image.GetSize() == (128, 128, 1)
    assert np.allclose(image.GetSpacing(), (0.661468, 0.661468, 5.0))
    assert np.array_equal(sitk.GetArrayFromImage(image)[0], pixels * float(ds.RescaleSlope) + float(ds.RescaleIntercept))


def test_mr_small_and_siemens_liver_values():
    for name, size, spacing in [("MR_small.dcm", (64, 64, 1), (0.3125, 0.3125, 0.8)),
                                ("MR-SIEMENS-DICOM-WithOverlays.dcm", (484, 484, 1), (0.72314049586777,) * 2 + (4.0,))]:
        _, pixels = raw(name)
        image, _ = load_volume([data_file(name)])
        assert image.GetSize() == size
        assert np.allclose(image.GetSpacing(), spacing)
        assert np.array_equal(sitk.GetArrayFromImage(image)[0], pixels)


def test_head_ct_jpeg2000_lossless_equals_uncompressed():
    unc, _ = load_volume([data_file("693_UNCR.dcm")])
    j2k, _ = load_volume([data_file("693_J2KR.dcm")])
    a, b = sitk.GetArrayFromImage(unc), sitk.GetArrayFromImage(j2k)
    assert a.shape == (1, 512, 512)
    assert np.array_equal(a, b)
    assert a.min() == -1024 + raw("693_UNCR.dcm")[1].min()
    assert unc.GetOrigin() == j2k.GetOrigin()


def test_enhanced_mr_without_functional_groups_and_its_codecs():
    _, pixels = raw("emri_small.dcm")
    image, warnings = load_volume([data_file("emri_small.dcm")])
    assert image.GetSize() == (64, 64, 10)
    assert np.array_equal(sitk.GetArrayFromImage(image), pixels)
    assert image.GetSpacing()[2] == 1.2                       # SpacingBetweenSlices
    assert any("pixel spacing unknown" in w for w in warnings)
    for variant in ("emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm", "emri_small_big_endian.dcm"):
        other, _ = load_volume([data_file(variant)])
        assert np.array_equal(sitk.GetArrayFromImage(other), pixels), variant


def test_cr_monochrome1_zero_spacing(tmp_path):
    shutil.copy(data_file("RG1_UNCI.dcm"), tmp_path / "cr.dcm")
    result = scan_folder(tmp_path)
    (volume,) = result.volumes()
    assert (volume.kind, volume.photometric, volume.spacing_known) == ("single", "MONOCHROME1", False)
    image = volume.load()
    assert image.GetSize() == (1841, 1955, 1)
    assert image.GetSpacing() == (1.0, 1.0, 1.0)
    assert any("pixel spacing unknown" in w for w in volume.warnings)
    _, pixels = raw("RG1_UNCI.dcm")
    shown = sitk.GetArrayFromImage(image)[0].astype(np.float64)
    assert np.array_equal(shown, pixels.min() + pixels.max() - pixels)
    # the region brightest in the stored MONOCHROME1 values (dark on screen) is dark after loading
    bright = pixels > np.percentile(pixels, 99)
    dark = pixels < np.percentile(pixels, 1)
    assert shown[bright].mean() < shown[dark].mean()


def test_read_tags_from_real_headers():
    ct = read_tags(pydicom.dcmread(data_file("eCT_Supplemental.dcm"), stop_before_pixels=True))
    assert (ct.modality, ct.contrast_bolus_agent, ct.patient_sex) == ("CT", "Iohexol", "M")
    assert ct.patient_age_years == 52.0
    assert ct.content_time == 11 * 3600 + 9 * 60 + 30.671
    mr = read_tags(pydicom.dcmread(data_file("emri_small.dcm"), stop_before_pixels=True))
    assert mr.field_strength_t == 3.0
    assert mr.acquisition_time == 12 * 3600 + 8 * 60 + 4.06    # from AcquisitionDateTime
    assert mr.series_number == 301
