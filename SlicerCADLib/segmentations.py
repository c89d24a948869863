"""Segmentation node <-> binary label array [k, j, i] on the voxel grid of a reference volume."""
from __future__ import annotations

import numpy as np
import slicer
import slicer.util
from vtkmodules.vtkCommonCore import vtkStringArray

from slicercad.errors import InputError

from .app import ensure_scene, module_logic


def _temporary_labelmap(reference_volume_node, name: str):
    """A labelmap volume node with the reference's geometry (world position included)."""
    if reference_volume_node is None or reference_volume_node.GetImageData() is None:
        raise InputError("a reference volume node with image data is required", name)
    scene = ensure_scene(reference_volume_node.GetScene())
    volumes = module_logic("Volumes", scene)
    labelmap = volumes.CreateAndAddLabelVolume(scene, reference_volume_node, name)
    labelmap.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
    return scene, labelmap


def _segment_ids(segment_id: str) -> vtkStringArray:
    ids = vtkStringArray()
    ids.InsertNextValue(segment_id)
    return ids


def segment_to_label_array(segmentation_node, segment_id: str, reference_volume_node) -> np.ndarray:
    """Segment ``segment_id`` as a uint8 array (1 inside, 0 outside) shaped like the reference [k, j, i]."""
    if segmentation_node is None or segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(f"segment {segment_id!r} not found",
                         segmentation_node.GetName() if segmentation_node is not None else "segmentation")
    scene, labelmap = _temporary_labelmap(reference_volume_node, "__SlicerCAD_export__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, _segment_ids(segment_id), labelmap, reference_volume_node)
        if not ok:
            raise InputError("export to the reference grid failed", f"{segmentation_node.GetName()}/{segment_id}")
        return (np.asarray(slicer.util.arrayFromVolume(labelmap)) > 0).astype(np.uint8)
    finally:
        scene.RemoveNode(labelmap)


def label_array_to_segment(array, reference_volume_node, segmentation_node=None, name: str = "Lesion",
                           color=(1.0, 0.0, 0.0)):
    """Add the non-zero voxels of ``array`` [k, j, i] (reference grid) as a new segment.

    Creates a segmentation node (geometry from the reference) when none is given.
    Returns ``(segmentation_node, segment_id)``.
    """
    mask = np.asarray(array)
    if reference_volume_node is None or reference_volume_node.GetImageData() is None:
        raise InputError("a reference volume node with image data is required", name)
    expected = tuple(reversed(reference_volume_node.GetImageData().GetDimensions()))
    if mask.shape != expected:
        raise InputError(f"label array shape {mask.shape} does not match the reference grid {expected} (k, j, i)",
                         name)
    if len(color) != 3 or not all(0.0 <= float(c) <= 1.0 for c in color):
        raise InputError(f"color must be three values in [0, 1], got {tuple(color)}", name)
    scene, labelmap = _temporary_labelmap(reference_volume_node, "__SlicerCAD_import__")
    try:
        if segmentation_node is None:
            segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
            segmentation_node.CreateDefaultDisplayNodes()
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", name, [float(c) for c in color])
        slicer.util.updateVolumeFromArray(labelmap, (mask > 0).astype(np.uint8))
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap, segmentation_node, _segment_ids(segment_id))
        if not ok:
            segmentation_node.GetSegmentation().RemoveSegment(segment_id)
            raise InputError("import of the label array failed", f"{segmentation_node.GetName()}/{name}")
    finally:
        scene.RemoveNode(labelmap)
    return segmentation_node, segment_id


def segment_tag(segment, name: str) -> str:
    """A segment tag's value ("" when unset)."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else ""
