"""WeakLabelSegmenter MRML logic: markups (points + lines, or ROIs) -> Sphere / Segment / Isodose
segments added to a segmentation node, on the source volume's grid; the segmentation as a DICOM SEG
("Save results as DICOM"). Imports slicer, never qt; torch
only inside ``segment_lesions`` (after ``SlicerCADLib.dependencies.ensure_dependencies``).

Every call adds **new** segments (named after the lesion, made unique) with a terminology entry
(Morphologically Altered Structure / Mass) and the source volume as the segmentation's reference
geometry; an existing segment is never overwritten."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from SlicerCADLib.dicom_results import CORRECTED_TAG, import_into_database, results_folder, write_segmentation_seg
from SlicerCADLib.markups import lesions_from_markups, scene_line_nodes, scene_roi_nodes
from SlicerCADLib.segmentations import label_array_to_segment, segment_to_label_array
from SlicerCADLib.volumes import reference_image, volume_node_to_sitk
from slicercad.errors import InputError
from slicercad.geometry import ras_to_lps

LESION_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list"
                      "~SCT^49755003^Morphologically Altered Structure~SCT^4147007^Mass~^^"
                      "~Anatomic codes - DICOM master list~^^~^^")
COLORS = {"sphere": (0.95, 0.75, 0.2), "unet": (0.9, 0.3, 0.3), "isodose": (0.3, 0.6, 1.0)}
METHOD_TAG = "SlicerCAD.method"
PROMPT_TAG = "SlicerCAD.prompt"      # JSON {"center_lps": [x, y, z], "diameter_mm": d}: what made the segment
DIGEST_TAG = "SlicerCAD.labelDigest"  # mask_digest of the voxels as added: tells an edited segment apart


@dataclass
class WeakMark:
    """A lesion prompt: centre (LPS mm), diameters (mm; one or three), axes (3x3 LPS columns) or None."""

    name: str
    center_lps: np.ndarray
    diameters_mm: list
    axes: np.ndarray | None = None


def _roi_nodes(roi_nodes) -> list:
    if roi_nodes is None:
        return []
    nodes = list(roi_nodes) if isinstance(roi_nodes, (list, tuple)) else [roi_nodes]
    for node in nodes:
        if node is None or not node.IsA("vtkMRMLMarkupsROINode"):
            raise InputError("expected markups ROI node(s)", "roi_nodes")
    return nodes


def marks_from_roi(node) -> WeakMark:
    """An ellipsoid inscribed in an ROI (its centre, size and orientation, world coordinates)."""
    size = [0.0, 0.0, 0.0]
    node.GetSizeWorld(size)
    if min(size) <= 0:
        raise InputError(f"ROI size must be > 0 mm on every axis, got {size}", node.GetName())
    center = [0.0, 0.0, 0.0]
    node.GetCenterWorld(center)
    axes = []
    for a in range(3):
        v = [0.0, 0.0, 0.0]
        node.GetAxisWorld(a, v)
        axes.append(ras_to_lps(v))
    return WeakMark(node.GetName(), ras_to_lps(center), [float(s) for s in size], np.column_stack(axes))


def lesion_marks(points_node=None, lines_node=None, roi_nodes=None, default_diameter_mm: float | None = None) -> list:
    """Prompts from a fiducial node + line node(s) (SlicerCADLib.markups' matching rule) and ROI node(s).
    A point without a line takes ``default_diameter_mm`` or is refused naming it."""
    marks = []
    for m in lesions_from_markups(points_node, lines_node):
        d = m.diameter_mm if m.diameter_mm is not None else default_diameter_mm
        if d is None:
            raise InputError("lesion has no diameter: draw a line across it or set a default diameter", m.name)
        marks.append(WeakMark(m.name, np.asarray(m.center_lps, float), [float(d)]))
    marks += [marks_from_roi(node) for node in _roi_nodes(roi_nodes)]
    if not marks:
        raise InputError("no lesion: place a point and a line across the lesion, or an ROI", "markups")
    return marks


LESION_MARKUP_ATTRIBUTE = "WeakLabelSegmenter.lesionMarkup"   # "1" on a line / ROI the user chose as a lesion


def _tagged(scene, finder) -> list:
    return [n for n in finder(scene) if n.GetAttribute(LESION_MARKUP_ATTRIBUTE) == "1"]


def chosen_lesion_markups(scene) -> tuple:
    """(lines, ROIs) of ``scene`` the user chose as lesion markups (tagged ``LESION_MARKUP_ATTRIBUTE``,
    saved with the scene); rulers, Crop Volume or volume-rendering ROIs are never taken unasked."""
    return _tagged(scene, scene_line_nodes), _tagged(scene, scene_roi_nodes)


def choose_lesion_markups(scene, nodes) -> None:
    """Make ``nodes`` (lines and ROIs) the chosen lesion markups of ``scene``; every other line / ROI is
    un-chosen. Only changed attributes are written."""
    keep = {n.GetID() for n in nodes if n is not None}
    for node in scene_line_nodes(scene) + scene_roi_nodes(scene):
        want = "1" if node.GetID() in keep else None
        if node.GetAttribute(LESION_MARKUP_ATTRIBUTE) != want:
            if want:
                node.SetAttribute(LESION_MARKUP_ATTRIBUTE, want)
            else:
                node.RemoveAttribute(LESION_MARKUP_ATTRIBUTE)


def scene_lesion_marks(scene, points_node=None, default_diameter_mm: float | None = None) -> list:
    """``lesion_marks`` for a panel: the centre points of ``points_node`` with the **chosen** lines of
    ``scene`` as diameters (``chosen_lesion_markups``; SlicerCADLib.markups' matching rule, a chosen line
    near no point a lesion of its own) and each chosen ROI as a lesion of its own."""
    if scene is None and points_node is not None:
        scene = points_node.GetScene()
    lines, rois = chosen_lesion_markups(scene)
    return lesion_marks(points_node, lines, rois, default_diameter_mm)


def has_lesion_markups(scene, points_node=None) -> bool:
    """Whether there is anything to make a lesion from: a centre-point node, or a chosen line or ROI."""
    if points_node is not None:
        return True
    lines, rois = chosen_lesion_markups(scene)
    return bool(lines or rois)


def click_points(node) -> np.ndarray | None:
    """Defined control points of a fiducial node as LPS (N, 3), or None."""
    if node is None:
        return None
    pts = []
    for i in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(i) == slicer.vtkMRMLMarkupsNode.PositionDefined:
            p = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(i, p)
            pts.append(ras_to_lps(p))
    return np.array(pts).reshape(-1, 3) if pts else None


def segment_names(segmentation_node) -> list:
    """(segment id, name) of every segment of ``segmentation_node`` (none: [])."""
    if segmentation_node is None:
        return []
    seg = segmentation_node.GetSegmentation()
    return [(seg.GetNthSegmentID(i), seg.GetNthSegment(i).GetName()) for i in range(seg.GetNumberOfSegments())]


def unique_segment_name(segmentation_node, name: str) -> str:
    if segmentation_node is None:
        return name
    taken = {n for _id, n in segment_names(segmentation_node)}
    if name not in taken:
        return name
    k = 2
    while f"{name} ({k})" in taken:
        k += 1
    return f"{name} ({k})"


def mask_digest(mask: np.ndarray) -> str:
    """sha256 (16 hex digits) of a binary mask [k, j, i] and its shape."""
    m = np.asarray(mask) > 0
    return hashlib.sha256(repr(m.shape).encode() + np.packbits(m).tobytes()).hexdigest()[:16]


def add_segment(mask: np.ndarray, volume_node, segmentation_node, name: str, kind: str, mark=None):
    """A new segment (never an overwrite) with lesion terminology; returns (segmentation node, segment id).
    Tags: the method, the prompt of ``mark`` (a WeakMark) and the digest of the voxels as added."""
    if not np.asarray(mask).any():
        raise InputError("the label is empty: nothing was added", name)
    name = unique_segment_name(segmentation_node, name)
    seg_node, seg_id = label_array_to_segment(mask, volume_node, segmentation_node, name, COLORS[kind])
    if seg_node.GetNodeReferenceID(seg_node.GetReferenceImageGeometryReferenceRole()) is None:
        seg_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment = seg_node.GetSegmentation().GetSegment(seg_id)
    segment.SetTerminology(LESION_TERMINOLOGY)
    segment.SetTag(METHOD_TAG, kind)
    segment.SetTag(DIGEST_TAG, mask_digest(mask))
    if mark is not None:
        from slicercad.weak.shapes import equivalent_diameter

        segment.SetTag(PROMPT_TAG, json.dumps({"center_lps": [float(v) for v in mark.center_lps],
                                               "diameter_mm": float(equivalent_diameter(mark.diameters_mm))}))
    return seg_node, seg_id


def add_sphere_segments(volume_node, marks, segmentation_node=None, partial_volume: bool = False) -> tuple:
    """Sphere / ellipsoid segments for ``marks``; returns (segmentation node, [segment ids])."""
    from slicercad.weak.shapes import ellipsoid_label

    grid = reference_image(volume_node)
    ids = []
    for m in marks:
        label = ellipsoid_label(grid, m.center_lps, m.diameters_mm, "LPS", m.axes, partial_volume)
        mask = sitk.GetArrayFromImage(label)
        mask = (mask >= 0.5).astype(np.uint8) if partial_volume else mask
        segmentation_node, seg_id = add_segment(mask, volume_node, segmentation_node, f"{m.name} sphere", "sphere",
                                                m)
        ids.append(seg_id)
    return segmentation_node, ids


def lesion_label(image, center_lps, diameters_mm, method: str = "unet", model=None, card=None, positive_lps=None,
                 negative_lps=None, device: str = "cpu", threshold: float | None = None):
    """One lesion label on ``image``'s grid (a SimpleITK image, LPS) from a centre and a size. ``method``:
    ``unet`` (``model``/``card`` from ``load_segmenter``) or ``sphere``. Returns a
    ``slicercad.weak.segment.SegmentResult`` (``.mask`` uint8 [k, j, i]).

    U-Net: the one call the panel (``segment_lesions``), the Segment Editor effect ("Lesion (click)") and
    batch scripts share, so the same click gives the same voxels. Sphere: the effect comes through here
    (``segment_baseline("sphere")``, centre + size only: correction clicks are ignored), while the panel's
    Sphere path is ``add_sphere_segments`` (``ellipsoid_label``, which also takes line axes and partial
    volume) -- two calls, not one; for a plain centre + diameter they give the same voxels
    (``Testing/test_weak_effect.py``)."""
    from slicercad.weak.segment import THRESHOLD, segment_baseline, segment_lesion

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the segmenter needs a single-component (grey-level) volume", "source volume")
    if method == "sphere":
        return segment_baseline("sphere", image, center_lps, diameters_mm, "LPS")
    if method != "unet":
        raise InputError(f"method must be 'unet' or 'sphere', got {method!r}", "method")
    if model is None:
        raise InputError("no U-Net model loaded (slicercad.weak.segment.load_segmenter)", "model")
    return segment_lesion(model, card, image, center_lps, diameters_mm, "LPS", positive_lps, negative_lps, device,
                          THRESHOLD if threshold is None else float(threshold))


def segment_lesions(volume_node, marks, segmentation_node=None, card_path=None, device: str = "cpu",
                    positive_node=None, negative_node=None, model=None, card=None) -> tuple:
    """U-Net segments for ``marks`` (correction clicks from fiducial nodes); returns
    (segmentation node, [segment ids], [messages]). An empty result adds nothing and says so."""
    from slicercad.weak.segment import load_segmenter

    if model is None:
        model, card = load_segmenter(card_path)
    image = volume_node_to_sitk(volume_node)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the segmenter needs a single-component (grey-level) volume", volume_node.GetName())
    pos, neg = click_points(positive_node), click_points(negative_node)
    ids, messages = [], []
    for m in marks:
        result = lesion_label(image, m.center_lps, m.diameters_mm, "unet", model, card, pos, neg, device)
        if result.empty:
            messages.append(f"{m.name}: {result.warnings[-1]}")
            continue
        segmentation_node, seg_id = add_segment(result.mask, volume_node, segmentation_node, f"{m.name} U-Net",
                                                "unet", m)
        ids.append(seg_id)
        extra = f" ({'; '.join(result.warnings)})" if result.warnings else ""
        messages.append(f"{m.name}: {result.volume_mm3 / 1000:.2f} mL{extra}")
    return segmentation_node, ids, messages


DOSE_UNIT_ATTRIBUTE = "DicomRtImport.DoseUnitName"   # SlicerRT: DoseUnits of the RTDOSE, on its study item


def dose_node_units(node) -> tuple:
    """(units "GY" / "RELATIVE", factor to Gy or to a fraction, warnings) of a dose volume node from
    SlicerRT's DoseUnitName (on the node or an enclosing subject-hierarchy item); without it: Gy, said."""
    unit = node.GetAttribute(DOSE_UNIT_ATTRIBUTE) or ""
    scene = node.GetScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    if not unit and sh is not None:
        item = sh.GetItemByDataNode(node)
        while item and not unit:
            unit = sh.GetItemAttribute(item, DOSE_UNIT_ATTRIBUTE) or ""
            item = sh.GetItemParent(item)
    unit = unit.strip().upper()
    if unit in ("GY", ""):
        return "GY", 1.0, [] if unit else [f"{node.GetName()}: no {DOSE_UNIT_ATTRIBUTE} (not loaded by SlicerRT?): "
                                           "values taken as Gy"]
    if unit == "CGY":
        return "GY", 0.01, []
    if unit == "RELATIVE":
        return "RELATIVE", 1.0, []
    raise InputError(f"dose unit {unit!r} is not GY, CGY or RELATIVE", f"{node.GetName()}: {DOSE_UNIT_ATTRIBUTE}")


def panel_prescription(prescription_gy: float, rtplan_path=None) -> tuple:
    """(prescription in Gy or None, warnings): the typed value when > 0, else the RTPLAN's."""
    if prescription_gy and float(prescription_gy) > 0:
        return float(prescription_gy), []
    if rtplan_path:
        from slicercad.weak.rtdose import prescription_from_rtplan

        return prescription_from_rtplan(rtplan_path)
    return None, []


def volume_frame_of_reference(volume_node) -> str:
    """The FrameOfReferenceUID of the DICOM files behind ``volume_node`` ("" when it has none)."""
    import pydicom

    from SlicerCADLib.dicom_nodes import volume_files
    from slicercad.errors import DicomError

    try:
        files = volume_files(volume_node)
        return str(pydicom.dcmread(files[0], stop_before_pixels=True).get("FrameOfReferenceUID", ""))
    except (DicomError, OSError, pydicom.errors.InvalidDicomError):
        return ""


def add_isodose_segments(volume_node, dose, level: float, unit: str = "Gy", prescription_gy=None,
                         segmentation_node=None, min_volume_mm3: float = 0.0) -> tuple:
    """Isodose segments, one per connected target. ``dose``: an RTDOSE path or a dose volume node (units
    from SlicerRT's attribute, ``dose_node_units``). Returns (segmentation node, [segment ids], table,
    [warnings])."""
    from slicercad.weak.rtdose import PERCENT_IF_MAX_ABOVE, frame_of_reference_warnings, isodose_label, read_rtdose

    if isinstance(dose, (str, bytes)) or hasattr(dose, "__fspath__"):
        grid = read_rtdose(dose)
        dose_image, units, source = grid.image, grid.units, str(dose)
        notes = grid.warnings() + frame_of_reference_warnings(grid.frame_of_reference,
                                                              volume_frame_of_reference(volume_node))
    else:
        units, factor, notes = dose_node_units(dose)
        dose_image, source = volume_node_to_sitk(dose), dose.GetName()
        if units == "RELATIVE" and float(np.max(sitk.GetArrayViewFromImage(dose_image))) > PERCENT_IF_MAX_ABOVE:
            factor = 0.01
            notes.append(f"{source}: RELATIVE dose above {PERCENT_IF_MAX_ABOVE:g} read as percent")
        if factor != 1.0:
            dose_image = sitk.Cast(dose_image, sitk.sitkFloat32) * factor
    label, table = isodose_label(dose_image, reference_image(volume_node), level, unit, prescription_gy, units,
                                 min_volume_mm3, source)
    arr = sitk.GetArrayFromImage(label)
    ids = []
    for row in table:
        name = f"Isodose {level:g} {unit} target {row['label']}"
        segmentation_node, seg_id = add_segment((arr == row["label"]).astype(np.uint8), volume_node,
                                                segmentation_node, name, "isodose")
        ids.append(seg_id)
    return segmentation_node, ids, table, notes


def tag_corrected_segments(segmentation_node, volume_node) -> list:
    """Set ``dicom_results.CORRECTED_TAG`` on every segment the labeller added: "true" when its voxels on the
    source grid differ from those it added (``DIGEST_TAG``), else "false"; returns the corrected names."""
    corrected = []
    for sid, name in segment_names(segmentation_node):
        segment = segmentation_node.GetSegmentation().GetSegment(sid)
        digest = vtk.reference("")
        if not segment.GetTag(DIGEST_TAG, digest):
            continue                                     # not the labeller's (drawn by hand): MANUAL
        edited = str(digest) != mask_digest(segment_to_label_array(segmentation_node, sid, volume_node))
        segment.SetTag(CORRECTED_TAG, "true" if edited else "false")
        corrected += [name] if edited else []
    return corrected


def segmentation_to_dicom(segmentation_node, volume_node, folder, card: dict | None = None, *,
                          database=True) -> list:
    """Every segment as one SEG on the source volume's series (``<folder>/segmentation.seg.dcm``), added to
    Slicer's DICOM database unless ``database`` is False; returns [path]. The labeller's segments are
    SEMIAUTOMATIC (a person gave the prompt): a sphere as the shared sphere ROI, a U-Net one with ``card``'s name,
    version and sha256 (``weak_algorithm``), an isodose one as a threshold; edited ones are marked corrected
    (``tag_corrected_segments``); a segment drawn by hand is MANUAL."""
    from slicercad.dicomio.terms import SPHERE_ROI, Algorithm
    from slicercad.weak.dicom_seg import weak_algorithm

    if segmentation_node is None or volume_node is None:
        raise InputError("select the source volume and the segmentation", "segmentation")
    tag_corrected_segments(segmentation_node, volume_node)
    algorithms = {"sphere": SPHERE_ROI, "unet": weak_algorithm("unet", card),
                  "isodose": Algorithm("SlicerCAD isodose", "1", family="threshold", algorithm_type="SEMIAUTOMATIC",
                                       parameters={"method": "isodose"})}
    path = write_segmentation_seg(segmentation_node, volume_node, Path(folder) / "segmentation.seg.dcm", algorithms)
    if database is not False:
        import_into_database([path], None if database is True else database)
    return [path]


def save_panel_segmentation(p, database=True) -> list:
    """The panel's ``segmentation`` on its ``inputVolume`` as a SEG in ``results_folder(p.resultsFolder)`` (one
    sub-folder per study), the U-Net segments by the panel's model card (``modelPath``, default the bundled one)."""
    from .training import read_card

    model = str(p.modelPath) if p.modelPath and str(p.modelPath) != "." else None
    folder = results_folder(p.resultsFolder, "WeakLabelSegmenter", p.inputVolume)
    return segmentation_to_dicom(p.segmentation, p.inputVolume, folder, read_card(model), database=database)
