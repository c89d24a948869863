"""Volume node <-> SimpleITK with exact geometry, checked against Slicer's own IJKToRAS and storage."""
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from slicercad.errors import InputError
from slicercad.geometry import ijk_to_physical, ras_to_lps
from SlicerCADLib.volumes import sitk_to_volume_node, volume_node_to_sitk


def _ijk_to_ras(node):
    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_oblique_anisotropic_round_trip_keeps_geometry_and_values(scene, oblique_image):
    image = oblique_image()
    node = sitk_to_volume_node(image, scene, name="oblique")
    assert node.GetScene() is scene and node.IsA("vtkMRMLScalarVolumeNode")
    np.testing.assert_allclose(node.GetSpacing(), image.GetSpacing(), atol=1e-9)
    back = volume_node_to_sitk(node)
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_node_ijk_to_ras_agrees_with_sitk_physical_points(scene, oblique_image):
    """Slicer's matrix (not ours) maps each voxel to the point SimpleITK gives for it."""
    image = oblique_image()
    node = sitk_to_volume_node(image, scene)
    m = _ijk_to_ras(node)
    for ijk in [(0, 0, 0), (19, 15, 11), (3, 7, 5)]:
        ras = (m @ [*ijk, 1.0])[:3]
        lps_sitk = image.TransformIndexToPhysicalPoint(ijk)
        np.testing.assert_allclose(ras_to_lps(ras), lps_sitk, atol=1e-6)
        np.testing.assert_allclose(ijk_to_physical(image, ijk, "RAS"), ras, atol=1e-6)


def test_volume_written_by_slicer_storage_node_reads_back_in_sitk(scene, oblique_image, tmp_path):
    """An independent reader: Slicer's own NRRD writer, read by SimpleITK."""
    image = oblique_image()
    node = sitk_to_volume_node(image, scene)
    path = tmp_path / "vol.nrrd"
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    read = sitk.ReadImage(str(path))
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(read.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


def test_linear_parent_transform_moves_the_exported_geometry(scene, oblique_image):
    image = oblique_image()
    node = sitk_to_volume_node(image, scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)  # +10 mm towards R
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = volume_node_to_sitk(node)
    np.testing.assert_allclose(np.subtract(moved.GetOrigin(), image.GetOrigin()), [-10.0, 0, 0], atol=1e-9)


def test_labelmap_and_vector_volumes(scene, oblique_image):
    labels = sitk.Cast(oblique_image() > 100, sitk.sitkUInt8)
    label_node = sitk_to_volume_node(labels, scene, labelmap=True)
    assert label_node.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(label_node), sitk.GetArrayFromImage(labels))
    vec = sitk.Compose(oblique_image(seed=1), oblique_image(seed=2))
    vec_node = sitk_to_volume_node(vec, scene)
    assert vec_node.IsA("vtkMRMLVectorVolumeNode")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume_node_to_sitk(vec_node)),
                                  sitk.GetArrayFromImage(vec))
    with pytest.raises(InputError, match="integer"):
        sitk_to_volume_node(oblique_image(), scene, labelmap=True)
