"""Uncertainty of the physics null (1 sd), from the data rather than the ROI finder's confidence:

``sd = sqrt(fit_sd² + bootstrap_sd² + (halves_gap / 2)² + PHYSICS_MODEL_FLOOR_MS²)``

* ``fit_sd``: the curve fit's own (Jacobian) sd of the null;
* ``bootstrap_sd``: sd of the null over ``ROI_BOOTSTRAP_N`` resamples of the ROI's pixels (with
  replacement) — how much the ROI's median curve depends on which pixels it holds;
* ``halves_gap``: |null of one half of the ROI - null of the other| (split through the ROI's centroid):
  partial volume with blood, scar or a misplaced ROI in part of the ring. Above ``ROI_HALVES_FLAG_MS``
  the fit is flagged (left out of the fusion; physics-only output says LOW CONFIDENCE);
* ``PHYSICS_MODEL_FLOOR_MS``: model error (a median curve of a pixel mixture is not one
  inversion-recovery curve): chosen for ~68 % coverage at 1 sd on VALIDATION phantoms
  (``evaluate.VALIDATION_SEED``, never the test seed); the evaluation reports the coverage at 1 and 2 sd
  on the held-out test phantoms.
"""
from __future__ import annotations

import math

import numpy as np

from . import constants as C
from .physics import fit_ir


def roi_spread(frames, ti_ms, mask, fit=None, n_boot: int = C.ROI_BOOTSTRAP_N, seed: int = 0) -> dict:
    """{bootstrap_sd_ms, halves_gap_ms} of the myocardial null for the ROI ``mask`` on ``frames``; the
    resampled curves' fits start from ``fit`` (the ROI's own fit) when given (same optimum, ~40 % faster)."""
    mask = np.asarray(mask, bool)
    pix = np.asarray(frames, float)[:, mask]
    start = None if fit is None or not math.isfinite(fit.null_ms) else (fit.a, fit.b, fit.t1star_ms)
    rng = np.random.default_rng(seed)
    nulls = []
    for _ in range(n_boot):
        resampled = fit_ir(ti_ms, np.median(pix[:, rng.integers(0, pix.shape[1], pix.shape[1])], axis=1), start)
        if math.isfinite(resampled.null_ms):
            nulls.append(resampled.null_ms)
    boot = float(np.std(nulls, ddof=1)) if len(nulls) >= 3 else float("inf")
    rows, cols = np.nonzero(mask)
    upper = rows < rows.mean()
    halves = []
    for part in (upper, ~upper):
        if part.sum() >= 3:
            halves.append(fit_ir(ti_ms, np.median(pix[:, part], axis=1)).null_ms)   # own search: may be far off
    gap = abs(halves[0] - halves[1]) if len(halves) == 2 and all(map(math.isfinite, halves)) else float("nan")
    return {"bootstrap_sd_ms": boot, "halves_gap_ms": gap}


def physics_sd(fit_sd_ms: float, spread: dict) -> float:
    gap = spread["halves_gap_ms"]
    half = 0.0 if not math.isfinite(gap) else gap / 2.0
    return math.sqrt(fit_sd_ms ** 2 + spread["bootstrap_sd_ms"] ** 2 + half ** 2 + C.PHYSICS_MODEL_FLOOR_MS ** 2)
