"""Simple baselines the learned detectors must beat, on the same samples (stacked (N, C + 1, *grid) arrays).

* Normal-atlas voxel z-score: per voxel and channel, mean and std of the intensities over the training normals
  inside their masks, with the learned maps' reference statistics and standardisation (``reference``: shrunk std
  with its floor, two-sided, smoothed in the mask -- the atlas is not handicapped by a noisier map than theirs);
  case score = mean of the top TOP_FRACTION of the map's mask values (at least TOP_MIN voxels):
  ``top_fraction_mean``, also the learned detectors' map-based case score.
* Age-conditioned atlas (``AgeAtlasZ``, reproduction only: the panel and CLI do not read PatientAge): the same
  z-score against a per-voxel least-squares line in age (the phantoms' drawn age) with the residual std -- the
  normative-model answer to age-related atrophy: does a reference that knows the age stop flagging the oldest?
* HU threshold (head CT only): number of mask voxels whose brain-window channel is >= HYPERDENSE_HU (the
  window maps 0..80 HU to [0, 1], so 62 HU -> 0.775): hyperdense (acute blood) volume in voxels.
"""
from __future__ import annotations

import numpy as np

from .preprocess import BRAIN_WINDOW
from .reference import channel_median, shrunk_std, standardise, std_floor, voxel_stats

TOP_FRACTION, TOP_MIN = 0.01, 5
HYPERDENSE_HU = 62.0


def hyperdense_level() -> float:
    level, width = BRAIN_WINDOW
    return (HYPERDENSE_HU - (level - width / 2)) / width


def _scored(x: np.ndarray) -> np.ndarray:
    return x[:, -1] > 0.5


class AtlasZ:
    def __init__(self, x_train: np.ndarray):
        self.mean, std, floor, _ = voxel_stats(np.where(x_train[:, -1:] > 0.5, x_train[:, :-1], np.nan))
        self.std = np.maximum(std, floor)

    def maps(self, x: np.ndarray) -> np.ndarray:
        return standardise(x[:, :-1], self.mean, self.std, _scored(x))

    def scores(self, x: np.ndarray) -> np.ndarray:
        return top_fraction_mean(self.maps(x), _scored(x))


class AgeAtlasZ:
    """Atlas z-score with each voxel's mean a line in age (fitted over the training normals inside their masks;
    a voxel inside fewer than 3 masks, or of normals all of one age, gets its plain mean); std = the residual
    std about that line (``residual_var``, n - 2 degrees of freedom) shrunk towards its channel's median with
    the degrees of freedom as weight, floored at half the median std. Unlike ``AtlasZ`` a voxel outside every
    training mask gets mean 0 and std 1 (not the channel's median mean and prior std)."""

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
        dof = np.maximum(s0 - np.where(fit, 2, 1), 1)
        self.residual_var = (w * (ch - self.intercept - self.slope * u) ** 2).sum(0) / dof
        seen = s0 > 0
        std = np.where(seen, shrunk_std(self.residual_var, dof, channel_median(self.residual_var, seen)), 1.0)
        self.std = np.maximum(std, std_floor(std, seen))

    def mean_at(self, ages) -> np.ndarray:
        u = np.asarray(ages, dtype=np.float64).reshape((-1,) + (1,) * self.slope.ndim) - self.age0
        return self.intercept + self.slope * u

    def maps(self, x: np.ndarray, ages) -> np.ndarray:
        return standardise(x[:, :-1], self.mean_at(ages), self.std, _scored(x))

    def scores(self, x: np.ndarray, ages) -> np.ndarray:
        return top_fraction_mean(self.maps(x, ages), _scored(x))


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
