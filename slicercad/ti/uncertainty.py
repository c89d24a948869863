"""Uncertainty of the physics null (1 sd), from the data rather than the ROI finder's confidence:

``sd = sqrt(fit_sd² + bootstrap_sd² + (halves_gap / 2)² + PHYSICS_MODEL_FLOOR_MS²)``

* ``fit_sd``: the curve fit's own (Jacobian) sd of the null;
* ``bootstrap_sd``: sd of the null over ``ROI_BOOTSTRAP_N`` resamples of the ROI's pixels (with
  replacement) — how much the ROI's median curve depends on which pixels it holds. Each resampled
  median curve is refitted by ``ROI_BOOTSTRAP_GN_STEPS`` Gauss–Newton steps from the ROI's own fit with
  the analytic Jacobian, all resamples in one batched solve (a resample moves the curve by a fraction
  of the noise, so this lands on the refit's optimum); a resample whose last step still moves its null
  by more than ``ROI_BOOTSTRAP_GN_TOL_MS`` (a poor fit) is refitted in full. Testing/test_ti_core.py
  shows it equals the full bootstrap (each resample refitted with its own search, ``refit=True``);
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
from . import physics


def _gauss_newton_nulls(ti_ms, curves, fit, steps: int) -> np.ndarray:
    """(steps, K) nulls of the (K, m) ``curves`` after each of ``steps`` batched Gauss–Newton steps from
    ``fit`` (NaN where a step leaves the model's range A > 0, B > A)."""
    ti = np.asarray(ti_ms, float)
    scale = fit.a
    p = np.tile([1.0, fit.b / scale, math.log(fit.t1star_ms), fit.floor / scale], (len(curves), 1))
    y = np.asarray(curves, float) / scale
    nulls = []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            f, jac = physics.floored_ir(ti, p, jac=True)
            p = p - (np.linalg.pinv(jac) @ (f - y)[..., None])[..., 0]
            a, b = p[:, 0], p[:, 1]
            ok = (a > 0) & (b > a) & np.all(np.isfinite(p), 1)
            ratio = np.divide(b, a, out=np.full_like(a, 2.0), where=ok)
            nulls.append(np.where(ok, np.exp(np.where(ok, p[:, 2], 0.0)) * np.log(ratio), np.nan))
    return np.array(nulls)


def roi_spread(frames, ti_ms, mask, fit=None, n_boot: int = C.ROI_BOOTSTRAP_N, seed: int = 0,
               refit: bool = False) -> dict:
    """{bootstrap_sd_ms, halves_gap_ms} of the myocardial null for the ROI ``mask`` on ``frames``.
    ``fit``: the ROI's own fit (fitted here when None); ``refit``: fit every resampled curve with its own
    search instead of the linearised refit (the reference the tests and the benchmark compare with)."""
    mask = np.asarray(mask, bool)
    pix = np.asarray(frames, float)[:, mask]
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.integers(0, pix.shape[1], pix.shape[1]) for _ in range(n_boot)])
    curves = np.median(pix[:, draws], axis=2).T                                        # (n_boot, frames)
    if fit is None:
        fit = physics.fit_ir(ti_ms, np.median(pix, axis=1))
    if refit or not (math.isfinite(fit.null_ms) and math.isfinite(fit.floor)):
        nulls = np.array([physics.fit_ir(ti_ms, c).null_ms for c in curves])
    else:
        steps = _gauss_newton_nulls(ti_ms, curves, fit, C.ROI_BOOTSTRAP_GN_STEPS)
        nulls = steps[-1]
        # a resample whose last step still moved its null (a poor fit, far from linear) is refitted
        for k in np.flatnonzero(~(np.abs(steps[-1] - steps[-2]) <= C.ROI_BOOTSTRAP_GN_TOL_MS)):
            nulls[k] = physics.fit_ir(ti_ms, curves[k], (fit.a, fit.b, fit.t1star_ms)).null_ms
    nulls = nulls[np.isfinite(nulls)]
    boot = float(np.std(nulls, ddof=1)) if len(nulls) >= 3 else float("inf")
    rows, cols = np.nonzero(mask)
    upper = rows < rows.mean()
    halves = []
    for part in (upper, ~upper):
        if part.sum() >= 3:
            halves.append(physics.fit_ir(ti_ms, np.median(pix[:, part], axis=1)).null_ms)   # own search: may be far off
    gap = abs(halves[0] - halves[1]) if len(halves) == 2 and all(map(math.isfinite, halves)) else float("nan")
    return {"bootstrap_sd_ms": boot, "halves_gap_ms": gap}


def physics_sd(fit_sd_ms: float, spread: dict) -> float:
    gap = spread["halves_gap_ms"]
    half = 0.0 if not math.isfinite(gap) else gap / 2.0
    return math.sqrt(fit_sd_ms ** 2 + spread["bootstrap_sd_ms"] ** 2 + half ** 2 + C.PHYSICS_MODEL_FLOOR_MS ** 2)
