"""Simple baselines the learned detectors must beat, on the same samples (stacked (N, C + 1, *grid) arrays).

* Normal-atlas voxel z-score: per voxel and channel, mean and standard deviation over the training normals
  (inside their masks; std floored at ATLAS_STD_FLOOR); map = max over channels |x - mean| / std inside the
  mask; case score = mean of the top TOP_FRACTION of the map's mask values (at least TOP_MIN voxels):
  ``top_fraction_mean``, also the learned detectors' map-based case score.
* Age-conditioned atlas (``AgeAtlasZ``): the same z-score against a per-voxel least-squares line in age (the
  case's PatientAge; the phantoms' drawn age) with the residual std -- the normative-model answer to
  age-related atrophy, a control of whether a reference that knows the age stops flagging the oldest normals.
* HU threshold (head CT only): number of mask voxels whose brain-window channel is >= HYPERDENSE_HU (the
  window maps 0..80 HU to [0, 1], so 62 HU -> 0.775): hyperdense (acute blood) volume in voxels.
"""
from __future__ import annotations

import warnings

import numpy as np

from .preprocess import BRAIN_WINDOW

ATLAS_STD_FLOOR = 0.02
TOP_FRACTION, TOP_MIN = 0.01, 5
HYPERDENSE_HU = 62.0


def hyperdense_level() -> float:
    level, width = BRAIN_WINDOW
    return (HYPERDENSE_HU - (level - width / 2)) / width


class AtlasZ:
    def __init__(self, x_train: np.ndarray):
        ch, mask = x_train[:, :-1], x_train[:, -1:] > 0.5
        vals = np.where(mask, ch, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.mean = np.nan_to_num(np.nanmean(vals, 0), nan=0.0)
            self.std = np.maximum(np.nan_to_num(np.nanstd(vals, 0), nan=1.0), ATLAS_STD_FLOOR)

    def maps(self, x: np.ndarray) -> np.ndarray:
        z = np.abs(x[:, :-1] - self.mean) / self.std
        return np.where(x[:, -1] > 0.5, z.max(1), 0.0)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return top_fraction_mean(self.maps(x), x[:, -1] > 0.5)


class AgeAtlasZ:
    """Atlas z-score with each voxel's mean a line in age (fitted over the training normals inside their masks;
    a voxel inside fewer than 3 masks, or of normals all of one age, gets its plain mean); std = the residual
    std about that line (n - 2 degrees of freedom), floored at ATLAS_STD_FLOOR."""

    def __init__(self, x_train: np.ndarray, ages):
        ch, w = x_train[:, :-1], np.broadcast_to(x_train[:, -1:] > 0.5, x_train[:, :-1].shape).astype(np.float64)
        a = np.asarray(ages, dtype=np.float64).reshape((-1,) + (1,) * (ch.ndim - 1))
        self.age0 = float(a.mean())
        u = a - self.age0
        s0, s1, s2 = w.sum(0), (w * u).sum(0), (w * u * u).sum(0)
        sy, suy = (w * ch).sum(0), (w * u * ch).sum(0)
        det = s0 * s2 - s1 ** 2
        fit = (s0 >= 3) & (det > 1e-6 * np.maximum(s0, 1) ** 2)
        self.slope = np.where(fit, (s0 * suy - s1 * sy) / np.where(fit, det, 1.0), 0.0)
        self.intercept = np.where(s0 > 0, (sy - self.slope * s1) / np.maximum(s0, 1), 0.0)
        res = w * (ch - self.intercept - self.slope * u) ** 2
        dof = np.maximum(s0 - np.where(fit, 2, 1), 1)
        self.std = np.maximum(np.where(s0 > 0, np.sqrt(res.sum(0) / dof), 1.0), ATLAS_STD_FLOOR)

    def mean_at(self, ages) -> np.ndarray:
        u = np.asarray(ages, dtype=np.float64).reshape((-1,) + (1,) * self.slope.ndim) - self.age0
        return self.intercept + self.slope * u

    def maps(self, x: np.ndarray, ages) -> np.ndarray:
        z = np.abs(x[:, :-1] - self.mean_at(ages)) / self.std
        return np.where(x[:, -1] > 0.5, z.max(1), 0.0)

    def scores(self, x: np.ndarray, ages) -> np.ndarray:
        return top_fraction_mean(self.maps(x, ages), x[:, -1] > 0.5)


def top_fraction_mean(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per case: mean of the top TOP_FRACTION (at least TOP_MIN) of the map's values inside the mask -- the
    map-based case score shared by the atlas baseline and the learned detectors' ``map_score``."""
    out = []
    for m, msk in zip(maps, masks):
        v = np.sort(m[msk])[::-1]
        k = max(TOP_MIN, int(round(TOP_FRACTION * v.size)))
        out.append(float(v[:k].mean()) if v.size else 0.0)
    return np.asarray(out)


def hu_threshold_scores(x: np.ndarray) -> np.ndarray:
    """Hyperdense voxel count per case (head CT samples)."""
    return ((x[:, 0] >= hyperdense_level()) & (x[:, -1] > 0.5)).reshape(len(x), -1).sum(1).astype(float)


def hu_threshold_maps(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, -1] > 0.5, x[:, 0], 0.0)
