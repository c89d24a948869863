"""The Qt-free half of the Segment Editor effect "Lesion (click)": a click (centre, size, correction
clicks; world RAS) on the source volume *as the editor aligns it to the segmentation* -> a labelmap
written into the selected segment through the editor's own ``ModifySegmentByLabelmap`` (editable area,
editable intensity range and overwrite settings) after ``SaveStateForUndo`` -- and only when that masked
write would change the segment (a refused write leaves no undo step).

No algorithm lives here: the label comes from ``logic.lesion_label``, the call the panel and batch mode
make, so the same click gives the same voxels on the same grid (``Testing/test_weak_effect.py``). Only a
box around the click is handed to the core (it covers the whole canonical crop plus an interpolation
margin, so the result is identical to running on the full volume, and much faster on a large CT).

Two editor targets share one interface (``node``, ``source_image()``, ``save_state()``, ``modify()``):
``EditorLogicTarget`` wraps Slicer's ``vtkSlicerSegmentEditorLogic`` (slicer-core, batch scripts, tests);
the effect wraps ``scriptedEffect`` (whose ``modifySelectedSegmentByLabelmap`` calls the same logic).
Imports slicer, never qt; torch only inside the U-Net call."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import slicer
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from slicercad.errors import GeometryError, InputError
from slicercad.geometry import geometry_from_ijk_to_ras, ras_to_lps

from . import logic as weak

EFFECT_NAME = "LesionClick"          # the Segment Editor finds effects by this name
EFFECT_TITLE = "Lesion (click)"
METHODS = ("unet", "sphere")
DEFAULT_DIAMETER_MM = 15.0
MIN_VOXELS_ACROSS = 5.0      # fewer voxels than this across the lesion on the coarsest axis -> spacing warning
BOX_MARGIN_VOXELS = 2
PREVIEW_COLOR = (0.2, 0.9, 0.4)
NOTHING_WRITTEN = ("nothing was written: the result lies entirely outside the editable area "
                   "(Masking: editable area / intensity range / overwrite settings)")


@dataclass
class ClickPrompt:
    """A lesion prompt in world RAS mm: centre, expected diameter, correction clicks."""

    center_ras: tuple
    diameter_mm: float = DEFAULT_DIAMETER_MM
    positives_ras: list = field(default_factory=list)
    negatives_ras: list = field(default_factory=list)


@dataclass
class ClickResult:
    """The label as an oriented labelmap on (a box of) the editor's aligned source grid, plus its
    numpy mask [k, j, i] on that box, the core's SegmentResult and messages for the user."""

    labelmap: object
    mask: np.ndarray
    result: object
    messages: list
    written_voxels: int | None = None


def _matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def segmentation_to_world(segmentation_node) -> np.ndarray:
    """4x4 from the segmentation's local RAS to world RAS (identity without a parent transform)."""
    parent = segmentation_node.GetParentTransformNode() if segmentation_node is not None else None
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise GeometryError("the segmentation is under a non-linear transform: harden it first", parent.GetName())
    m = vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(m)
    return _matrix(m)


def _ijk_to_world(image_data, to_world) -> np.ndarray:
    m = vtkMatrix4x4()
    image_data.GetImageToWorldMatrix(m)
    return to_world @ _matrix(m)


def _check_source(image_data):
    if image_data is None or image_data.GetPointData() is None or image_data.GetPointData().GetScalars() is None:
        raise InputError("no source volume: select one in the Segment Editor", "source volume")
    ext = image_data.GetExtent()
    if ext[0] > ext[1] or ext[2] > ext[3] or ext[4] > ext[5]:
        raise InputError("the source volume is empty", "source volume")
    return ext


def click_index(image_data, center_ras, to_world=np.eye(4)) -> np.ndarray:
    """Continuous IJK (absolute, as the extent counts) of a world RAS point on the aligned source image."""
    ijk = np.linalg.inv(_ijk_to_world(image_data, to_world)) @ np.append(np.asarray(center_ras, float), 1.0)
    return ijk[:3]


def inside_source(image_data, center_ras, to_world=np.eye(4)) -> bool:
    ext = _check_source(image_data)
    ijk = click_index(image_data, center_ras, to_world)
    return all(ext[2 * a] - 0.5 <= ijk[a] <= ext[2 * a + 1] + 0.5 for a in range(3))


def box_extent(image_data, center_ras, radius_mm: float, to_world=np.eye(4)) -> list:
    """Sub-extent of ``image_data`` holding a ball of ``radius_mm`` around the point (+ a voxel margin)."""
    ext = _check_source(image_data)
    ijk = click_index(image_data, center_ras, to_world)
    spacing = np.linalg.norm(_ijk_to_world(image_data, to_world)[:3, :3], axis=0)
    half = radius_mm / spacing + BOX_MARGIN_VOXELS
    box = []
    for a in range(3):
        box += [int(max(ext[2 * a], np.floor(ijk[a] - half[a]))), int(min(ext[2 * a + 1], np.ceil(ijk[a] + half[a])))]
    return box


def oriented_to_sitk(image_data, extent=None, to_world=np.eye(4)) -> sitk.Image:
    """A SimpleITK copy (world LPS geometry) of ``image_data`` -- or of its sub-``extent`` -- first component."""
    ext = _check_source(image_data)
    extent = list(ext) if extent is None else list(extent)
    dims = [ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1]
    values = vtk_to_numpy(image_data.GetPointData().GetScalars())
    values = values.reshape(dims[::-1] + ([-1] if values.ndim > 1 else []))
    if values.ndim == 4:
        values = values[..., 0]
    lo = [extent[0] - ext[0], extent[2] - ext[2], extent[4] - ext[4]]
    hi = [extent[1] - ext[0] + 1, extent[3] - ext[2] + 1, extent[5] - ext[4] + 1]
    sub = np.array(values[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]], copy=True)
    image = sitk.GetImageFromArray(sub)
    m = _ijk_to_world(image_data, to_world)
    m[:3, 3] += m[:3, :3] @ np.array([extent[0], extent[2], extent[4]], float)
    g = geometry_from_ijk_to_ras(m)
    image.SetOrigin(g["origin"])
    image.SetSpacing(g["spacing"])
    image.SetDirection(g["direction"])
    return image


def mask_to_oriented(mask: np.ndarray, like, extent) -> object:
    """An oriented uint8 labelmap with ``like``'s geometry on ``extent``, voxels from ``mask`` [k, j, i]."""
    out = slicer.vtkOrientedImageData()
    m = vtkMatrix4x4()
    like.GetImageToWorldMatrix(m)
    out.SetImageToWorldMatrix(m)
    out.SetExtent(list(extent))
    out.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(out.GetPointData().GetScalars())[:] = (np.asarray(mask) > 0).astype(np.uint8).ravel()
    return out


def spacing_warning(image_data, diameter_mm: float, to_world=np.eye(4)) -> str | None:
    """A message when the segmentation grid is coarse relative to the lesion (few voxels across it)."""
    spacing = np.linalg.norm(_ijk_to_world(image_data, to_world)[:3, :3], axis=0)
    across = float(diameter_mm) / float(spacing.max())
    if across >= MIN_VOXELS_ACROSS:
        return None
    return (f"the segmentation grid is coarse for this lesion: {spacing.max():.2g} mm voxels, "
            f"{across:.1f} voxels across a {diameter_mm:g} mm lesion -- the label will be blocky; give the "
            "segmentation a finer geometry (Segment Editor: Specify geometry) from the source volume")


def _field_of_view_radius(method: str, card, diameter_mm: float) -> float:
    from slicercad.weak.crop import CropSpec

    spec = CropSpec()
    if method == "unet" and card is not None:
        from slicercad.weak.segment import spec_of_card

        spec = spec_of_card(card)
    return 0.5 * np.sqrt(3.0) * spec.fov_factor * float(diameter_mm)


def compute_click(image_data, prompt: ClickPrompt, method: str = "unet", model=None, card=None,
                  device: str = "cpu", threshold: float | None = None, segmentation_node=None) -> ClickResult:
    """The label for one click on the editor's aligned source image (vtkOrientedImageData in the
    segmentation's frame; ``segmentation_node`` gives its parent transform). Raises InputError /
    GeometryError with a user message for a click outside the volume or an empty result."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}", "method")
    d = float(prompt.diameter_mm)
    if not np.isfinite(d) or d <= 0:
        raise InputError(f"the lesion size must be > 0 mm, got {prompt.diameter_mm}", "size")
    to_world = segmentation_to_world(segmentation_node)
    _check_source(image_data)
    if not inside_source(image_data, prompt.center_ras, to_world):
        raise GeometryError("the click lies outside the source volume: click on the lesion in the image", "click")
    extent = box_extent(image_data, prompt.center_ras, _field_of_view_radius(method, card, d), to_world)
    image = oriented_to_sitk(image_data, extent, to_world)
    pos = ras_to_lps(np.asarray(prompt.positives_ras, float).reshape(-1, 3)) if len(prompt.positives_ras) else None
    neg = ras_to_lps(np.asarray(prompt.negatives_ras, float).reshape(-1, 3)) if len(prompt.negatives_ras) else None
    result = weak.lesion_label(image, ras_to_lps(prompt.center_ras), [d], method, model, card, pos, neg, device,
                               threshold)
    if result.empty or not result.mask.any():
        raise InputError(result.warnings[-1] if result.warnings else "the model returned nothing at this point",
                         "result")
    messages = list(result.warnings)
    warn = spacing_warning(image_data, d, to_world)
    if warn:
        messages.append(warn)
    return ClickResult(mask_to_oriented(result.mask, image_data, extent), result.mask, result, messages)


# ----------------------------------------------------------------------------------------------- the editor
class EditorLogicTarget:
    """The editor seen through Slicer's Qt-free ``vtkSlicerSegmentEditorLogic`` (what the effect's
    ``scriptedEffect`` calls underneath): its parameter node, aligned source volume, undo and masking."""

    def __init__(self, editor_logic):
        self.logic = editor_logic
        self.node = editor_logic.GetSegmentEditorNode()

    def source_image(self):
        if not self.logic.UpdateAlignedSourceVolume():
            return None
        return self.logic.GetAlignedSourceVolume()

    def save_state(self) -> None:
        self.logic.SaveStateForUndo()

    def modify(self, labelmap, replace: bool = False) -> None:
        mode = (slicer.vtkSlicerSegmentEditorLogic.ModificationModeSet if replace
                else slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd)
        self.logic.ModifySegmentByLabelmap(self.node.GetSegmentationNode(), self.node.GetSelectedSegmentID(),
                                           labelmap, mode, True, False)


def editor_logic(scene, segmentation_node, source_volume_node, segment_id=None, undo_states: int = 10):
    """A ``vtkSlicerSegmentEditorLogic`` with its own parameter node (batch scripts, tests)."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(scene)
    logic.SetSegmentEditorNode(node)
    logic.SetMaximumNumberOfUndoStates(undo_states)
    logic.SetSegmentationNode(segmentation_node)
    logic.SetSourceVolumeNode(source_volume_node)
    if segment_id is not None:
        logic.SetCurrentSegmentID(segment_id)
    return logic


def target_segment(editor_node, allow_hidden: bool = False) -> str:
    """The selected segment's ID, or InputError naming what is missing (no segmentation, no source
    volume, no segment selected, a hidden segment unless ``allow_hidden``: the effect asks first)."""
    seg_node = editor_node.GetSegmentationNode() if editor_node is not None else None
    if seg_node is None:
        raise InputError("no segmentation: select or create one in the Segment Editor", "segmentation")
    if editor_node.GetSourceVolumeNode() is None:
        raise InputError("no source volume: select one in the Segment Editor", "source volume")
    segment_id = editor_node.GetSelectedSegmentID()
    if not segment_id or seg_node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError("no segment selected: add or select a segment first", "segment")
    display = seg_node.GetDisplayNode()
    if not allow_hidden and display is not None and not display.GetSegmentVisibility(segment_id):
        raise InputError(f"segment '{seg_node.GetSegmentation().GetSegment(segment_id).GetName()}' is hidden: "
                         "show it before editing it", "segment")
    return segment_id


def editable_at(editor_node, image_data, center_ras, to_world=np.eye(4)) -> bool:
    """Whether the editor's masking (editable area, editable intensity range) allows editing at the click."""
    seg_node = editor_node.GetSegmentationNode()
    ijk = np.round(click_index(image_data, center_ras, to_world)).astype(int)
    ext = [int(v) for v in ijk for _ in (0, 1)]
    voxel = mask_to_oriented(np.zeros((1, 1, 1), np.uint8), image_data, ext)
    if editor_node.GetMaskMode() != slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere:
        mask = slicer.vtkOrientedImageData()
        seg_node.GenerateEditMask(mask, editor_node.GetMaskMode(), voxel, editor_node.GetSelectedSegmentID() or "",
                                  editor_node.GetMaskSegmentID() or "")
        if mask.GetPointData().GetScalars() is not None and mask.GetScalarComponentAsDouble(*ijk, 0) != 0:
            return False   # GenerateEditMask: non-zero where editing is not allowed
    if editor_node.GetSourceVolumeIntensityMask():
        lo, hi = editor_node.GetSourceVolumeIntensityMaskRange()
        value = image_data.GetScalarComponentAsDouble(*ijk, 0)
        if not lo <= value <= hi:
            return False
    return True


def segment_voxels(segmentation_node, segment_id) -> int:
    """Voxels of one segment (its own label value in a shared labelmap layer)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    rep = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    if rep is None or rep.GetPointData() is None or rep.GetPointData().GetScalars() is None:
        return 0
    return int((vtk_to_numpy(rep.GetPointData().GetScalars()) == segment.GetLabelValue()).sum())


def _on_grid(image, like) -> np.ndarray:
    """``image``'s first component resampled (nearest) onto ``like``'s geometry and extent, [k, j, i]."""
    ext = like.GetExtent()
    shape = (ext[5] - ext[4] + 1, ext[3] - ext[2] + 1, ext[1] - ext[0] + 1)
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        return np.zeros(shape)
    out = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(image, like, out,
                                                                                          False, False):
        raise GeometryError("could not resample onto the label's grid", "masking")
    if out.GetPointData() is None or out.GetPointData().GetScalars() is None:
        return np.zeros(shape)
    values = vtk_to_numpy(out.GetPointData().GetScalars())
    values = values.reshape(shape + ((-1,) if values.ndim > 1 else ()))
    return values[..., 0] if values.ndim == 4 else values


def editable_mask(editor_node, labelmap, source_image=None) -> np.ndarray:
    """Where the editor's masking (editable area, editable intensity range on ``source_image``) allows
    editing on ``labelmap``'s extent, bool [k, j, i] -- what ``ModifySegmentByLabelmap`` will let through."""
    seg_node = editor_node.GetSegmentationNode()
    ext = labelmap.GetExtent()
    allowed = np.ones((ext[5] - ext[4] + 1, ext[3] - ext[2] + 1, ext[1] - ext[0] + 1), bool)
    if editor_node.GetMaskMode() != slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere:
        mask = slicer.vtkOrientedImageData()
        seg_node.GenerateEditMask(mask, editor_node.GetMaskMode(), labelmap, editor_node.GetSelectedSegmentID() or "",
                                  editor_node.GetMaskSegmentID() or "")
        allowed &= _on_grid(mask, labelmap) == 0       # GenerateEditMask: non-zero where editing is not allowed
    if editor_node.GetSourceVolumeIntensityMask() and source_image is not None:
        lo, hi = editor_node.GetSourceVolumeIntensityMaskRange()
        values = _on_grid(source_image, labelmap)
        allowed &= (values >= lo) & (values <= hi)
    return allowed


def segment_mask_on(segmentation_node, segment_id, labelmap) -> np.ndarray:
    """The segment's voxels on ``labelmap``'s extent, bool [k, j, i]."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    rep = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    return _on_grid(rep, labelmap) == segment.GetLabelValue()


def would_change(target, click: ClickResult, replace: bool = False) -> bool:
    """Whether the editor's masked write of ``click`` would change the selected segment (checked before
    an undo state is saved, so a refused write leaves no undo step)."""
    segment_id = target_segment(target.node, allow_hidden=True)
    label = np.asarray(click.mask) > 0
    written = label & editable_mask(target.node, click.labelmap, target.source_image())
    if replace:
        return bool(written.any())
    existing = segment_mask_on(target.node.GetSegmentationNode(), segment_id, click.labelmap)
    return bool((written & ~existing).any())


def commit(target, click: ClickResult, replace: bool = False) -> ClickResult:
    """Write a computed label into the selected segment: a pre-check that the editor's masked write
    changes something (else InputError before any undo state is saved), the undo state, then the
    editor's masked modify. Nothing written -> InputError, the segmentation and undo stack unchanged."""
    segment_id = target_segment(target.node, allow_hidden=True)
    seg_node = target.node.GetSegmentationNode()
    if not would_change(target, click, replace):
        raise InputError(NOTHING_WRITTEN, "masking")
    before = segment_voxels(seg_node, segment_id)
    target.save_state()
    target.modify(click.labelmap, replace)
    after = segment_voxels(seg_node, segment_id)
    added = int(click.mask.sum())
    if not replace and after == before:
        raise InputError(NOTHING_WRITTEN, "masking")
    click.written_voxels = after - before if not replace else after
    if not replace and after - before < added:
        click.messages.append(f"{1 - (after - before) / added:.0%} of the result was already in the segment or "
                              "masked by the editable area")
    return click


def inside_label(click: ClickResult, ras, segmentation_node=None) -> bool:
    """Whether a world RAS point falls on a voxel of the computed (previewed) label."""
    if click is None:
        return False
    ijk = np.round(click_index(click.labelmap, ras, segmentation_to_world(segmentation_node))).astype(int)
    ext = click.labelmap.GetExtent()
    if not all(ext[2 * a] <= ijk[a] <= ext[2 * a + 1] for a in range(3)):
        return False
    return bool(click.mask[ijk[2] - ext[4], ijk[1] - ext[2], ijk[0] - ext[0]])


def copy_prompt(prompt: ClickPrompt, **changes) -> ClickPrompt:
    """An independent copy of a prompt (its click lists copied), with ``changes`` applied."""
    fields = dict(center_ras=tuple(prompt.center_ras), diameter_mm=prompt.diameter_mm,
                  positives_ras=list(prompt.positives_ras), negatives_ras=list(prompt.negatives_ras))
    fields.update(changes)
    return ClickPrompt(**fields)


def click_to_segment(target, prompt: ClickPrompt, method: str = "unet", model=None, card=None,
                     device: str = "cpu", threshold: float | None = None, replace: bool = False,
                     allow_hidden: bool = False) -> ClickResult:
    """The effect's entry point without a preview: checks -> label -> masked, undoable write. Every
    refusal (no segment, hidden segment, outside the volume / editable area, empty result) raises before
    the segmentation changes."""
    target_segment(target.node, allow_hidden)
    image_data = target.source_image()
    seg_node = target.node.GetSegmentationNode()
    to_world = segmentation_to_world(seg_node)
    _check_source(image_data)
    if not inside_source(image_data, prompt.center_ras, to_world):
        raise GeometryError("the click lies outside the source volume: click on the lesion in the image", "click")
    if not editable_at(target.node, image_data, prompt.center_ras, to_world):
        raise InputError("the click lies outside the editable area (Masking settings): nothing was changed",
                         "masking")
    click = compute_click(image_data, prompt, method, model, card, device, threshold, seg_node)
    return commit(target, click, replace)


# --------------------------------------------------------------------------------------------- the preview
def show_preview(scene, segmentation_node, labelmap, preview_node=None, name: str = "Lesion preview"):
    """A separate segmentation node showing ``labelmap`` (never the edited segmentation); returns it."""
    if preview_node is None:
        preview_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{segmentation_node.GetName()} preview")
        preview_node.SetSaveWithScene(False)      # a transient view, never part of the saved scene
        preview_node.CreateDefaultDisplayNodes()
        if segmentation_node.GetParentTransformNode() is not None:
            preview_node.SetAndObserveTransformNodeID(segmentation_node.GetParentTransformNode().GetID())
    segmentation = preview_node.GetSegmentation()
    segmentation.RemoveAllSegments()
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetColor(*PREVIEW_COLOR)
    copy = slicer.vtkOrientedImageData()
    copy.DeepCopy(labelmap)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), copy)
    segmentation.AddSegment(segment, "preview")
    return preview_node


def load_model(card_path=None, _cache={}):
    """(model, card) of the U-Net, loaded once per card path (torch is imported here, on first use)."""
    key = str(card_path or "")
    if key not in _cache:
        from slicercad.weak.segment import load_segmenter

        _cache.clear()
        _cache[key] = load_segmenter(card_path or None)
    return _cache[key]
