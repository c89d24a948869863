"""Normal reference statistics shared by every standardised map (Glow, f-AnoGAN, the atlas baselines), numpy only.

* Voxel-wise mean / std over normal cases (NaN = outside a case's mask); each voxel's std is shrunk towards its
  channel's median variance with PRIOR_COUNT pseudo-normals (a voxel inside only 1-2 masks -- the mask edge --
  would otherwise get a near-zero std); floor: half the median std over voxels inside some mask.
* Standardised map: max over channels of |raw - mean| / std (**two-sided**: a region unusually likely, or darker
  than expected, is as atypical as an unlikely one), smoothed inside the mask with a Gaussian of
  MAP_SMOOTH_SIGMA_VOX voxels (normalised convolution: the noisiest single voxels at the mask's edge no longer
  hold the peak), 0 outside the mask.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

PRIOR_COUNT = 4                  # pseudo-normals of the median variance mixed into each voxel's variance
MAP_SMOOTH_SIGMA_VOX = 1.0       # the standardised map is smoothed within the mask (normalised convolution)


def shrunk_std(var: np.ndarray, n: np.ndarray, prior_var) -> np.ndarray:
    """sqrt((n var + PRIOR_COUNT prior_var) / (n + PRIOR_COUNT))."""
    return np.sqrt((n * var + PRIOR_COUNT * prior_var) / (n + PRIOR_COUNT))


def channel_median(values: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per channel (axis 0 of (C', *grid)) the median over seen voxels, shaped to broadcast."""
    med = [float(np.median(v[m])) if m.any() else 0.0 for v, m in zip(values, seen)]
    return np.asarray(med).reshape((-1,) + (1,) * (values.ndim - 1))


def voxel_stats(raw: np.ndarray):
    """(mean, std, floor, prior) of (N, C', *grid) raw maps (NaN outside a case's mask): a voxel outside every
    mask gets its channel's median mean and the prior std; prior = {'var', 'mean'} per channel."""
    valid = ~np.isnan(raw)
    n = valid.sum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)       # voxels outside every normal's mask
        mean = np.nan_to_num(np.nanmean(raw, 0), nan=0.0)
        var = np.nan_to_num(np.nanvar(raw, 0), nan=0.0)
    seen = n > 0
    prior = {"var": channel_median(var, seen), "mean": channel_median(mean, seen)}
    std = np.where(seen, shrunk_std(var, n, prior["var"]), np.sqrt(prior["var"]))
    mean = np.where(seen, mean, prior["mean"])
    return mean, std, std_floor(std, seen), prior


def std_floor(std: np.ndarray, seen: np.ndarray) -> float:
    return max(float(np.median(std[seen])) * 0.5, 1e-4) if seen.any() else 1.0


def smooth_in_mask(maps: np.ndarray, mask: np.ndarray, sigma: float = MAP_SMOOTH_SIGMA_VOX) -> np.ndarray:
    """Gaussian smoothing of (N, *S) maps inside ``mask`` only (sum(g * m * v) / sum(g * m)); 0 outside."""
    v = np.where(mask, maps, np.zeros((), maps.dtype))
    if sigma <= 0:
        return v
    m = mask.astype(v.dtype)
    out = np.zeros_like(v)
    for i in range(len(v)):
        num = ndimage.gaussian_filter(v[i], sigma, mode="constant")
        den = ndimage.gaussian_filter(m[i], sigma, mode="constant")
        out[i] = np.where(m[i] > 0, num / np.maximum(den, 1e-6), 0.0)
    return out


def standardise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Two-sided map of (N, C', *S) raw maps against ``mean`` / ``std`` ((C', *S), or per case (N, C', *S)),
    smoothed in the (N, *S) ``mask``."""
    z = (np.abs(raw - mean) / np.maximum(std, 1e-4)).max(1)
    return smooth_in_mask(np.nan_to_num(z, nan=0.0), mask)
