"""DICOM tags of a volume node: from Slicer's DICOM database inside Slicer, from the files elsewhere."""
import types

import pydicom
import pytest
import slicer
from pydicom.data import get_testdata_file

from slicercad.errors import DicomError
from SlicerCADLib.dicom_nodes import set_volume_files, tags_for_volume_node


@pytest.fixture
def mr_files(tmp_path):
    """Two copies of pydicom's MR_small with different acquisition times."""
    source = get_testdata_file("MR_small.dcm", download=False)
    paths = []
    for n, time in enumerate(["101500", "101203.5"]):
        ds = pydicom.dcmread(source)
        ds.AcquisitionTime = time
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{n}"
        path = tmp_path / f"mr{n}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_tags_from_the_files_named_on_the_node(scene, mr_files):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    set_volume_files(node, mr_files)
    tags = tags_for_volume_node(node)
    ds = pydicom.dcmread(mr_files[0])
    assert tags.modality == ds.Modality == "MR"
    assert tags.series_instance_uid == ds.SeriesInstanceUID
    assert tags.series_description == str(ds.get("SeriesDescription", ""))
    assert tags.acquisition_time == pytest.approx(10 * 3600 + 15 * 60)  # the first file's


def test_tags_through_the_dicom_database_when_slicer_has_one(scene, mr_files, monkeypatch):
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in mr_files]
    database = types.SimpleNamespace(fileForInstance=dict(zip(uids, map(str, mr_files))).get)
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    node.SetAttribute("DICOM.instanceUIDs", " ".join(reversed(uids)))
    assert tags_for_volume_node(node).acquisition_time == pytest.approx(36723.5)  # mr1.dcm comes first
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3.4")
    with pytest.raises(DicomError, match="not in the DICOM database"):
        tags_for_volume_node(node)


def test_missing_source_and_damaged_file_are_dicom_errors(scene, mr_files):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "bare")
    with pytest.raises(DicomError, match="bare.*no DICOM source"):
        tags_for_volume_node(node)
    mr_files[0].write_bytes(b"\x00" * 10)
    set_volume_files(node, mr_files)
    with pytest.raises(DicomError, match="mr0.dcm"):
        tags_for_volume_node(node)
