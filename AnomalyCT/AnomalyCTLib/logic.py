"""AnomalyCT MRML logic: a volume node (3D head CT, or a one-slice chest X-ray) -> case score with its
percentile among the held-out normals, the per-voxel map as a foreground overlay on the input's grid, and a
thresholded map as a new segment for review. Imports slicer, never qt; torch only inside functions (after
``SlicerCADLib.dependencies.ensure_dependencies``), through ``slicercad.anomaly.detector``."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from SlicerCADLib.overlays import show_float_overlay
from SlicerCADLib.segmentations import label_array_to_segment
from SlicerCADLib.volumes import volume_node_to_sitk
from slicercad.errors import InputError

KINDS = ("head_ct", "cxr")
MAP_NAME = "AnomalyCT map"
SEGMENT_COLOR = (1.0, 0.55, 0.1)


def input_image(volume_node, kind: str) -> sitk.Image:
    """The node's image as the detector expects it (a 2D image for a one-slice chest X-ray)."""
    if volume_node is None:
        raise InputError("select an input volume", "inputVolume")
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}", "kind")
    image = volume_node_to_sitk(volume_node)
    if kind == "cxr":
        if image.GetSize()[2] != 1:
            raise InputError(f"a chest X-ray is one 2D image; {volume_node.GetName()} has {image.GetSize()[2]} "
                             "slices (choose the head CT model for volumes)", volume_node.GetName())
        return image[:, :, 0]
    return image


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
        return (f"Case score {r.score:.4f} {unit}: {r.percentile:.0f}th percentile among held-out normal cases "
                f"(complexity-corrected: {r.variant_percentile:.0f}th; map score {r.map_score:.2f} SD, top 1% of "
                f"the map: {r.map_percentile:.0f}th). Map peak {r.map_max:.1f} SD; "
                f"{r.flagged_voxels} model voxels above the normal threshold {r.threshold:.2f}.{synth}")


def score_volume(volume_node, kind: str = "head_ct", detector=None, card_path=None, device="cpu",
                 opacity: float = 0.5) -> ScoreResult:
    """Score ``volume_node``; show the map (standardised, SD above the normal mean) over it as a foreground."""
    from slicercad.anomaly.detector import load_detector

    image = input_image(volume_node, kind)
    det = detector or load_detector(card_path or None, kind, device)
    result = det.score_image(image, volume_node.GetName())
    map_img = result.map_image(volume_node_to_sitk(volume_node))
    arr = sitk.GetArrayFromImage(map_img).astype(np.float32)
    node = show_float_overlay(arr, volume_node, MAP_NAME, colormap="Inferno", opacity=opacity,
                              window=(0.0, max(float(result.threshold) * 2.0, float(arr.max()), 1e-3)),
                              threshold=float(result.threshold))
    node.SetAttribute("AnomalyCT.threshold", f"{result.threshold:.6g}")
    return ScoreResult(result, node, kind)


def map_to_segment(map_node, volume_node, threshold: float, segmentation_node=None, name="Anomaly"):
    """Voxels of the map above ``threshold`` as a new segment on the input volume's grid."""
    if map_node is None:
        raise InputError("score the case first (no anomaly map)", "map")
    import slicer

    arr = slicer.util.arrayFromVolume(map_node)
    mask = arr > float(threshold)
    if not mask.any():
        raise InputError(f"no voxel of the map is above {threshold:.2f}; lower the threshold", "threshold")
    return label_array_to_segment(mask.astype(np.uint8), volume_node, segmentation_node, name, SEGMENT_COLOR)
