"""Phase volumes of a scene (by the core phase assignment) and the side-by-side picture of all phases.

``phase_nodes_from_scene`` works for volumes loaded by ``SlicerCADLib.study.load_study`` and for
volumes loaded through Slicer's DICOM browser alike: tags come from ``tags_for_volume_node``, the
phases from ``slicercad.phases.assign_phases`` and one volume per phase from ``best_by_phase`` (for
DWI the highest b-value). Imports ``slicer`` but never Qt.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from slicercad.atomic import atomic_path
from slicercad.errors import DicomError, InputError
from slicercad.geometry import lps_to_ras
from slicercad.liver.phases import PHASE_TITLES, PHASES, hepatobiliary_agent_warning
from slicercad.phases import assign_phases, best_by_phase
from SlicerCADLib.dicom_nodes import tags_for_volume_node
from SlicerCADLib.render import lesion_fov_mm, render_slice_rgb

STRIP_GAP_PX = 4


POST_CONTRAST_PHASES = ("arterial", "portal", "transitional", "hepatobiliary")


def _volume_nodes(scene_or_nodes) -> list:
    if scene_or_nodes is None:
        raise InputError("a scene or a list of volume nodes is required", "scene_or_nodes")
    if hasattr(scene_or_nodes, "GetNodesByClass"):
        collection = scene_or_nodes.GetNodesByClass("vtkMRMLScalarVolumeNode")
        nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        return [n for n in nodes if not n.IsA("vtkMRMLLabelMapVolumeNode")]
    return [n for n in scene_or_nodes if n is not None]


def phase_nodes_from_scene(scene_or_nodes, protocol: str = "liver_mri") -> dict:
    """{phase: volume node} for the liver phases found among the scene's (or the given) volume nodes.

    Volumes without a DICOM source (e.g. computed overlays) are skipped; phases outside the liver
    vocabulary are left out. Raises DicomError when no volume has a DICOM source.
    """
    nodes = _volume_nodes(scene_or_nodes)
    tagged = {}
    for node in nodes:
        try:
            tagged[node.GetID()] = (node, tags_for_volume_node(node))
        except DicomError:
            continue
    if not tagged:
        raise DicomError(f"none of {len(nodes)} volume node(s) has a DICOM source to assign phases from",
                         "scene")
    assignments = assign_phases([(vid, tags) for vid, (_, tags) in tagged.items()], protocol)
    best = best_by_phase(assignments)
    return {phase: tagged[best[phase].volume_id][0] for phase in PHASES if phase in best}


def contrast_agent_warning(volume_nodes: dict) -> str | None:
    """The gadoxetate check on the agent of the selected post-contrast phases (None when it is gadoxetate)."""
    agents = []
    for phase in POST_CONTRAST_PHASES:
        node = volume_nodes.get(phase)
        if node is not None:
            try:
                agents.append(tags_for_volume_node(node).contrast_bolus_agent)
            except DicomError:
                continue  # not from DICOM (e.g. a volume the user computed): nothing to check
    return hepatobiliary_agent_warning(agents) if agents else None


def phase_strip_rgb(volume_nodes: dict, lesion, size_px: int = 192, orientation: str = "Axial") -> np.ndarray:
    """All phases side by side at the lesion: one ``size_px`` square slice per phase (canonical order),
    each centred on the lesion centre plus that phase's offset, uint8 RGB [rows, cols, 3]."""
    phases = [p for p in PHASES if volume_nodes.get(p) is not None]
    if not phases:
        raise InputError(f"no phase volume given; expected some of {list(PHASES)}", "volume_nodes")
    tiles = []
    for phase in phases:
        centre = lps_to_ras(lesion.center_lps() + lesion.offset_lps(phase))
        tile = render_slice_rgb(volume_nodes[phase], orientation=orientation, center_ras=centre,
                                size=(size_px, size_px), fov_mm=lesion_fov_mm(lesion.diameter_mm)).rgb
        tiles.append(tile)
        tiles.append(np.zeros((size_px, STRIP_GAP_PX, 3), np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def phase_strip_png(path, volume_nodes: dict, lesion, size_px: int = 192, orientation: str = "Axial") -> Path:
    """Write ``phase_strip_rgb`` atomically as a PNG; returns the path. Tile order: ``strip_titles``."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError("the phase strip must be written to a .png file", str(path))
    rgb = phase_strip_rgb(volume_nodes, lesion, size_px, orientation)
    with atomic_path(path) as tmp:
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp))
    return path


def strip_titles(volume_nodes: dict) -> list:
    """Titles of the strip's tiles, left to right."""
    return [PHASE_TITLES[p] for p in PHASES if volume_nodes.get(p) is not None]
