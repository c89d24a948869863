"""WeakLabelSegmenterLib on real MRML (slicer-core): markups -> Sphere / U-Net / isodose segments added to a
segmentation node with the source volume as reference geometry; nothing is ever overwritten."""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))

from conftest import oblique_direction  # noqa: E402
from slicercad.errors import InputError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from SlicerCADLib.segmentations import segment_to_label_array  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node  # noqa: E402
from WeakLabelSegmenterLib import logic as weak  # noqa: E402


def _volume(scene, spacing=(0.8, 1.1, 2.5)):
    img = sitk.Image([48, 40, 20], sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin((12.0, -30.0, 7.5))
    img.SetDirection(oblique_direction().ravel().tolist())
    return img, sitk_to_volume_node(img, scene, name="CT")


def _points(scene, centre_lps, name="L1"):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    node.AddControlPoint(list(lps_to_ras(centre_lps)), name)
    return node


def _line(scene, centre_lps, diameter):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "d")
    for s in (-0.5, 0.5):
        node.AddControlPoint(list(lps_to_ras(centre_lps + np.array([s * diameter, 0, 0]))))
    return node


def test_sphere_from_point_and_line_on_an_oblique_volume_never_overwrites(scene):
    img, volume = _volume(scene)
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint((24.3, 19.6, 9.8)))
    marks = weak.lesion_marks(_points(scene, centre), _line(scene, centre, 14.0))
    assert marks[0].diameters_mm == [pytest.approx(14.0)]
    node, ids = weak.add_sphere_segments(volume, marks)
    mask = segment_to_label_array(node, ids[0], volume)
    vol = mask.sum() * np.prod(img.GetSpacing())
    assert abs(vol - 4 / 3 * np.pi * 7 ** 3) < 4 * np.pi * 49 * 0.5 * np.linalg.norm(img.GetSpacing())
    kji = np.argwhere(mask).mean(0)
    assert np.linalg.norm(np.array(img.TransformContinuousIndexToPhysicalPoint(kji[::-1].tolist())) - centre) < 1.5
    segment = node.GetSegmentation().GetSegment(ids[0])
    assert "Mass" in segment.GetTerminology() and segment.GetName() == "L1 sphere"
    assert node.GetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole()) == volume.GetID()
    node2, ids2 = weak.add_sphere_segments(volume, marks, node)          # again: a new segment
    assert node2 is node and node.GetSegmentation().GetNumberOfSegments() == 2
    assert node.GetSegmentation().GetSegment(ids2[0]).GetName() == "L1 sphere (2)"
    np.testing.assert_array_equal(segment_to_label_array(node, ids[0], volume), mask)


def test_roi_gives_an_oriented_ellipsoid_and_missing_sizes_are_named(scene):
    img, volume = _volume(scene)
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint((24, 20, 10)))
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "R1")
    roi.SetCenter(list(lps_to_ras(centre)))
    roi.SetSize([20.0, 12.0, 10.0])
    mark = weak.lesion_marks(roi_nodes=roi)[0]
    assert mark.diameters_mm == pytest.approx([20.0, 12.0, 10.0])
    node, ids = weak.add_sphere_segments(volume, [mark], partial_volume=True)
    vol = segment_to_label_array(node, ids[0], volume).sum() * np.prod(img.GetSpacing())
    assert vol == pytest.approx(4 / 3 * np.pi * 10 * 6 * 5, rel=0.12)
    with pytest.raises(InputError, match="no diameter"):
        weak.lesion_marks(_points(scene, centre, "L9"))
    assert weak.lesion_marks(_points(scene, centre, "L9"), default_diameter_mm=8.0)[0].diameters_mm == [8.0]
    with pytest.raises(InputError, match="no lesion"):
        weak.lesion_marks()


def test_only_the_chosen_lines_and_rois_of_the_scene_are_lesions(scene):
    """The panel's markups (``scene_lesion_marks``): several lesions each with its own chosen diameter line
    (the nearest centre takes it, as in SlicerCADLib.markups), a chosen line far from every point, chosen
    ROIs -- and a ruler and a Crop Volume ROI the user did not choose, which are left alone."""
    img, volume = _volume(scene)
    centres = {name: np.array(img.TransformContinuousIndexToPhysicalPoint(ijk))
               for name, ijk in (("L1", (12, 10, 5)), ("L2", (36, 30, 14)))}
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    for name, centre in centres.items():
        points.AddControlPoint(list(lps_to_ras(centre)), name)
    at = img.TransformContinuousIndexToPhysicalPoint
    ruler = _line(scene, centres["L1"], 30.0)                          # a measurement, not a lesion
    crop_roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Crop Volume ROI")
    crop_roi.SetCenter(list(lps_to_ras(np.array(at((20, 20, 10))))))
    crop_roi.SetSize([40.0, 40.0, 30.0])
    assert not weak.has_lesion_markups(scene) and weak.has_lesion_markups(scene, points)
    assert {m.name: m.diameters_mm for m in weak.scene_lesion_marks(scene, points, 5.0)} == {"L1": [5.0], "L2": [5.0]}
    chosen = [_line(scene, centres["L1"], 8.0), _line(scene, centres["L2"], 11.0)]
    far = _line(scene, np.array(at((38, 8, 4))), 6.0)
    far.SetName("lone")
    rois = []
    for k, (ijk, size) in enumerate((((10, 30, 14), [10.0, 8.0, 6.0]), ((26, 20, 4), [5.0, 5.0, 5.0]))):
        roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", f"R{k + 1}")
        roi.SetCenter(list(lps_to_ras(np.array(at(ijk)))))
        roi.SetSize(size)
        rois.append(roi)
    weak.choose_lesion_markups(scene, chosen + [far] + rois)
    assert weak.has_lesion_markups(scene)
    marks = {m.name: m.diameters_mm for m in weak.scene_lesion_marks(scene, points)}
    assert marks == {"L1": [pytest.approx(8.0)], "L2": [pytest.approx(11.0)], "lone": [pytest.approx(6.0)],
                     "R1": pytest.approx([10.0, 8.0, 6.0]), "R2": pytest.approx([5.0, 5.0, 5.0])}
    assert ruler.GetAttribute(weak.LESION_MARKUP_ATTRIBUTE) is None and "Crop Volume ROI" not in marks
    assert [m.name for m in weak.scene_lesion_marks(scene)] == ["d", "d", "lone", "R1", "R2"]  # no points: own lesions
    node, ids = weak.add_sphere_segments(volume, weak.scene_lesion_marks(scene, points))
    assert len(ids) == 5 and node.GetSegmentation().GetNumberOfSegments() == 5
    weak.choose_lesion_markups(scene, rois[1:])                         # un-choosing removes the tag
    assert [m.name for m in weak.scene_lesion_marks(scene)] == ["R2"]
    assert chosen[0].GetAttribute(weak.LESION_MARKUP_ATTRIBUTE) is None
    rois[1].SetHideFromEditors(True)                                   # internal ROIs are left out
    assert not weak.has_lesion_markups(scene)


def test_unet_segment_with_the_bundled_model_and_an_isodose_from_a_dose_volume(scene):
    from slicercad.synth.weak_lesions import generate_weak_lesions

    lesion = generate_weak_lesions(1, 4, "liver_mri", diameter_range=(14.0, 16.0))[0]
    volume = sitk_to_volume_node(lesion.image, scene, name="MR")
    marks = weak.lesion_marks(_points(scene, lesion.center_lps), default_diameter_mm=lesion.diameter_mm)
    node, ids = weak.add_sphere_segments(volume, marks)
    node, unet_ids, messages = weak.segment_lesions(volume, marks, node)
    assert len(unet_ids) == 1 and "mL" in messages[0]
    assert node.GetSegmentation().GetNumberOfSegments() == 2
    pred = segment_to_label_array(node, unet_ids[0], volume)
    truth = sitk.GetArrayFromImage(lesion.mask)
    assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.6
    # a dose volume (as SlicerRT loads one) -> isodose segments, one per connected target
    dose = sitk.Cast(lesion.mask, sitk.sitkFloat32) * 30.0
    dose_node = sitk_to_volume_node(dose, scene, name="Dose")
    node, dose_ids, table, notes = weak.add_isodose_segments(volume, dose_node, 50.0, "% of prescription", 30.0,
                                                             node)
    assert len(dose_ids) == 1 and node.GetSegmentation().GetNumberOfSegments() == 3
    assert "values taken as Gy" in notes[0]                   # no SlicerRT unit attribute: said
    dose_node.SetAttribute(weak.DOSE_UNIT_ATTRIBUTE, "CGY")    # SlicerRT's unit is read: 30 cGy < 15 Gy
    with pytest.raises(InputError, match="reaches"):
        weak.add_isodose_segments(volume, dose_node, 15.0, "Gy", None, node)
    dose_node.SetAttribute(weak.DOSE_UNIT_ATTRIBUTE, "RELATIVE")
    assert weak.dose_node_units(dose_node)[0] == "RELATIVE"
    dose_node.SetAttribute(weak.DOSE_UNIT_ATTRIBUTE, "GY")
    _, gy_ids, _, notes = weak.add_isodose_segments(volume, dose_node, 15.0, "Gy", None, node)
    assert len(gy_ids) == 1 and notes == []
    assert table[0]["volume_mm3"] == pytest.approx(truth.sum() * np.prod(lesion.image.GetSpacing()), rel=0.05)
    with pytest.raises(InputError, match="empty"):
        weak.add_segment(np.zeros_like(truth), volume, node, "nothing", "sphere")


def test_isodose_from_an_rtdose_file_warns_on_another_frame_of_reference(scene, tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    from slicercad.dicom.write import write_series
    from SlicerCADLib.study import load_study
    from test_weak_rtdose import reference, write_rtdose

    write_series(reference(), tmp_path / "ct", modality="CT", series_number=3)
    load_study(scene, tmp_path / "ct")
    volume = next(n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if n.GetAttribute("SlicerCAD.files"))
    own = weak.volume_frame_of_reference(volume)
    path = write_rtdose(tmp_path / "dose.dcm")
    for frame, warned in ((own, False), (generate_uid(), True)):
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = frame
        ds.save_as(str(path))
        _, ids, _, notes = weak.add_isodose_segments(volume, str(path), 100.0, "% of prescription", 5.0)
        assert len(ids) == 2 and any("FrameOfReferenceUID" in n for n in notes) is warned
    assert own
