"""Sequences: a stack of 2D frames as a vtkMRMLSequenceNode of one-slice volumes indexed by a value
(e.g. TI in ms), browsed by a vtkMRMLSequenceBrowserNode. Imports slicer, never qt."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer

from slicercad.errors import InputError

from .app import ensure_scene
from .volumes import sitk_to_volume_node, volume_node_to_sitk


def frames_to_sequence(frames, values, reference: sitk.Image | None = None, name: str = "Sequence",
                       index_name: str = "TI", index_unit: str = "ms", scene=None, spacing_mm=None):
    """(sequence node, browser node) of ``frames`` [n, rows, cols] at index ``values`` (distinct as
    written, ``%g``: duplicates are an InputError); geometry from ``reference`` (a one-slice image) or
    ``spacing_mm`` (row, col) at the origin."""
    scene = ensure_scene(scene)
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) != len(values):
        raise InputError(f"frames {frames.shape} and {len(values)} index values do not match", name)
    keys = [f"{float(v):g}" for v in values]
    dupes = sorted({k for k in keys if keys.count(k) > 1}, key=float)
    if dupes:   # SetDataNodeAtValue would replace the earlier item: a frame silently lost
        raise InputError(f"index values {', '.join(dupes)} occur more than once; each item needs its own value",
                         name)
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    seq.SetIndexName(index_name)
    seq.SetIndexUnit(index_unit)
    seq.SetIndexType(seq.NumericIndex)
    temp = None
    for frame, value in zip(frames, values):
        img = sitk.GetImageFromArray(frame[None].astype(np.float32))
        if reference is not None:
            img.CopyInformation(reference) if reference.GetSize() == img.GetSize() else None
        elif spacing_mm:
            img.SetSpacing((float(spacing_mm[1]), float(spacing_mm[0]), 1.0))
        temp = sitk_to_volume_node(img, scene, f"{name} {value:g}", temp)
        seq.SetDataNodeAtValue(temp, f"{float(value):g}")
    scene.RemoveNode(temp)
    if not scene.IsNodeClassRegistered("vtkMRMLSequenceBrowserNode"):   # slicer-core without the Sequences module
        scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(seq.GetID())
    browser.SetSelectedItemNumber(0)
    return seq, browser


def sequence_to_frames(seq) -> tuple[np.ndarray, np.ndarray, sitk.Image]:
    """(frames [n, rows, cols] float32, index values, one-slice image of item 0) of a volume sequence."""
    n = seq.GetNumberOfDataNodes()
    if n == 0:
        raise InputError("the sequence holds no frames", seq.GetName())
    frames, values, first = [], [], None
    for i in range(n):
        node = seq.GetNthDataNode(i)
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"item {i} is not a scalar volume", seq.GetName())
        image = volume_node_to_sitk(node)
        first = first or image
        arr = sitk.GetArrayFromImage(image)
        if arr.shape[0] != 1:
            raise InputError(f"item {i} has {arr.shape[0]} slices; one per frame expected", seq.GetName())
        frames.append(arr[0].astype(np.float32))
        try:
            values.append(float(seq.GetNthIndexValue(i)))
        except ValueError:
            raise InputError(f"index value {seq.GetNthIndexValue(i)!r} of item {i} is not a number",
                             seq.GetName()) from None
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputError(f"frames differ in size {sorted(shapes)}", seq.GetName())
    return np.stack(frames), np.asarray(values), first
