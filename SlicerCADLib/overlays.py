"""A float map (attention, Grad-CAM, probability) shown as a coloured, semi-transparent foreground."""
from __future__ import annotations

import warnings

import numpy as np
import SimpleITK as sitk

from slicercad.errors import InputError

from .app import ensure_scene
from .volumes import reference_image, sitk_to_volume_node

OVERLAY_ATTRIBUTE = "SlicerCAD.overlay"
# Colour tables read from Slicer's share folder: present inside Slicer, absent with slicer-core alone.
FILE_BASED_COLORMAPS = ("Inferno", "Viridis", "Magma", "Plasma", "Cividis", "ColdToHotRainbow", "HotToColdRainbow")
FALLBACK_COLORMAP = "PET-Heat"


def color_node(scene, colormap: str):
    """The colour node named ``colormap``; a file-based table missing here falls back to PET-Heat."""
    nodes = scene.GetNodesByClass("vtkMRMLColorNode")
    by_name = {nodes.GetItemAsObject(i).GetName(): nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())}
    if colormap in by_name:
        return by_name[colormap]
    if colormap in FILE_BASED_COLORMAPS:
        warnings.warn(f"colour table {colormap!r} needs Slicer's share folder; using {FALLBACK_COLORMAP}",
                      stacklevel=3)
        return by_name[FALLBACK_COLORMAP]
    raise InputError(f"unknown colour table; available: {sorted(by_name)}", colormap)


def _as_image(image_or_array, reference_volume_node, name: str) -> sitk.Image:
    if isinstance(image_or_array, sitk.Image):
        image = image_or_array
    else:
        array = np.asarray(image_or_array, dtype=np.float32)
        grid = reference_image(reference_volume_node)
        expected = grid.GetSize()[::-1]
        if array.shape != expected:
            raise InputError(f"overlay array shape {array.shape} does not match the reference grid {expected}"
                             " (k, j, i)", name)
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(grid)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("an overlay must be a single-component image", name)
    return sitk.Cast(image, sitk.sitkFloat32)


def _existing_overlay(scene, name: str):
    nodes = scene.GetNodesByClassByName("vtkMRMLScalarVolumeNode", name)
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetAttribute(OVERLAY_ATTRIBUTE) == "1":
            return node
    return None


def show_float_overlay(image_or_array, reference_volume_node, name: str, colormap: str = "PET-Heat",
                       opacity: float = 0.5, window=None, threshold=None):
    """Show a float map as the foreground layer of every slice view; returns its volume node.

    ``image_or_array``: a SimpleITK image (own geometry) or an array [k, j, i] on the reference grid.
    ``window``: (low, high) mapped onto the colour table, default the map's min/max. Values below
    ``threshold`` (default: 5% of the window above ``low``) are transparent, so only the map's
    hot part colours the background.
    Calling again with the same ``name`` updates that overlay node in place.
    """
    if reference_volume_node is None:
        raise InputError("a reference volume node is required", name)
    if not 0.0 <= float(opacity) <= 1.0:
        raise InputError(f"opacity must be in [0, 1], got {opacity}", name)
    image = _as_image(image_or_array, reference_volume_node, name)
    values = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(values)):
        raise InputError("overlay contains NaN or infinite values", name)
    low, high = (float(values.min()), float(values.max())) if window is None else map(float, window)
    if not high > low:
        high = low + 1.0
    scene = ensure_scene(reference_volume_node.GetScene())
    node = sitk_to_volume_node(image, scene, name=name, node=_existing_overlay(scene, name))
    node.SetAttribute(OVERLAY_ATTRIBUTE, "1")
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(color_node(scene, colormap).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(low, high)
    display.AutoThresholdOff()
    display.SetApplyThreshold(1)
    lower = low + 0.05 * (high - low) if threshold is None else float(threshold)
    display.SetThreshold(lower, max(high, float(values.max())))
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        composite = composites.GetItemAsObject(i)
        if not composite.GetBackgroundVolumeID():
            composite.SetBackgroundVolumeID(reference_volume_node.GetID())
        composite.SetForegroundVolumeID(node.GetID())
        composite.SetForegroundOpacity(float(opacity))
    return node


def hide_overlay(node) -> None:
    """Take ``node`` off the foreground of every slice view showing it (a stale map must not stay on screen)."""
    if node is None or node.GetScene() is None:
        return
    composites = node.GetScene().GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        composite = composites.GetItemAsObject(i)
        if composite.GetForegroundVolumeID() == node.GetID():
            composite.SetForegroundVolumeID(None)
