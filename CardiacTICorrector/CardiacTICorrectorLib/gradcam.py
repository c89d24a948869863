"""Grad-CAM of the chosen scout frame as a foreground overlay on that frame (MRML <-> core).

Imports slicer, never qt; torch only through ``slicercad.ti.cam`` with the model the caller passes in
(after ``ensure_dependencies``). The map is computed by ``slicercad.ti.cam.frame_cam`` and shown with
``SlicerCADLib.overlays.show_float_overlay`` on the frame's geometry. The background is the sequence
browser's proxy node (the displayed frame) when the Sequences module made one, else a volume node of
the chosen frame added to the scene (slicer-core, batch scripts)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from slicercad.errors import InputError
from SlicerCADLib.app import ensure_scene
from SlicerCADLib.overlays import show_float_overlay
from SlicerCADLib.volumes import sitk_to_volume_node, volume_node_to_sitk

CAM_OVERLAY = "TI Grad-CAM"
FRAME_ATTRIBUTE = "SlicerCAD.TIScoutFrame"   # marks the frame node made when there is no proxy node


def _frame_node(scene, seq, item: int, browser=None):
    """The node showing item ``item``: the browser's proxy (set to that item), else a frame node."""
    if browser is not None:
        browser.SetSelectedItemNumber(item)
        proxy = browser.GetProxyNode(seq)
        if proxy is not None:
            return proxy
    image = volume_node_to_sitk(seq.GetNthDataNode(item))
    name = f"{seq.GetName()} frame"
    nodes = scene.GetNodesByClassByName("vtkMRMLScalarVolumeNode", name)
    existing = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
                if nodes.GetItemAsObject(i).GetAttribute(FRAME_ATTRIBUTE) == seq.GetID()]
    node = sitk_to_volume_node(image, scene, name=name, node=existing[0] if existing else None)
    node.SetAttribute(FRAME_ATTRIBUTE, seq.GetID())
    return node


def show_frame_cam(scene, seq, model, card, item: int, browser=None, opacity: float = 0.5) -> dict:
    """Grad-CAM of sequence item ``item`` (the browser's selected item number) for the class the model
    predicts, as the foreground of every slice view. Returns {node, frame_node, cam, category, probability,
    ti_ms}."""
    from slicercad.ti.cam import frame_cam

    scene = ensure_scene(scene)
    if model is None or card is None:
        raise InputError("Grad-CAM needs the CNN: enable 'Use CNN' and load its model", "model")
    n = seq.GetNumberOfDataNodes()
    if not 0 <= int(item) < n:
        raise InputError(f"frame {item} is not in the scout (0..{n - 1})", seq.GetName())
    item = int(item)
    frame_node = _frame_node(scene, seq, item, browser)
    image = volume_node_to_sitk(seq.GetNthDataNode(item))
    frame = sitk.GetArrayFromImage(image)
    if frame.shape[0] != 1:
        raise InputError(f"frame {item} has {frame.shape[0]} slices; one expected", seq.GetName())
    cam, cls, proba = frame_cam(model, card, frame[0].astype(np.float32))
    overlay = sitk.GetImageFromArray(cam[None].astype(np.float32))
    overlay.CopyInformation(image)
    node = show_float_overlay(overlay, frame_node, CAM_OVERLAY, colormap="PET-Heat", opacity=opacity,
                              window=(0.0, 1.0))
    return {"node": node, "frame_node": frame_node, "cam": cam, "category": list(card["classes"])[cls],
            "probability": float(proba[cls]), "ti_ms": float(seq.GetNthIndexValue(item))}
