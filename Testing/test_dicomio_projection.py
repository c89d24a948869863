"""Which series get the radiograph-only DICOM results (SR, no SEG / Parametric Map): a projection modality
without a Frame of Reference; a cross-sectional series keeps the SEG/PM path and its checks even when its
position sits in functional groups (Enhanced CT) rather than at the top level."""
import pydicom
import pytest
from pydicom.data import get_testdata_file

from slicercad.dicomio.sources import is_projection_radiograph
from slicercad.errors import InputError


def _copy(name, tmp_path, edit):
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    edit(ds)
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_radiograph_without_frame_of_reference_is_projection_and_a_ct_is_not(tmp_path):
    assert is_projection_radiograph([get_testdata_file("RG1_UNCI.dcm", download=False)])       # CR
    assert not is_projection_radiograph([get_testdata_file("CT_small.dcm", download=False)])
    no_position = _copy("CT_small.dcm", tmp_path, lambda ds: delattr(ds, "ImagePositionPatient"))
    assert not is_projection_radiograph([no_position])          # a CT stays on the cross-sectional path
    with_frame = _copy("RG1_UNCI.dcm", tmp_path, lambda ds: setattr(ds, "FrameOfReferenceUID", "1.2.3.4"))
    assert not is_projection_radiograph([with_frame])
    with pytest.raises(InputError, match="no source files"):
        is_projection_radiograph([])
