"""Segmentation <-> label array [k, j, i] on a reference grid."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.errors import InputError
from SlicerCADLib.segmentations import label_array_to_segment, segment_to_label_array
from SlicerCADLib.volumes import sitk_to_volume_node


def _mask(shape):
    mask = np.zeros(shape, np.uint8)
    mask[3:7, 4:9, 5:12] = 1
    mask[8, 2, 3] = 1  # a lone voxel survives the round trip too
    return mask


def test_round_trip_on_an_oblique_reference_grid(scene, oblique_image):
    node = sitk_to_volume_node(oblique_image(), scene)
    mask = _mask((12, 16, 20))
    segmentation, segment_id = label_array_to_segment(mask, node, name="Lesion", color=(0.0, 1.0, 0.0))
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    assert segment.GetName() == "Lesion" and tuple(segment.GetColor()) == (0.0, 1.0, 0.0)
    out = segment_to_label_array(segmentation, segment_id, node)
    assert out.dtype == np.uint8 and out.shape == mask.shape
    np.testing.assert_array_equal(out, mask)
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0  # temporaries removed


def test_export_onto_a_shifted_grid_moves_the_voxels(scene, oblique_image):
    """The same segment seen on a grid whose origin sits 2 voxels further along i."""
    image = oblique_image()
    node = sitk_to_volume_node(image, scene, name="A")
    shifted = sitk.Image(image)
    shifted.SetOrigin(image.TransformIndexToPhysicalPoint((2, 0, 0)))
    other = sitk_to_volume_node(shifted, scene, name="B")
    mask = _mask((12, 16, 20))
    segmentation, segment_id = label_array_to_segment(mask, node)
    on_other = segment_to_label_array(segmentation, segment_id, other)
    expected = np.zeros_like(mask)
    expected[:, :, :-2] = mask[:, :, 2:]
    np.testing.assert_array_equal(on_other, expected)


def test_second_segment_is_added_to_the_same_node_and_bad_shapes_are_refused(scene, oblique_image):
    node = sitk_to_volume_node(oblique_image(), scene)
    mask = _mask((12, 16, 20))
    segmentation, first = label_array_to_segment(mask, node, name="A")
    same, second = label_array_to_segment(1 - mask, node, segmentation, name="B")
    assert same is segmentation and first != second
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 2
    assert segment_to_label_array(segmentation, second, node).sum() == mask.size - mask.sum()
    with pytest.raises(InputError, match=r"\(12, 16, 20\)"):
        label_array_to_segment(mask[:, :, :5], node)
    with pytest.raises(InputError, match="not found"):
        segment_to_label_array(segmentation, "no-such-segment", node)
