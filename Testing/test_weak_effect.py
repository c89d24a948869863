"""The Segment Editor effect "Lesion (click)" at the logic level, on real MRML (slicer-core) with Slicer's
Qt-free ``vtkSlicerSegmentEditorLogic``: the effect's entry point and the panel give voxel-identical masks
for the same click (masking off); editable area, overwrite and undo behave as the editor's logic says;
bad input changes nothing. The effect file itself needs Qt: ``check_slicer_api.py`` checks its
``scriptedEffect`` calls and ``test_slicer_load_imports.py`` its load-time imports."""
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))

from slicercad.errors import GeometryError, InputError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from SlicerCADLib.segmentations import label_array_to_segment, segment_to_label_array  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node  # noqa: E402
from WeakLabelSegmenterLib import effect_logic as fx  # noqa: E402
from WeakLabelSegmenterLib import logic as weak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unet():
    return fx.load_model()


@pytest.fixture(scope="module")
def lesion():
    from slicercad.synth.weak_lesions import generate_weak_lesions

    return generate_weak_lesions(1, 4, "liver_mri", diameter_range=(14.0, 16.0))[0]


def _setup(scene, lesion):
    volume = sitk_to_volume_node(lesion.image, scene, name="MR")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seg")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    sid = seg.GetSegmentation().AddEmptySegment("", "Lesion")
    logic = fx.editor_logic(scene, seg, volume, sid)
    return volume, seg, sid, logic, fx.EditorLogicTarget(logic)


def _prompt(lesion, **kw):
    return fx.ClickPrompt(tuple(lps_to_ras(lesion.center_lps)), lesion.diameter_mm, **kw)


def test_click_gives_the_panels_voxels_and_undo_restores(scene, lesion, unet):
    model, card = unet
    volume, seg, sid, logic, target = _setup(scene, lesion)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    points.AddControlPoint(list(lps_to_ras(lesion.center_lps)), "L1")
    marks = weak.lesion_marks(points, default_diameter_mm=lesion.diameter_mm)
    _node, ids, _ = weak.segment_lesions(volume, marks, seg, model=model, card=card)      # the panel's path
    panel = segment_to_label_array(seg, ids[0], volume)
    assert panel.sum() > 50
    seg.GetDisplayNode().SetSegmentVisibility(ids[0], False)   # masking off, nothing to overwrite that counts
    target.node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    assert target.node.GetMaskMode() == slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere

    click = fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    effect = segment_to_label_array(seg, sid, volume)
    np.testing.assert_array_equal(effect, panel)                 # voxel-identical
    assert click.written_voxels == int(panel.sum())
    assert logic.CanUndo()
    logic.Undo()
    assert segment_to_label_array(seg, sid, volume).sum() == 0   # Undo: back to the empty segment
    np.testing.assert_array_equal(segment_to_label_array(seg, ids[0], volume), panel)

    sphere = fx.click_to_segment(target, _prompt(lesion), "sphere")
    _n, sphere_ids = weak.add_sphere_segments(volume, marks, seg)
    np.testing.assert_array_equal(segment_to_label_array(seg, sid, volume),
                                  segment_to_label_array(seg, sphere_ids[0], volume))
    assert sphere.written_voxels > 0


def test_editable_area_and_overwrite_follow_the_editor(scene, lesion, unet):
    model, card = unet
    volume, seg, sid, logic, target = _setup(scene, lesion)
    reference = fx.compute_click(target.source_image(), _prompt(lesion), "unet", model, card)
    full = reference.labelmap
    # an "Other" segment: a small sphere at the centre (part of the lesion)
    from slicercad.weak.shapes import ellipsoid_label
    import SimpleITK as sitk

    small = sitk.GetArrayFromImage(ellipsoid_label(lesion.image, lesion.center_lps, [0.6 * lesion.diameter_mm]))
    _n, other = label_array_to_segment(small, volume, seg, "Other")
    truth_full = np.zeros_like(small)
    ext = full.GetExtent()
    truth_full[ext[4]:ext[5] + 1, ext[2]:ext[3] + 1, ext[0]:ext[1] + 1] = reference.mask

    # editable area "inside Other": only the intersection is written
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    target.node.SetMaskSegmentID(other)
    fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    np.testing.assert_array_equal(segment_to_label_array(seg, sid, volume), truth_full & small)
    logic.Undo()
    assert segment_to_label_array(seg, sid, volume).sum() == 0

    # editable area "outside all segments": the click itself is not editable -> message, no change
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    with pytest.raises(InputError, match="editable area"):
        fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    assert segment_to_label_array(seg, sid, volume).sum() == 0
    # ... and a result the editor's mask refuses entirely (editable only inside an empty segment) -> message,
    # no change, even when written past the click check
    empty = seg.GetSegmentation().AddEmptySegment("", "Empty")
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    target.node.SetMaskSegmentID(empty)
    with pytest.raises(InputError, match="nothing was written"):
        fx.commit(target, fx.compute_click(target.source_image(), _prompt(lesion), "unet", model, card))
    assert segment_to_label_array(seg, sid, volume).sum() == 0
    seg.GetSegmentation().RemoveSegment(empty)

    # overwrite: "all segments" takes the lesion's voxels from Other, "none" leaves Other alone
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere)
    target.node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    np.testing.assert_array_equal(segment_to_label_array(seg, other, volume), small)
    logic.Undo()
    target.node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
    fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    np.testing.assert_array_equal(segment_to_label_array(seg, other, volume), small & (1 - truth_full))
    np.testing.assert_array_equal(segment_to_label_array(seg, sid, volume), truth_full)
    logic.Undo()
    np.testing.assert_array_equal(segment_to_label_array(seg, other, volume), small)


def test_bad_clicks_change_nothing(scene, lesion, unet):
    model, card = unet
    volume, seg, sid, logic, target = _setup(scene, lesion)
    outside = fx.ClickPrompt((1e4, 1e4, 1e4), 10.0)
    with pytest.raises(GeometryError, match="outside the source volume"):
        fx.click_to_segment(target, outside, "unet", model, card)
    with pytest.raises(InputError, match="> 0 mm"):
        fx.click_to_segment(target, fx.ClickPrompt(_prompt(lesion).center_ras, 0.0), "unet", model, card)
    seg.GetDisplayNode().SetSegmentVisibility(sid, False)
    with pytest.raises(InputError, match="hidden"):
        fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    seg.GetDisplayNode().SetSegmentVisibility(sid, True)
    target.node.SetSelectedSegmentID("")
    with pytest.raises(InputError, match="no segment selected"):
        fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    target.node.SetSelectedSegmentID(sid)
    # the model returns nothing: a click in the background far from the lesion with a tiny size
    corner = lesion.image.TransformIndexToPhysicalPoint([2, 2, 2])
    with pytest.raises(InputError):
        fx.click_to_segment(target, fx.ClickPrompt(tuple(lps_to_ras(corner)), 3.0), "unet", model, card,
                            threshold=0.999999)
    assert not logic.CanUndo()                                     # nothing was saved, nothing written
    assert segment_to_label_array(seg, sid, volume).sum() == 0
    # coarse grid relative to the lesion -> a spacing warning with the label
    assert fx.spacing_warning(target.source_image(), 8.0) is not None
    assert fx.spacing_warning(target.source_image(), 40.0) is None


def test_preview_is_a_separate_node(scene, lesion):
    volume, seg, sid, logic, target = _setup(scene, lesion)
    click = fx.compute_click(target.source_image(), _prompt(lesion), "sphere")
    preview = fx.show_preview(scene, seg, click.labelmap)
    assert preview is not seg and preview.GetSegmentation().GetNumberOfSegments() == 1
    np.testing.assert_array_equal(segment_to_label_array(preview, "preview", volume).sum(), click.mask.sum())
    assert segment_to_label_array(seg, sid, volume).sum() == 0    # preview never touches the segmentation
    assert fx.show_preview(scene, seg, click.labelmap, preview) is preview


def test_effect_file_is_installed_and_registered():
    cmake = (ROOT / "WeakLabelSegmenter" / "CMakeLists.txt").read_text()
    assert "${MODULE_NAME}Effects/SegmentEditorLesionClickEffect.py" in cmake
    source = (ROOT / "WeakLabelSegmenter" / "WeakLabelSegmenterEffects" / "SegmentEditorLesionClickEffect.py").read_text()
    assert f'scriptedEffect.name = "{fx.EFFECT_NAME}"' in source
    module = (ROOT / "WeakLabelSegmenter" / "WeakLabelSegmenter.py").read_text()
    assert "startupCompleted()" in module and "SegmentEditorLesionClickEffect.py" in module
