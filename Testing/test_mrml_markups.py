"""Markups -> lesions in LPS: a fiducial at voxel (i, j, k) lands on that voxel in the core."""
import json

import numpy as np
import pytest
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from slicercad.errors import InputError
from slicercad.geometry import physical_to_ijk
from SlicerCADLib.markups import (lesion_from_segment, lesions_from_markups, load_markups_json,
                                  save_markups_json, scene_line_nodes)
from SlicerCADLib.segmentations import label_array_to_segment
from SlicerCADLib.volumes import sitk_to_volume_node, volume_node_to_sitk

VOXELS = [(3, 4, 5), (17, 2, 9), (0, 15, 0)]


def _slicer_ras_of_voxel(node, ijk):
    """Slicer's own answer: the node's IJKToRAS matrix applied to (i, j, k)."""
    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return list(m.MultiplyPoint([*map(float, ijk), 1.0])[:3])


def test_fiducial_at_voxel_lands_on_that_voxel_in_the_core(scene, oblique_image):
    image = oblique_image()
    node = sitk_to_volume_node(image, scene)
    fiducials = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    for ijk in VOXELS:
        fiducials.AddControlPoint(_slicer_ras_of_voxel(node, ijk))
    lesions = lesions_from_markups(fiducials)
    assert [lesion.name for lesion in lesions] == ["F-1", "F-2", "F-3"]
    core_image = volume_node_to_sitk(node)
    spacing = np.array(core_image.GetSpacing())
    for lesion, ijk in zip(lesions, VOXELS):
        found = physical_to_ijk(core_image, lesion.center_lps, "LPS")
        assert np.linalg.norm((found - ijk) * spacing) < 0.01
        assert tuple(np.round(found).astype(int)) == ijk
        # and SimpleITK's own index lookup agrees
        assert core_image.TransformPhysicalPointToIndex(lesion.center_lps.tolist()) == ijk


def test_line_near_a_point_gives_its_diameter_and_a_lone_line_is_its_own_lesion(scene):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "P")
    points.AddControlPoint([10.0, 20.0, 30.0], "A")
    points.AddControlPoint([-40.0, 0.0, 5.0], "B")
    short = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "short")
    short.AddControlPoint([8.0, 20.0, 30.0])
    short.AddControlPoint([12.0, 20.0, 30.0])
    long_line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "long")
    long_line.AddControlPoint([10.0, 17.0, 30.0])
    long_line.AddControlPoint([10.0, 23.0, 30.0])
    lone = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "lone")
    lone.AddControlPoint([100.0, 100.0, 0.0])
    lone.AddControlPoint([100.0, 103.0, 4.0])
    lesions = lesions_from_markups(points, [short, long_line, lone])
    by_name = {lesion.name: lesion for lesion in lesions}
    assert by_name["A"].diameter_mm == pytest.approx(6.0)  # the longer of the two lines at A
    assert by_name["B"].diameter_mm is None
    assert by_name["lone"].diameter_mm == pytest.approx(5.0)
    np.testing.assert_allclose(by_name["lone"].center_lps, [-100.0, -101.5, 2.0])
    np.testing.assert_allclose(by_name["A"].center_lps, [-10.0, -20.0, 30.0])


def test_zero_length_line_is_an_input_error(scene):
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "flat")
    line.AddControlPoint([1.0, 2.0, 3.0])
    line.AddControlPoint([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="flat.*> 0 mm"):
        lesions_from_markups(None, line)


def test_markups_json_keeps_coordinates_and_states_lps(scene, tmp_path):
    fiducials = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
    ras = np.array([[10.5, -20.25, 30.0], [-1.0, 2.0, -3.5]])
    for point in ras:
        fiducials.AddControlPoint(point.tolist())
    path = save_markups_json(fiducials, tmp_path / "lesions.mrk.json")
    text = json.loads(path.read_text())
    markup = text["markups"][0]
    assert markup["coordinateSystem"] == "LPS"
    written = np.array([cp["position"] for cp in markup["controlPoints"]])
    np.testing.assert_allclose(written, ras * [-1, -1, 1])  # file holds LPS
    assert not [p for p in tmp_path.iterdir() if p.name != "lesions.mrk.json"]  # no temp file left
    (loaded,) = load_markups_json(path, scene)
    back = np.array([loaded.GetNthControlPointPosition(i) for i in range(loaded.GetNumberOfControlPoints())])
    np.testing.assert_allclose(back, ras)


def test_lesion_from_segment_gives_centroid_and_equivalent_diameter(scene, oblique_image):
    image = oblique_image(size=(30, 30, 20), spacing=(0.9, 0.9, 1.5))
    node = sitk_to_volume_node(image, scene)
    mask = np.zeros((20, 30, 30), np.uint8)
    mask[8:12, 10:20, 12:18] = 1
    segmentation, segment_id = label_array_to_segment(mask, node, name="Tumour")
    lesion = lesion_from_segment(segmentation, segment_id, node)
    assert lesion.name == "Tumour"
    expected_center = image.TransformContinuousIndexToPhysicalPoint([14.5, 14.5, 9.5])
    np.testing.assert_allclose(lesion.center_lps, expected_center, atol=1e-6)
    volume = mask.sum() * 0.9 * 0.9 * 1.5
    assert lesion.diameter_mm == pytest.approx((6 * volume / np.pi) ** (1 / 3))
    empty, empty_id = label_array_to_segment(np.zeros_like(mask), node, segmentation, name="Empty")
    with pytest.raises(InputError, match="Empty"):
        lesion_from_segment(empty, empty_id, node)


def test_every_scene_line_is_a_diameter_and_lines_being_placed_are_left_out(scene):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "P")
    centres = {"A": [10.0, 20.0, 30.0], "B": [-40.0, 0.0, 5.0], "C": [0.0, -50.0, -10.0]}
    for name, (r, a, s) in centres.items():
        points.AddControlPoint([r, a, s], name)
    for name, length in (("A", 8.0), ("B", 14.0), ("C", 22.0)):
        r, a, s = centres[name]
        line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"{name} diameter")
        line.AddControlPoint([r - length / 2, a + 1.0, s])
        line.AddControlPoint([r + length / 2, a + 1.0, s])
    unfinished = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "being placed")
    unfinished.AddControlPoint([100.0, 100.0, 0.0])
    hidden = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "internal")
    hidden.SetHideFromEditors(True)
    lines = scene_line_nodes(scene)
    assert unfinished in lines and hidden not in lines and len(lines) == 4
    lesions = lesions_from_markups(points, lines)
    assert {lesion.name: lesion.diameter_mm for lesion in lesions} == pytest.approx({"A": 8.0, "B": 14.0, "C": 22.0})
