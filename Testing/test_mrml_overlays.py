"""Float map -> foreground overlay node on every slice composite node, with built-in colour tables."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.errors import InputError
from SlicerCADLib.overlays import hide_overlay, show_float_overlay
from SlicerCADLib.volumes import sitk_to_volume_node


def test_overlay_is_foreground_everywhere_and_updates_in_place(scene, oblique_image):
    reference = sitk_to_volume_node(oblique_image(), scene, name="T1")
    composites = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(2)]
    heat = np.linspace(0.0, 2.0, 12 * 16 * 20, dtype=np.float32).reshape(12, 16, 20)
    node = show_float_overlay(heat, reference, "GradCAM", colormap="Iron", opacity=0.4)
    for composite in composites:
        assert composite.GetForegroundVolumeID() == node.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.4)
        assert composite.GetBackgroundVolumeID() == reference.GetID()
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetName() == "Iron"
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 2.0))
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.1)
    np.testing.assert_allclose(node.GetSpacing(), reference.GetSpacing())
    again = show_float_overlay(heat * 3, reference, "GradCAM", window=(1.0, 4.0))
    assert again is node
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((1.0, 4.0))
    other = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    other.SetForegroundVolumeID(reference.GetID())
    hide_overlay(node)                                   # a stale map leaves every view; other layers stay
    assert all(c.GetForegroundVolumeID() is None for c in composites)
    assert other.GetForegroundVolumeID() == reference.GetID() and composites[0].GetBackgroundVolumeID()


def test_sitk_overlay_keeps_its_own_geometry(scene, oblique_image):
    reference = sitk_to_volume_node(oblique_image(), scene)
    coarse = sitk.Shrink(oblique_image(), [2, 2, 2])
    node = show_float_overlay(coarse, reference, "coarse")
    np.testing.assert_allclose(node.GetSpacing(), coarse.GetSpacing())


def test_colour_table_fallback_and_errors(scene, oblique_image):
    reference = sitk_to_volume_node(oblique_image(), scene)
    heat = np.ones((12, 16, 20), np.float32)
    with pytest.warns(UserWarning, match="PET-Heat"):
        node = show_float_overlay(heat, reference, "viridis map", colormap="Viridis")
    assert node.GetDisplayNode().GetColorNode().GetName() == "PET-Heat"
    with pytest.raises(InputError, match="NoSuchTable"):
        show_float_overlay(heat, reference, "x", colormap="NoSuchTable")
    with pytest.raises(InputError, match="reference grid"):
        show_float_overlay(heat[:, :, :3], reference, "x")
    heat[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        show_float_overlay(heat, reference, "x")
