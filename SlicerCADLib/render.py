"""Render a slice view to RGB / PNG with Slicer's own ``vtkMRMLSliceLogic`` (no OpenGL).

The slice logic works on a private ``vtkMRMLScene`` holding views of the layers (voxels shared, world
geometry, copies of the display and colour nodes): the caller's scene gains no node, so Slicer's layout
manager never builds a slice widget for a render.
Layers as in a Slicer slice view: background volume, coloured foreground (e.g. a heat map at
``foreground_opacity``), segments exported to a labelmap layer drawn as outlines. Markups are then
drawn with numpy: each control point within half a background slice spacing of the plane gets a
ring, and a line whose both endpoints are near the plane gets a segment, in the markup's colour.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkStringArray
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from slicercad.atomic import atomic_path
from slicercad.errors import InputError

from .volumes import world_ijk_to_ras

ORIENTATIONS = ("Axial", "Sagittal", "Coronal")
RING_RADIUS_PX = 6.0


@dataclasses.dataclass
class SliceImage:
    """A rendered slice: ``rgb`` [row, col, 3] uint8 (row 0 at the top) and its XY -> RAS matrix."""

    rgb: np.ndarray
    xy_to_ras: np.ndarray

    def pixel_of(self, ras) -> tuple[float, float, float]:
        """(row, col, distance from the plane in mm) of a RAS point."""
        xyz = (np.linalg.inv(self.xy_to_ras) @ [*np.asarray(ras, dtype=float), 1.0])[:3]
        normal = self.xy_to_ras[:3, 2]
        distance = float(np.dot(np.asarray(ras, dtype=float) - self.xy_to_ras[:3, 3], normal / np.linalg.norm(normal)))
        return self.rgb.shape[0] - 1 - xyz[1], xyz[0], abs(distance)


def _matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _copy_node(private, node):
    """A copy of ``node`` added to ``private`` (its class need not be registered there)."""
    copy = node.CreateNodeInstance()
    copy.Copy(node)
    return private.AddNode(copy)


def _private_volume(private, node):
    """``node`` in ``private``: same voxels (shared), world geometry, copied display and colour nodes."""
    view = private.AddNewNodeByClass(node.GetClassName(), node.GetName())
    view.SetAndObserveImageData(node.GetImageData())
    matrix = vtkMatrix4x4()
    matrix.DeepCopy(world_ijk_to_ras(node).ravel().tolist())
    view.SetIJKToRASMatrix(matrix)
    source = node.GetDisplayNode()
    if source is not None:
        display = _copy_node(private, source)
        if source.GetColorNode() is not None:
            display.SetAndObserveColorNodeID(_copy_node(private, source.GetColorNode()).GetID())
        view.SetAndObserveDisplayNodeID(display.GetID())
    return view


def _segment_labelmap(private, segmentation, reference):
    """Visible segments as a labelmap node in ``private`` on the background grid, coloured like the segments."""
    segment_ids = vtkStringArray()
    display = segmentation.GetDisplayNode()
    seg = segmentation.GetSegmentation()
    for i in range(seg.GetNumberOfSegments()):
        segment_id = seg.GetNthSegmentID(i)
        if display is None or display.GetSegmentVisibility(segment_id):
            segment_ids.InsertNextValue(segment_id)
    colors = private.AddNewNodeByClass("vtkMRMLColorTableNode", "segments")
    colors.SetTypeToUser()  # filled from the segments (a colour table in the caller's scene otherwise)
    colors.SetNumberOfColors(1)
    colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    display = private.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
    display.SetAndObserveColorNodeID(colors.GetID())
    labelmap = private.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "segments")
    labelmap.SetAndObserveDisplayNodeID(display.GetID())
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation, segment_ids, labelmap, reference):
        raise InputError("segments could not be exported onto the background grid", segmentation.GetName())
    return labelmap


def _draw_ring(rgb, row, col, color, radius=RING_RADIUS_PX, width=1.5):
    rows, cols = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
    ring = np.abs(np.hypot(rows - row, cols - col) - radius) <= width / 2
    rgb[ring] = color


def _draw_segment(rgb, a, b, color):
    steps = int(np.ceil(np.hypot(b[0] - a[0], b[1] - a[1]))) + 1
    for t in np.linspace(0.0, 1.0, steps):
        r, c = int(round(a[0] + t * (b[0] - a[0]))), int(round(a[1] + t * (b[1] - a[1])))
        if 0 <= r < rgb.shape[0] and 0 <= c < rgb.shape[1]:
            rgb[r, c] = color


def _draw_markups(image: SliceImage, markups, tolerance_mm: float) -> None:
    nodes = [] if markups is None else list(markups) if isinstance(markups, (list, tuple)) else [markups]
    for node in nodes:
        if node is None or not node.IsA("vtkMRMLMarkupsNode"):
            raise InputError("markups must be markups node(s)", getattr(node, "GetName", lambda: "markups")())
        display = node.GetDisplayNode()
        color = np.round(np.array(display.GetSelectedColor() if display else (1.0, 0.5, 0.5)) * 255).astype(np.uint8)
        near = []
        for i in range(node.GetNumberOfControlPoints()):
            ras = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(i, ras)
            row, col, distance = image.pixel_of(ras)
            if distance <= tolerance_mm:
                _draw_ring(image.rgb, row, col, color)
                near.append((row, col))
        if node.IsA("vtkMRMLMarkupsLineNode") and len(near) == 2:
            _draw_segment(image.rgb, near[0], near[1], color)


def lesion_fov_mm(diameter_mm: float, factor: float = 4.0, minimum_mm: float = 60.0) -> float:
    """Field of view that shows a lesion with its surroundings: ``factor`` diameters, at least ``minimum_mm``."""
    return max(float(minimum_mm), float(factor) * float(diameter_mm))


def render_slice_rgb(background, foreground=None, foreground_opacity=0.5, segmentation=None, markups=None,
                     orientation="Axial", center_ras=None, size=(384, 384), fov_mm=None) -> SliceImage:
    """Render one slice through ``background`` (its centre, or ``center_ras``) as an RGB array.

    ``orientation``: 'Axial', 'Sagittal' or 'Coronal' (RAS planes; oblique volumes are resliced).
    ``size``: (width, height) in pixels; the field of view fits the background volume, or is ``fov_mm``
    wide (zoom on a lesion; the height follows the aspect ratio). A layer under a non-linear transform
    raises GeometryError (harden it first).
    """
    if background is None or background.GetImageData() is None:
        raise InputError("a background volume node with image data is required", "background")
    if orientation not in ORIENTATIONS:
        raise InputError(f"orientation must be one of {ORIENTATIONS}", str(orientation))
    if not 0.0 <= float(foreground_opacity) <= 1.0:
        raise InputError(f"foreground_opacity must be in [0, 1], got {foreground_opacity}", "foreground_opacity")
    width, height = (int(v) for v in size)
    if width < 8 or height < 8:
        raise InputError(f"size must be at least 8x8 pixels, got {size}", "size")
    if fov_mm is not None and not (np.isfinite(fov_mm) and fov_mm > 0):
        raise InputError(f"fov_mm must be a positive number of mm, got {fov_mm!r}", "fov_mm")
    private = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(private, True)
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(private)
    try:
        view = _private_volume(private, background)
        slice_node = logic.AddSliceNode("SlicerCADRender")
        composite = logic.GetSliceCompositeNode()
        slice_node.SetOrientation(orientation)
        slice_node.SetDimensions(width, height, 1)
        composite.SetBackgroundVolumeID(view.GetID())
        if foreground is not None:
            composite.SetForegroundVolumeID(_private_volume(private, foreground).GetID())
            composite.SetForegroundOpacity(float(foreground_opacity))
        if segmentation is not None:
            composite.SetLabelVolumeID(_segment_labelmap(private, segmentation, background).GetID())
            composite.SetLabelOpacity(1.0)
            slice_node.SetUseLabelOutline(True)
        logic.FitSliceToVolume(view, width, height)
        if fov_mm is not None:
            slice_node.SetFieldOfView(float(fov_mm), float(fov_mm) * height / width, slice_node.GetFieldOfView()[2])
        if center_ras is not None:
            slice_node.JumpSliceByCentering(*(float(v) for v in center_ras))
        slice_node.UpdateMatrices()
        connection = logic.GetImageDataConnection()
        producer = connection.GetProducer()
        producer.Update()
        data = producer.GetOutputDataObject(connection.GetIndex())
        rgba = vtk_to_numpy(data.GetPointData().GetScalars()).reshape(height, width, -1)
        image = SliceImage(np.ascontiguousarray(rgba[::-1, :, :3]), _matrix(slice_node.GetXYToRAS()))
        spacing = logic.GetLowestVolumeSliceSpacing()[2]
        _draw_markups(image, markups, max(0.5, spacing / 2.0))
        return image
    finally:
        logic.SetMRMLScene(None)
        private.Clear(1)


def render_slice_png(path, background, foreground=None, foreground_opacity=0.5, segmentation=None,
                     markups=None, orientation="Axial", center_ras=None, size=(384, 384), fov_mm=None) -> Path:
    """Render a slice (see ``render_slice_rgb``) and write it atomically as an RGB PNG."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError("slice render must be written to a .png file", str(path))
    image = render_slice_rgb(background, foreground, foreground_opacity, segmentation, markups,
                             orientation, center_ras, size, fov_mm)
    with atomic_path(path) as tmp:
        sitk.WriteImage(sitk.GetImageFromArray(image.rgb, isVector=True), str(tmp))
    return path
