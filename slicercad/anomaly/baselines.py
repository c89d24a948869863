"""Simple baselines the learned detectors must beat, on the same samples (stacked (N, C + 1, *grid) arrays).

* Normal-atlas voxel z-score: per voxel and channel, mean and standard deviation over the training normals
  (inside their masks; std floored at ATLAS_STD_FLOOR); map = max over channels |x - mean| / std inside the
  mask; case score = mean of the top TOP_FRACTION of the map's mask values (at least TOP_MIN voxels):
  ``top_fraction_mean``, also the learned detectors' map-based case score.
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
