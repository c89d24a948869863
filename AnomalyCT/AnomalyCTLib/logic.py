"""AnomalyCT MRML logic: a volume node (3D head CT, or a one-slice chest X-ray) -> case score with its
percentile among the held-out normals, the per-voxel map as a foreground overlay on the input's grid, and a
thresholded map as a new segment for review. Imports slicer, never qt; torch only inside functions (after
``SlicerCADLib.dependencies.ensure_dependencies``), through ``slicercad.anomaly.detector``."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from SlicerCADLib.dicom_nodes import FILES_ATTRIBUTE, UIDS_ATTRIBUTE
from SlicerCADLib.overlays import show_float_overlay
from SlicerCADLib.segmentations import label_array_to_segment
from SlicerCADLib.volumes import reference_image, volume_node_to_sitk
from slicercad.errors import DicomError, InputError

KINDS = ("head_ct", "cxr")
MAP_NAME = "AnomalyCT map"
SEGMENT_COLOR = (1.0, 0.55, 0.1)
ORIGIN_TAG = "SlicerCAD.algorithm"   # segment tag read by SlicerCADLib.dicom_results (MODEL_TAGS): AUTOMATIC
GRID_NOTE = (" The head's intracranial space is registered to a template head (pose and size), but the "
             "bundled model learned SYNTHETIC anatomy: real scans tend to score at the top of the normal range.")


def kept_note(info: dict) -> str:
    """How many model voxels were clipped by the window inside the anatomy (inpainted, not scored)."""
    n = info.get("n_kept", 0)
    return (f" {n} model voxels inside the anatomy are clipped by the window (calcification, bone, metal, "
            "markers): inpainted and not scored -- the map is blind there." if n else "")


def pose_note(info: dict) -> str:
    """The head's registration to the template (rotation, per-axis scale, fit) and the orientation check, or a
    chest X-ray's lung frame; then ``kept_note``."""
    return _pose(info) + kept_note(info)


def _pose(info: dict) -> str:
    if "lung_distance_mm" in info:
        return (f" Aligned on the lung fields: rotation {info['rotation_deg']:.0f} deg, lung centroids "
                f"{info['lung_distance_mm']:.0f} mm apart (the grid is scaled to that distance; a radiograph without "
                "a calibrated pixel spacing reads in pixels); upside-down and left-right not checked.")
    scale = " x ".join(f"{v:.2f}" for v in info["scale_xyz"])
    checked = "not upside down (skull base / neck inferior)" if info["upside_down_checked"] else \
        "upside-down not verifiable in this field of view"
    cut = f" The field of view cuts the head ({info['truncated_mm2'] / 100:.0f} cm2 of the intracranial space on " \
          "its edge): the registration and the map near that edge are less reliable." if info["truncated_mm2"] else ""
    return (f" Registered to the template head: rotation {info['rotation_deg']:.0f} deg, scale {scale}, fit Dice "
            f"{info['fit_dice']:.2f}; {checked}; front-back and left-right not checked.{cut}{GRID_NOTE}")


def photometric_interpretation(volume_node) -> str:
    """PhotometricInterpretation of the DICOM file behind a node loaded by Slicer's DICOM module
    (``DICOM.instanceUIDs``); "" for other nodes. Nodes loaded by ``SlicerCADLib.study`` (``SlicerCAD.files``)
    are already inverted to MONOCHROME2 by ``slicercad.dicom.volume``; "" too when the node's instances are not
    in the database (a reloaded scene): the sample path's polarity check then refuses an inverted image.
    The tag alone does not say how the pixels look: ``input_image`` decides by polarity."""
    if volume_node.GetAttribute(FILES_ATTRIBUTE) or not (volume_node.GetAttribute(UIDS_ATTRIBUTE) or "").strip():
        return ""
    import pydicom

    from SlicerCADLib.dicom_nodes import volume_files

    try:
        files = volume_files(volume_node)
    except DicomError:
        return ""
    try:
        header = pydicom.dcmread(files[0], stop_before_pixels=True, specific_tags=["PhotometricInterpretation"])
    except Exception as exc:  # pydicom raises several types for damaged files
        raise InputError(f"cannot read PhotometricInterpretation ({type(exc).__name__}: {exc})", files[0]) from None
    return str(getattr(header, "PhotometricInterpretation", "")).strip().upper()


def _images(volume_node, kind: str) -> tuple:
    """(the node's image on its world grid, the detector's input: a 2D image for a one-slice chest X-ray).

    A MONOCHROME1 radiograph is inverted only when it fails the polarity check: Slicer's DICOM plugin reads with
    GDCM by default, which already inverts MONOCHROME1, and with DCMTK (its fallback), which shows the stored
    values."""
    if volume_node is None:
        raise InputError("select an input volume", "inputVolume")
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}", "kind")
    image = volume_node_to_sitk(volume_node)
    if kind != "cxr":
        return image, image
    if image.GetSize()[2] != 1:
        raise InputError(f"a chest X-ray is one 2D image; {volume_node.GetName()} has {image.GetSize()[2]} "
                         "slices (choose the head CT model for volumes)", volume_node.GetName())
    flat = image[:, :, 0]
    from slicercad.anomaly.cxr import polarity_ok

    if photometric_interpretation(volume_node) == "MONOCHROME1" and not polarity_ok(flat):
        stats = sitk.MinimumMaximumImageFilter()
        stats.Execute(flat)
        flat = sitk.Cast(flat, sitk.sitkFloat32) * -1.0 + float(stats.GetMinimum() + stats.GetMaximum())
    return image, flat


def input_image(volume_node, kind: str) -> sitk.Image:
    """The node's image as the detector expects it (``_images``)."""
    return _images(volume_node, kind)[1]


def ordinal(value: float) -> str:
    """A percentile rounded to an English ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 100th."""
    n = int(round(float(value)))
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class ScoreResult:
    def __init__(self, result, map_node, kind):
        self.result, self.map_node, self.kind = result, map_node, kind

    @property
    def score(self):
        return self.result.score

    @property
    def percentile(self):
        return self.result.percentile

    @property
    def default_threshold(self):
        return self.result.threshold

    def summary(self) -> str:
        r = self.result
        unit = "bits/dim" if "glow" in r.card["task"] else "f-AnoGAN score"
        synth = " Model trained on SYNTHETIC data (research use)." if r.card["training_data"]["synthetic"] else ""
        return (f"Map score {r.map_score:.2f} SD (top 1% of the map): {ordinal(r.map_percentile)} percentile among "
                f"held-out normal cases (the batch scoring's triage rank). Case score {r.score:.4f} "
                f"{unit}: {ordinal(r.percentile)} (complexity-corrected: {ordinal(r.variant_percentile)}). "
                f"Map peak {r.map_max:.1f} SD; "
                f"{r.flagged_voxels} model voxels above the normal threshold {r.threshold:.2f} (set so that 5% "
                f"of held-out normal cases show any voxel above it).{synth}"
                f"{pose_note(r.sample.info)}"
                + (f" Outside the training distribution: {'; '.join(r.warnings)}." if r.warnings else ""))


def score_volume(volume_node, kind: str = "head_ct", detector=None, card_path=None, device="cpu",
                 opacity: float = 0.5) -> ScoreResult:
    """Score ``volume_node``; show the map (standardised, SD above the normal mean) over it as a foreground."""
    from slicercad.anomaly.detector import load_detector

    grid, image = _images(volume_node, kind)
    det = detector or load_detector(card_path or None, kind, device)
    result = det.score_image(image, volume_node.GetName())
    del image
    on_grid = result.map_image(grid)          # float32 on the node's world grid, passed on as an image
    del grid
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(on_grid)
    node = show_float_overlay(on_grid, volume_node, MAP_NAME, colormap="Inferno", opacity=opacity,
                              window=(0.0, max(float(result.threshold) * 2.0, stats.GetMaximum(), 1e-3)),
                              threshold=float(result.threshold))
    node.SetAttribute("AnomalyCT.threshold", f"{result.threshold:.6g}")
    return ScoreResult(result, node, kind)


def set_map_threshold(map_node, threshold: float) -> None:
    """Show only map values above ``threshold`` (the panel's slider) in the overlay."""
    if map_node is None or map_node.GetDisplayNode() is None:
        return
    display = map_node.GetDisplayNode()
    display.SetThreshold(float(threshold), max(float(display.GetUpperThreshold()), float(threshold)))


def map_to_segment(map_node, volume_node, threshold: float, segmentation_node=None, name="Anomaly",
                   algorithm: str = ""):
    """Voxels of the map above ``threshold`` as a new segment on the input volume's grid, tagged with the
    model name (``ORIGIN_TAG``) so a DICOM SEG of it says AUTOMATIC."""
    if map_node is None:
        raise InputError("score the case first (no anomaly map)", "map")
    import slicer

    arr = slicer.util.arrayFromVolume(map_node)
    mask = arr > float(threshold)
    if not mask.any():
        raise InputError(f"no voxel of the map is above {threshold:.2f}; lower the threshold", "threshold")
    node, segment_id = label_array_to_segment(mask.astype(np.uint8), volume_node, segmentation_node, name,
                                              SEGMENT_COLOR)
    if algorithm:
        node.GetSegmentation().GetSegment(segment_id).SetTag(ORIGIN_TAG, str(algorithm))
    return node, segment_id


def _same_grid(map_node, volume_node) -> bool:
    """Whether the map node still lies on the volume's world grid (as ``score_volume`` made it)."""
    a, b = reference_image(map_node), reference_image(volume_node)
    return a.GetSize() == b.GetSize() and all(np.allclose(getattr(a, f)(), getattr(b, f)(), atol=1e-4)
                                              for f in ("GetOrigin", "GetSpacing", "GetDirection"))


def save_dicom(score, volume_node, results_folder_path, threshold: float, database=True) -> str:
    """The scored case as DICOM (Parametric Map, SEG of the map above ``threshold``, SR with the case score) on
    the volume's series in ``SlicerCADLib.dicom_results.results_folder``, added to the DICOM database; a
    projection radiograph gets the SR only (``results_anomaly.PROJECTION_NOTE``). Refused for a volume under a
    parent transform."""
    from SlicerCADLib.dicom_nodes import volume_files
    from SlicerCADLib.dicom_results import anomaly_map_to_dicom, results_folder, written_summary
    from slicercad.dicomio.results_anomaly import PROJECTION_NOTE
    from slicercad.dicomio.sources import is_projection_radiograph

    if score is None or volume_node is None:
        raise InputError("score the case first", "score")
    if volume_node.GetParentTransformNode() is not None:     # the map is on the world grid, the series is not
        raise InputError(f"harden or remove the transform on {volume_node.GetName()} first (the DICOM result must "
                         "lie on the series' own grid), then score again", volume_node.GetName())
    if not _same_grid(score.map_node, volume_node):
        raise InputError(f"{volume_node.GetName()} has moved since it was scored (a transform hardened, removed or "
                         "changed): score it again", volume_node.GetName())
    folder = results_folder(results_folder_path, "AnomalyCT", volume_node)
    text = written_summary(anomaly_map_to_dicom(score.map_node, volume_node, score, folder, threshold=threshold,
                                                database=database), database)
    return f"{text}\n{PROJECTION_NOTE}." if is_projection_radiograph(volume_files(volume_node)) else text

