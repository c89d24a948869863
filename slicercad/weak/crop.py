"""The one sample path of the semi-automatic segmenter: the same function builds the network input in
training, evaluation, the reported tables, the benchmark, the Slicer panel and batch mode.

A lesion given by a centre (LPS mm) and a size (mm) is cut out on a **canonical crop**: ``CROP_PX``\u00b3
isotropic voxels whose field of view is ``FOV_FACTOR`` x the diameter (so the lesion always spans
``CROP_PX / FOV_FACTOR`` voxels, whatever its size and the scan's spacing), axes along the image's own
direction, linear interpolation; voxels outside the image take the crop's median. Intensities are mapped
to [0, 1] between the crop's 0.5th and 99.5th percentiles (``PERCENTILES``), then to [-1, 1].
Channels: image, positive clicks, negative clicks (Gaussian blobs, sigma ``CLICK_SIGMA_PX``; empty without
clicks). Training adds black/white inversion (probability ``INVERT_PROBABILITY``) and gamma
(log-uniform in ``GAMMA_RANGE``) to the [0, 1] intensities -- nothing else differs between paths.
The network's probability map goes back onto the image grid by :func:`crop_to_image`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from .shapes import check_inside

CROP_PX = 32
FOV_FACTOR = 2.5
PERCENTILES = (0.5, 99.5)
CLICK_SIGMA_PX = 1.5
INVERT_PROBABILITY = 0.5
GAMMA_RANGE = (0.7, 1.5)
CHANNELS = ("image", "positive_clicks", "negative_clicks")
MAX_OFFSET = 0.25      # a report's rough centre: up to a quarter diameter off (training jitter)
SIZE_JITTER = 0.2      # a report's rough size: +-20 %
NORMALISATION = (f"canonical crop {CROP_PX}^3 px over {FOV_FACTOR} x diameter (isotropic, image axes, linear); "
                 f"[p{PERCENTILES[0]:g}, p{PERCENTILES[1]:g}] of the crop -> [0, 1] -> [-1, 1]")


@dataclass(frozen=True)
class CropSpec:
    size_px: int = CROP_PX
    fov_factor: float = FOV_FACTOR

    def __post_init__(self):
        if int(self.size_px) < 8 or int(self.size_px) % 4:
            raise InputError(f"crop size must be a multiple of 4 and >= 8 px, got {self.size_px}", "size_px")
        if not self.fov_factor > 1.0:
            raise InputError(f"field-of-view factor must be > 1 (the crop holds the lesion), got {self.fov_factor}",
                             "fov_factor")

    def spacing_mm(self, diameter_mm: float) -> float:
        return float(self.fov_factor * diameter_mm / self.size_px)


@dataclass
class Crop:
    """A network input: ``x`` [3, N, N, N] float32 (image, +clicks, -clicks), its [0, 1] image ``x01``,
    the crop ``grid`` (empty SimpleITK image, LPS) and the fraction of the crop outside the image."""

    x: np.ndarray
    x01: np.ndarray
    grid: sitk.Image
    outside_fraction: float


def export_crop_mm(diameter_mm: float, spec: CropSpec = CropSpec(), max_offset: float = MAX_OFFSET,
                   size_jitter: float = SIZE_JITTER) -> float:
    """The box (mm, each image axis) a training-set export keeps around a lesion so that every training
    crop of it lies inside: the canonical crop (aligned with the image axes) of the largest jittered size,
    d x (1 + ``size_jitter``), around a centre moved by up to ``max_offset`` x d."""
    d = float(diameter_mm)
    half = spec.fov_factor * d * (1.0 + size_jitter) / 2.0 + max_offset * d
    return float(2.0 * half)


def crop_grid(image: sitk.Image, center_lps, diameter_mm: float, spec: CropSpec = CropSpec()) -> sitk.Image:
    """The empty canonical-crop grid around ``center_lps`` (axes along ``image``'s direction)."""
    if image.GetDimension() != 3:
        raise InputError(f"the segmenter works on 3D images, got {image.GetDimension()}D", "image")
    d = float(diameter_mm)
    if not np.isfinite(d) or d <= 0:
        raise InputError(f"diameter must be > 0 mm, got {diameter_mm}", "diameter_mm")
    c = np.asarray(center_lps, dtype=float).ravel()
    check_inside(image, c, [d])
    n = int(spec.size_px)
    step = spec.spacing_mm(d)
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    grid = sitk.Image([n, n, n], sitk.sitkFloat32)
    grid.SetSpacing([step] * 3)
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((c - direction @ np.full(3, step * (n - 1) / 2.0)).tolist())
    return grid


def resample_onto(image: sitk.Image, grid: sitk.Image, linear: bool = True, default: float = 0.0) -> np.ndarray:
    """``image`` sampled on ``grid`` as a float32 array [k, j, i] (any pixel type in: the resampler writes
    float32 directly, so a large integer volume is never cast as a whole)."""
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(image, grid, sitk.Transform(), interp, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def normalise01(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Map to [0, 1] between the PERCENTILES of the (valid) voxels."""
    ref = values if valid is None else values[valid]
    if ref.size == 0:
        raise GeometryError("the crop lies entirely outside the image", "center")
    lo, hi = np.percentile(ref, PERCENTILES)
    if not hi > lo:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def click_channel(grid: sitk.Image, points_lps, sigma_px: float = CLICK_SIGMA_PX) -> np.ndarray:
    """Gaussian blobs (peak 1) at ``points_lps`` on ``grid``; points outside the crop are ignored."""
    n = grid.GetSize()
    out = np.zeros(n[::-1], np.float32)
    pts = np.asarray(points_lps if points_lps is not None else [], dtype=float).reshape(-1, 3)
    if not len(pts):
        return out
    kk, jj, ii = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in n[::-1]], indexing="ij")
    for p in pts:
        i, j, k = grid.TransformPhysicalPointToContinuousIndex(p.tolist())
        if -3 * sigma_px <= min(i, j, k) and max(i, j, k) <= max(n) - 1 + 3 * sigma_px:
            out = np.maximum(out, np.exp(-((ii - i) ** 2 + (jj - j) ** 2 + (kk - k) ** 2) / (2 * sigma_px ** 2)))
    return out


def assemble(x01: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """[3, N, N, N] network input from [0, 1] intensities and the two click channels."""
    return np.stack([2.0 * x01 - 1.0, positive, negative]).astype(np.float32)


def canonical_crop(image: sitk.Image, center_lps, diameter_mm: float, spec: CropSpec = CropSpec(),
                   positive_lps=None, negative_lps=None) -> Crop:
    """The network input for one lesion (see the module docstring)."""
    grid = crop_grid(image, center_lps, diameter_mm, spec)
    values = resample_onto(image, grid, True, np.nan)
    valid = np.isfinite(values)
    if not valid.any():
        raise GeometryError("the crop lies entirely outside the image", "center")
    values = np.where(valid, values, np.median(values[valid]))
    x01 = normalise01(values, valid)
    x = assemble(x01, click_channel(grid, positive_lps), click_channel(grid, negative_lps))
    return Crop(x, x01, grid, float(1.0 - valid.mean()))


def augment_intensity(x01: np.ndarray, rng: np.random.Generator, invert: bool = True) -> np.ndarray:
    """Training-time intensity augmentation of [0, 1] intensities: gamma (log-uniform in GAMMA_RANGE),
    then black/white inversion with probability INVERT_PROBABILITY (when ``invert``)."""
    gamma = float(np.exp(rng.uniform(np.log(GAMMA_RANGE[0]), np.log(GAMMA_RANGE[1]))))
    out = np.power(np.clip(x01, 0.0, 1.0), gamma)
    if invert and rng.random() < INVERT_PROBABILITY:
        out = 1.0 - out
    return out.astype(np.float32)


def crop_to_image(values: np.ndarray, grid: sitk.Image, reference: sitk.Image, linear: bool = True) -> np.ndarray:
    """A crop array [k, j, i] (probabilities or a mask) resampled onto ``reference``'s grid; only the
    crop's bounding box is computed, the rest is 0. Returns a float32 array shaped like ``reference``."""
    crop = sitk.GetImageFromArray(np.asarray(values, dtype=np.float32))
    crop.CopyInformation(grid)
    n = np.array(grid.GetSize()) - 1
    corners = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])], float)
    idx = np.array([reference.TransformPhysicalPointToContinuousIndex(
        grid.TransformContinuousIndexToPhysicalPoint(p.tolist())) for p in corners])
    size = np.array(reference.GetSize())
    lo = np.clip(np.floor(idx.min(0)).astype(int) - 1, 0, size - 1)
    hi = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, size - 1)
    out = np.zeros(size[::-1], np.float32)
    if np.any(idx.max(0) < 0) or np.any(idx.min(0) > size - 1):
        return out
    sub = sitk.Image([int(v) for v in hi - lo + 1], sitk.sitkFloat32)
    sub.SetSpacing(reference.GetSpacing())
    sub.SetDirection(reference.GetDirection())
    sub.SetOrigin(reference.TransformIndexToPhysicalPoint([int(v) for v in lo]))
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    part = sitk.Resample(crop, sub, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    out[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = sitk.GetArrayFromImage(part)
    return out
