"""Markups and segments -> lesion centres (LPS, mm) and diameters (mm); markups JSON files.

Matching rule for ``lesions_from_markups``: a line's distance to a centre is the smallest of the
distances from that centre to the line's midpoint and to its two endpoints. Each line goes to its
nearest centre when that distance is at most the line's length; a centre given several lines keeps
the longest (the longest diameter, as RECIST measures). A line near no centre is a lesion of its
own, centred on its midpoint and named after the line. Points and lines whose position is not yet
defined (placement in progress) are left out. Positions are world coordinates (parent transforms
applied). ``scene_line_nodes`` gives every line of a scene, so each lesion can have its own line;
``scene_roi_nodes`` every ROI box (each one a lesion of its own where a module accepts ROIs).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import slicer

from slicercad.atomic import atomic_path
from slicercad.errors import InputError
from slicercad.geometry import ras_to_lps

from .app import ensure_scene, module_logic
from .segmentations import segment_to_label_array
from .volumes import reference_image

# a control point placed, moved or renamed, or deleted: what a view of the lesions must follow
POINT_EVENTS = (slicer.vtkMRMLMarkupsNode.PointAddedEvent, slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                slicer.vtkMRMLMarkupsNode.PointRemovedEvent)


@dataclasses.dataclass
class LesionMark:
    """A lesion marked by the reader: centre in LPS millimetres, diameter in mm (None if unmeasured)."""

    name: str
    center_lps: np.ndarray
    diameter_mm: float | None


def _world_point(node, index: int) -> np.ndarray:
    point = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(index, point)
    return np.array(point, dtype=float)


def _defined(node, index: int) -> bool:
    return node.GetNthControlPointPositionStatus(index) == slicer.vtkMRMLMarkupsNode.PositionDefined


def _line_nodes(lines_node) -> list:
    if lines_node is None:
        return []
    nodes = list(lines_node) if isinstance(lines_node, (list, tuple)) else [lines_node]
    for node in nodes:
        if node is None or not node.IsA("vtkMRMLMarkupsLineNode"):
            raise InputError(f"expected markups line node(s), got {getattr(node, 'GetClassName', type(node).__name__)}",
                             "lines_node")
    return nodes


def _scene_nodes(scene, class_name: str) -> list:
    """Every ``class_name`` node of ``scene`` that editors show (internal, hidden nodes left out)."""
    if scene is None:
        return []
    nodes = scene.GetNodesByClass(class_name)
    return [node for node in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems()))
            if not node.GetHideFromEditors()]


def scene_line_nodes(scene) -> list:
    """Every markups line node of ``scene`` that editors show (internal, hidden lines left out)."""
    return _scene_nodes(scene, "vtkMRMLMarkupsLineNode")


def scene_roi_nodes(scene) -> list:
    """Every markups ROI node of ``scene`` that editors show (internal, hidden ROIs left out)."""
    return _scene_nodes(scene, "vtkMRMLMarkupsROINode")


def _placed(node) -> bool:
    return node.GetNumberOfControlPoints() >= 2 and _defined(node, 0) and _defined(node, 1)


def _line_geometry(node) -> tuple[np.ndarray, np.ndarray, float]:
    """Endpoints (LPS) and length of a placed line node; InputError when of zero length."""
    name = node.GetName()
    p0, p1 = ras_to_lps(_world_point(node, 0)), ras_to_lps(_world_point(node, 1))
    length = float(np.linalg.norm(p1 - p0))
    if length <= 0.0:
        raise InputError(f"line length must be > 0 mm, got {length:g} mm", name)
    return p0, p1, length


def lesions_from_markups(points_node, lines_node=None) -> list[LesionMark]:
    """Lesions from a fiducial node (centres) and line node(s) (diameters); see the module docstring."""
    lesions: list[LesionMark] = []
    if points_node is not None:
        if not points_node.IsA("vtkMRMLMarkupsNode"):
            raise InputError(f"expected a markups node, got {points_node.GetClassName()}", "points_node")
        for i in range(points_node.GetNumberOfControlPoints()):
            if _defined(points_node, i):
                label = points_node.GetNthControlPointLabel(i) or f"{points_node.GetName()}-{i + 1}"
                lesions.append(LesionMark(label, ras_to_lps(_world_point(points_node, i)), None))
    centres = np.array([lesion.center_lps for lesion in lesions]).reshape(-1, 3)
    own: list[LesionMark] = []
    for line in filter(_placed, _line_nodes(lines_node)):
        p0, p1, length = _line_geometry(line)
        if len(centres):
            dists = np.min([np.linalg.norm(centres - p, axis=1) for p in (p0, p1, (p0 + p1) / 2)], axis=0)
            nearest = int(np.argmin(dists))
            if dists[nearest] <= length:
                current = lesions[nearest].diameter_mm
                lesions[nearest].diameter_mm = max(length, current or 0.0)
                continue
        own.append(LesionMark(line.GetName(), (p0 + p1) / 2, length))
    return lesions + own


def lesion_from_segment(segmentation_node, segment_id: str, reference_volume_node) -> LesionMark:
    """Centroid (LPS) and equivalent-sphere diameter (mm) of a segment on the reference grid."""
    mask = segment_to_label_array(segmentation_node, segment_id, reference_volume_node)
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    name = segment.GetName() or segment_id
    count = int(mask.sum())
    if count == 0:
        raise InputError("segment is empty on the reference grid; size must be > 0", name)
    grid = reference_image(reference_volume_node)
    kji = np.argwhere(mask > 0).mean(axis=0)
    center = np.array(grid.TransformContinuousIndexToPhysicalPoint(kji[::-1].tolist()))
    volume_mm3 = count * float(np.prod(grid.GetSpacing()))
    return LesionMark(name, center, float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)))


def save_markups_json(node, path, coordinate_system: str = "LPS") -> Path:
    """Write ``node`` as a Slicer ``.mrk.json`` (its ``coordinateSystem`` field says which) atomically."""
    system = coordinate_system.upper()
    if system not in ("LPS", "RAS"):
        raise InputError(f"coordinate_system must be LPS or RAS, got {coordinate_system!r}", str(path))
    scene = ensure_scene(node.GetScene())
    storage = scene.AddNewNodeByClass("vtkMRMLMarkupsJsonStorageNode")
    try:
        storage.SetCoordinateSystem(getattr(slicer.vtkMRMLStorageNode, f"CoordinateSystem{system}"))
        with atomic_path(path) as tmp:
            storage.SetFileName(str(tmp))
            if not storage.WriteData(node):
                raise InputError("markups storage node could not write the file", str(path))
    finally:
        scene.RemoveNode(storage)
    return Path(path)


def load_markups_json(path, scene=None) -> list:
    """Markups nodes read from a ``.mrk.json`` file through Slicer's markups logic."""
    path = Path(path)
    if not path.is_file():
        raise InputError("markups file not found", str(path))
    scene = ensure_scene(scene)
    logic = module_logic("Markups", scene)
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    node_id = logic.LoadMarkups(str(path), path.name.split(".")[0])
    if not node_id:
        raise InputError("not a readable Slicer markups JSON file", str(path))
    return [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())
            if scene.GetNthNode(i).GetID() not in before and scene.GetNthNode(i).IsA("vtkMRMLMarkupsNode")]
