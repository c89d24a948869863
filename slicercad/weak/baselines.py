"""Classical baselines from the same click, on the same canonical crop as the U-Net (numpy/SimpleITK):

- ``sphere``: the sphere of the given diameter at the given centre (the weak label itself);
- ``region_growing``: threshold region growing from the centre on the smoothed crop: the threshold is
  halfway between the median of a seed sphere (``REGION_SEED`` x the given radius) and the median of a
  background shell (``REGION_BACKGROUND`` x the radius), on the lesion's side (bright or dark); limited
  to ``REGION_LIMIT`` x the radius, opened once, holes filled, the component holding the centre;
- ``watershed``: a Grow-from-seeds-like marker watershed on the gradient magnitude: foreground seed
  a sphere of diameter/6 at the centre, background seeds beyond ``WATERSHED_BACKGROUND`` x the given
  radius from the centre.
Each returns a binary crop mask; :func:`..crop.crop_to_image` puts it back on the image grid.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .crop import Crop

REGION_SEED = 0.5
REGION_BACKGROUND = (1.5, 2.2)
REGION_LIMIT = 1.5
WATERSHED_BACKGROUND = 1.5
SMOOTH_PX = 0.8
METHODS = ("sphere", "region_growing", "watershed")


def _radius_px(crop: Crop, fov_factor: float) -> float:
    return crop.grid.GetSize()[0] / fov_factor / 2.0


def _distance(n: int) -> np.ndarray:
    c = (n - 1) / 2.0
    g = np.arange(n) - c
    return np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)


def sphere_crop(crop: Crop, fov_factor: float) -> np.ndarray:
    return (_distance(crop.grid.GetSize()[0]) <= _radius_px(crop, fov_factor)).astype(np.uint8)


def _component_at_centre(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(np.uint8)
    c = tuple(s // 2 for s in mask.shape)
    keep = lab[c]
    if keep == 0:  # nearest component to the centre
        d = _distance(mask.shape[0])
        keep = lab[np.unravel_index(np.argmin(np.where(lab > 0, d, np.inf)), mask.shape)]
    return (lab == keep).astype(np.uint8)


def region_growing_crop(crop: Crop, fov_factor: float) -> np.ndarray:
    n = crop.grid.GetSize()[0]
    r = _radius_px(crop, fov_factor)
    d = _distance(n)
    img = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
        sitk.GetImageFromArray(crop.x01.astype(np.float32)), SMOOTH_PX))
    fg = float(np.median(img[d <= max(1.0, REGION_SEED * r)]))
    bg = float(np.median(img[(d >= REGION_BACKGROUND[0] * r) & (d <= REGION_BACKGROUND[1] * r)]))
    threshold = 0.5 * (fg + bg)
    mask = (img >= threshold) if fg >= bg else (img <= threshold)
    mask &= d <= REGION_LIMIT * r
    mask = ndimage.binary_opening(mask, iterations=1) | (d <= 1.0)
    return _component_at_centre(ndimage.binary_fill_holes(mask))


def watershed_crop(crop: Crop, fov_factor: float) -> np.ndarray:
    n = crop.grid.GetSize()[0]
    r = _radius_px(crop, fov_factor)
    d = _distance(n)
    markers = np.zeros((n, n, n), np.uint32)
    markers[d > WATERSHED_BACKGROUND * r] = 1
    markers[d <= max(1.0, r / 3.0)] = 2
    img = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(crop.x01.astype(np.float32)), SMOOTH_PX)
    grad = sitk.GradientMagnitude(img)
    ws = sitk.MorphologicalWatershedFromMarkers(grad, sitk.GetImageFromArray(markers), markWatershedLine=False,
                                                fullyConnected=False)
    mask = sitk.GetArrayFromImage(ws) == 2
    return _component_at_centre(ndimage.binary_fill_holes(mask))


def baseline_crop(method: str, crop: Crop, fov_factor: float) -> np.ndarray:
    from ..errors import InputError

    if method == "sphere":
        return sphere_crop(crop, fov_factor)
    if method == "region_growing":
        return region_growing_crop(crop, fov_factor)
    if method == "watershed":
        return watershed_crop(crop, fov_factor)
    raise InputError(f"baseline must be one of {METHODS}, got {method!r}", "method")
