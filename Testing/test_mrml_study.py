"""A SYNTHETIC multi-phase liver MRI study (phantom, same description on every dynamic phase) loaded
into volume nodes: phases right by timing, geometry equal to SimpleITK's own series reader."""
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.errors import DicomError
from slicercad.phases import assign_phases
from slicercad.synth.study import write_phantom_study
from SlicerCADLib.dicom_nodes import tags_for_volume_node, volume_files
from SlicerCADLib.study import PHASE_ATTRIBUTE, load_study
from SlicerCADLib.volumes import volume_node_to_sitk


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    info = write_phantom_study(folder, "liver_mri", seed=0, same_descriptions=True, oblique_deg=15.0)
    return folder, info


def test_phases_by_timing_and_the_same_tags_from_the_nodes(scene, phantom):
    folder, info = phantom
    result = load_study(scene, folder)
    assert len(result.volume_nodes) == len(result.assignments) >= len(info["truth"])
    for assignment in result.assignments:
        node = result.volume_nodes[assignment.volume_id]
        tags = tags_for_volume_node(node)
        assert info["truth"][tags.series_instance_uid] == assignment.phase
        assert node.GetAttribute(PHASE_ATTRIBUTE) == assignment.phase
        assert node.GetName().startswith(assignment.phase)
    # tags read back from the nodes' files give the same assignment
    again = assign_phases([(vid, tags_for_volume_node(n)) for vid, n in result.volume_nodes.items()])
    assert [(a.volume_id, a.phase) for a in again] == [(a.volume_id, a.phase) for a in result.assignments]
    summary = result.summary()
    assert summary.startswith(f"{len(result.volume_nodes)} volumes loaded; phases: ")
    assert all(phase in summary for phase in set(info["truth"].values()))
    table = result.table_node
    assert table.GetNumberOfRows() == len(result.volume_nodes)
    phases = table.GetTable().GetColumnByName("phase")
    assert [phases.GetValue(r) for r in range(phases.GetNumberOfValues())] == [a.phase for a in result.assignments]


def test_node_geometry_matches_simpleitk_series_reader(scene, phantom):
    folder, info = phantom
    result = load_study(scene, folder)
    arterial = next(n for n in result.volume_nodes.values() if n.GetAttribute(PHASE_ATTRIBUTE) == "arterial")
    series_uid = tags_for_volume_node(arterial).series_instance_uid
    series_dir = Path(volume_files(arterial)[0]).parent
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir), series_uid))
    reference = reader.Execute()
    ours = volume_node_to_sitk(arterial)
    assert ours.GetSize() == reference.GetSize()
    np.testing.assert_allclose(ours.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(ours.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(ours.GetDirection(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference), atol=1e-3)


def test_folder_without_dicom_is_a_dicom_error(scene, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DicomError, match="no DICOM volumes"):
        load_study(scene, tmp_path)
