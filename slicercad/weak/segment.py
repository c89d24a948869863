"""Serving the semi-automatic segmenter: centre + size (+ optional correction clicks) -> a label on the
image grid, through :func:`..crop.canonical_crop` (the same sample path as training) and
:func:`..crop.crop_to_image`. The component nearest the centre is kept; an empty result is flagged."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError, ModelError
from ..geometry import physical_to_ijk, to_lps
from .crop import Crop, CropSpec, canonical_crop, crop_to_image
from .shapes import equivalent_diameter

DEMO_MODEL = "weak_lesion_demo"
THRESHOLD = 0.5
EMPTY_MESSAGE = ("no lesion found at this point: check the centre and the diameter, add a positive click "
                 "inside the lesion, or use Sphere")


@dataclass
class SegmentResult:
    """Label on the image grid (uint8 [k, j, i]), crop-space probability and bookkeeping."""

    mask: np.ndarray
    probability: np.ndarray
    crop: Crop
    method: str
    volume_mm3: float
    empty: bool
    warnings: list = field(default_factory=list)

    def label_image(self, reference: sitk.Image) -> sitk.Image:
        img = sitk.GetImageFromArray(self.mask.astype(np.uint8))
        img.CopyInformation(reference)
        return img


def demo_model_path() -> Path:
    from ..engine.registry import BUNDLED_DIR

    return BUNDLED_DIR / f"{DEMO_MODEL}.json"


def load_segmenter(card_path=None):
    """(model, card) of a ``weak_lesion`` model (default: the bundled SYNTHETIC demo model)."""
    from ..engine.registry import load_model
    from .task import TASK_NAME

    path = Path(card_path) if card_path not in (None, "", ".") else demo_model_path()
    if not path.is_file():
        raise ModelError("weak-label segmenter model card not found; rebuild the bundled one with "
                         "`make weak-model` or train one with `slicercad train weak_lesion`", path)
    return load_model(path, task=TASK_NAME)


def spec_of_card(card: dict) -> CropSpec:
    spec = card["input_spec"]
    return CropSpec(int(spec["roi_px"][0]), float(spec["fov_factor"]))


def resolve_device(device: str = "cpu"):
    import torch

    name = str(device or "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu"), ["CUDA is not available here: ran on the CPU"]
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InputError(f"device must be 'cpu' or 'cuda', got {device!r}", "device")
    return torch.device(name), []


def predict_crops(model, xs: np.ndarray, device="cpu", batch_size: int = 8) -> np.ndarray:
    """Sigmoid probabilities [B, N, N, N] of network inputs [B, 3, N, N, N]."""
    import torch

    dev, _ = resolve_device(str(device))
    model = model.to(dev).eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(xs), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(xs[s:s + batch_size])).to(dev)
            out.append(torch.sigmoid(model(x).float())[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + xs.shape[2:], np.float32)


def keep_nearest_component(mask: np.ndarray, reference: sitk.Image, center_lps) -> np.ndarray:
    """The connected component (26-connected) holding, or else nearest to, the centre (labelled within
    the mask's bounding box only: the rest of a large volume is not touched)."""
    mask = np.asarray(mask) > 0
    out = np.zeros(mask.shape, np.uint8)
    box = _bounding_box(mask)
    if box is None:
        return out
    lab, n = ndimage.label(mask[box], structure=np.ones((3, 3, 3)))
    if n <= 1:
        out[box] = lab > 0
        return out
    kji = np.clip(np.round(physical_to_ijk(reference, center_lps)[::-1]).astype(int), 0, np.array(mask.shape) - 1)
    local = kji - [b.start for b in box]
    keep = lab[tuple(local)] if np.all(local >= 0) and np.all(local < lab.shape) else 0
    if keep == 0:
        pts = np.argwhere(lab > 0)
        keep = lab[tuple(pts[np.argmin(np.linalg.norm(pts - local, axis=1))])]
    out[box] = lab == keep
    return out


def _bounding_box(mask: np.ndarray):
    """Slices of the smallest box holding every True voxel (None when there is none)."""
    spans = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hit):
            return None
        spans.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(spans)


def finish(values: np.ndarray, crop: Crop, reference: sitk.Image, center_lps, method: str,
           warnings=None, threshold: float = THRESHOLD) -> SegmentResult:
    """Crop-space probability or mask -> label on ``reference`` (threshold, nearest component)."""
    on_grid = crop_to_image(values, crop.grid, reference)
    mask = keep_nearest_component(on_grid >= threshold, reference, center_lps)
    warnings = list(warnings or [])
    if crop.outside_fraction > 0.05:
        warnings.append(f"{crop.outside_fraction:.0%} of the crop lies outside the image")
    empty = not mask.any()
    if empty:
        warnings.append(EMPTY_MESSAGE)
    volume = float(mask.sum() * np.prod(reference.GetSpacing()))
    return SegmentResult(mask, np.asarray(values, np.float32), crop, method, volume, empty, warnings)


def lesion_crop(image: sitk.Image, center, diameter_mm, system: str = "LPS", spec: CropSpec = CropSpec(),
                positive=None, negative=None) -> tuple:
    """(crop, centre LPS, equivalent diameter) for a centre in ``system`` and one or three diameters."""
    c = to_lps(np.asarray(center, float), system)
    d = equivalent_diameter(diameter_mm)
    pos = None if positive is None else to_lps(np.asarray(positive, float).reshape(-1, 3), system)
    neg = None if negative is None else to_lps(np.asarray(negative, float).reshape(-1, 3), system)
    return canonical_crop(image, c, d, spec, pos, neg), c, d


def diameter_warnings(card: dict, diameter_mm: float) -> list:
    """ModelError outside the crop's hard limits (the card's ``hard_limits_mm``, else 3-60 mm); a warning
    outside the diameters the model was trained on (``valid_ranges``): a weak label to check, not refused."""
    from .task import HARD_LIMITS_MM

    spec = card.get("input_spec", {})
    lo, hi = spec.get("hard_limits_mm", HARD_LIMITS_MM)
    d = float(diameter_mm)
    if not lo <= d <= hi:
        raise ModelError(f"diameter_mm={d:g} is outside the range the segmenter handles [{lo:g}, {hi:g}] mm",
                         "diameter_mm")
    t_lo, t_hi = spec.get("valid_ranges", {}).get("diameter_mm", (lo, hi))
    if not t_lo <= d <= t_hi:
        return [f"diameter {d:.1f} mm is outside the range the model was trained on [{t_lo:g}, {t_hi:g}] mm: "
                "check the label"]
    return []


def segment_lesion(model, card: dict, image: sitk.Image, center, diameter_mm, system: str = "LPS",
                   positive=None, negative=None, device: str = "cpu",
                   threshold: float = THRESHOLD) -> SegmentResult:
    """U-Net segmentation of one lesion given its centre and size (the product path)."""
    d = equivalent_diameter(diameter_mm)
    warnings = diameter_warnings(card, d)
    crop, c, _ = lesion_crop(image, center, diameter_mm, system, spec_of_card(card), positive, negative)
    _, device_warnings = resolve_device(device)
    warnings += device_warnings
    prob = predict_crops(model, crop.x[None], device)[0]
    return finish(prob, crop, image, c, "unet", warnings, threshold)


def sphere_shape(diameters_mm, axes=None) -> tuple:
    """(diameters to draw, warnings): unequal diameters without ``axes`` (a report's long / short axis
    carries no direction) become the sphere of the same volume, flagged -- drawn along the LPS axes they
    would put the long axis left-right whatever the lesion's orientation."""
    d = np.atleast_1d(np.asarray(diameters_mm, dtype=float)).ravel()
    if axes is not None or d.size == 1 or np.allclose(d, d[0]):
        return diameters_mm, []
    eq = equivalent_diameter(d)
    return eq, [f"diameters {np.round(d, 1).tolist()} mm without a direction: drawn as the sphere of the same "
                f"volume (d {eq:.1f} mm); give the axes (an ROI) for an oriented ellipsoid"]


def segment_baseline(method: str, image: sitk.Image, center, diameter_mm, system: str = "LPS",
                     spec: CropSpec = CropSpec(), axes=None) -> SegmentResult:
    """A classical baseline from the same click; ``sphere`` is drawn exactly on the image grid (an
    ellipsoid only along given ``axes``, see :func:`sphere_shape`)."""
    from .baselines import baseline_crop
    from .shapes import ellipsoid_label

    crop, c, d = lesion_crop(image, center, diameter_mm, system, spec)
    if method == "sphere":
        shape, warnings = sphere_shape(diameter_mm, axes)
        mask = sitk.GetArrayFromImage(ellipsoid_label(image, c, shape, "LPS", axes))
        return SegmentResult(mask, np.zeros(0, np.float32), crop, "sphere",
                             float(mask.sum() * np.prod(image.GetSpacing())), not mask.any(), warnings)
    return finish(baseline_crop(method, crop, spec.fov_factor).astype(np.float32), crop, image, c, method)
