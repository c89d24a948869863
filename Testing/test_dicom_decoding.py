"""Compressed pixel data decodes: JPEG-LS through pydicom's pyjpegls plugin, JPEG Lossless (no pydicom
decoder without GPL or extra packages) through SimpleITK's GDCM, anything else a DicomError."""
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless, UID

from slicercad.dicom import volume
from slicercad.dicom.scan import load_volume
from slicercad.errors import DicomError

JPEG_LL = Path(get_testdata_file("JPEG-LL.dcm", download=False))         # pydicom-data, process 14 SV1
JPEG_LS = Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))        # pydicom's own test files


def sitk_values(path):
    """SimpleITK's voxels (it applies any rescale itself; both files are MONOCHROME2 without rescale)."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)


@pytest.mark.parametrize("path, size", [(JPEG_LL, (256, 1024, 1)), (JPEG_LS, (64, 64, 1))], ids=["jpeg-ll", "jpeg-ls"])
def test_lossless_jpeg_files_load_with_simpleitk_voxels(path, size):
    image, _ = load_volume([path])
    assert image.GetSize() == size
    assert image.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk_values(path))


def test_jpeg_ls_decodes_with_pyjpegls_not_the_fallback(monkeypatch):
    assert "pyjpegls" in get_decoder(JPEGLSLossless).available_plugins
    monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: pytest.fail("SimpleITK fallback used for JPEG-LS"))
    image, _ = load_volume([JPEG_LS])
    assert np.array_equal(sitk.GetArrayFromImage(image)[0], pydicom.dcmread(JPEG_LS).pixel_array)


def test_fallback_gives_stored_values_then_our_rescale_and_monochrome1(tmp_path):
    """GDCM would rescale and invert by itself; the fallback must hand back stored values like pydicom."""
    ds = pydicom.dcmread(JPEG_LL)
    ds.RescaleSlope, ds.RescaleIntercept, ds.PhotometricInterpretation = 2, -100, "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    image, _ = load_volume([tmp_path / "m1.dcm"])
    values = sitk_values(JPEG_LL) * 2 - 100
    assert np.array_equal(sitk.GetArrayFromImage(image), values.min() + values.max() - values)


def test_syntax_nobody_decodes_names_file_and_syntax(tmp_path, monkeypatch):
    ds = pydicom.dcmread(JPEG_LL)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2: neither pydicom nor GDCM
    ds.save_as(tmp_path / "mpeg2.dcm")
    with pytest.raises(DicomError, match="MPEG2 Main Profile") as exc:
        load_volume([tmp_path / "mpeg2.dcm"])
    assert exc.value.source == str(tmp_path / "mpeg2.dcm")

    def no_gdcm(*args, **kwargs):
        raise RuntimeError("GDCM: unsupported transfer syntax")

    monkeypatch.setattr(volume, "pydicom_decodes", lambda syntax: False)
    monkeypatch.setattr(sitk, "ReadImage", no_gdcm)
    with pytest.raises(DicomError, match=r"JPEG-LS Lossless Image Compression.*GDCM") as exc:
        load_volume([JPEG_LS])
    assert exc.value.source == str(JPEG_LS)
