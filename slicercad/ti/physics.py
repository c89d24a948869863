"""Inversion-recovery physics on a TI scout: curve fit with polarity restoration, null TIs with an
uncertainty from the fit, the myocardial ROI finder, and the documented scout -> LGE rule.

Model (Look-Locker magnitude): ``S(TI) = |A - B exp(-TI / T1*)|``; null ``TI0 = T1* ln(B / A)``;
apparent-to-true T1 (Deichmann & Haase 1992): ``T1 = T1* (B / A - 1)``.
Fit: variable projection over a log grid of T1* and every polarity split (frames before the split
negated, i.e. polarity restoration), then Levenberg–Marquardt on the magnitude model. The null's
standard deviation comes from the fit covariance ``s^2 (J^T J)^-1`` (s^2 = RSS / (n - 4)) by the delta
method, so it grows with the residual noise; with n <= 4 it is infinite. The refined model carries a
noise floor ``sqrt((A - B e)^2 + f^2)`` (the magnitude of noise near the null is not zero: Rician).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import numpy as np
from scipy import ndimage, optimize

from ..errors import InputError
from . import constants as C


def ir_signal(ti_ms, a, b, t1star_ms, signed=False):
    s = a - b * np.exp(-np.asarray(ti_ms, float) / t1star_ms)
    return s if signed else np.abs(s)


def null_of(a, b, t1star_ms) -> float:
    return float(t1star_ms * math.log(b / a)) if a > 0 and b > a else float("nan")


@dataclasses.dataclass
class IRFit:
    a: float
    b: float
    t1star_ms: float
    null_ms: float
    null_sd_ms: float
    t1_ms: float              # Deichmann-Haase corrected T1
    nrmse: float              # residual RMS / signal range
    n_points: int
    good: bool
    reasons: list
    floor: float = float("nan")   # noise floor c of sqrt((A - B e)² + c²), signal units

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def floored_ir(ti, p, jac: bool = False):
    """The fitted model ``sqrt((A - B e)² + c²)``, ``e = exp(-TI / exp(g))``, for parameters
    ``p = (A, B, g = log T1*, c)`` of shape (..., 4): values (..., m), and with ``jac`` also the
    Jacobian (..., m, 4) (``fit_ir`` and the linearised ROI bootstrap share it)."""
    p = np.asarray(p, float)
    a, b, g, c = (p[..., i, None] for i in range(4))
    e = np.exp(-ti / np.exp(g))
    u = a - b * e
    f = np.sqrt(u * u + c * c)
    if not jac:
        return f
    s = np.maximum(f, 1e-12)
    return f, np.stack([u, -u * e, -u * b * e * ti * np.exp(-g), np.broadcast_to(c, u.shape)], -1) / s[..., None]


def _varpro_start(ti, y):
    """(A, B, T1*) of the best linear fit over the T1* grid and every polarity split, or None.

    For each grid T1* the model ``A - B e`` is linear: the 2x2 normal equations are solved in closed
    form for every grid value and split at once, and so is each residual sum of squares (one vectorised
    pass, no (grid, split, frame) array)."""
    lo, hi, n = C.T1STAR_GRID_MS
    grid = np.geomspace(lo, hi, int(n))
    m = len(ti)
    signs = np.where(np.arange(m)[None, :] < np.arange(m + 1)[:, None], -1.0, 1.0)   # (K, m)
    ys = signs * y[None, :]                                                          # (K, m)
    e = np.exp(-ti[None, :] / grid[:, None])                                         # (G, m)
    s1, s2 = e.sum(1), (e * e).sum(1)                                                # (G,)
    r0, r1 = ys.sum(1), e @ ys.T                                                     # (K,), (G, K)
    det = m * s2 - s1 * s1
    safe = np.where(det > 1e-12, det, np.inf)[:, None]
    a = (s2[:, None] * r0[None, :] - s1[:, None] * r1) / safe                        # (G, K)
    b = (s1[:, None] * r0[None, :] - m * r1) / safe
    resid = float(y @ y) - (a * r0[None, :] - b * r1)        # RSS of a least-squares fit: y.y - theta.X'y
    resid = np.where((a > 0) & (b > a) & np.isfinite(safe), resid, np.inf)
    g, k = np.unravel_index(int(np.argmin(resid)), resid.shape)
    return None if not np.isfinite(resid[g, k]) else (a[g, k], b[g, k], grid[g])


def fit_ir(ti_ms, signal, start=None) -> IRFit:
    """Fit ``|A - B exp(-TI/T1*)|`` to one ROI curve (TIs need not be sorted). ``start``: (A, B, T1*)
    of a fit to a nearby curve (the ROI bootstrap) instead of the variable-projection search."""
    ti = np.asarray(ti_ms, float).reshape(-1)
    y = np.asarray(signal, float).reshape(-1)
    if ti.shape != y.shape:
        raise InputError(f"{ti.size} TIs for {y.size} signal values", "signal")
    if not (np.all(np.isfinite(ti)) and np.all(np.isfinite(y))):
        raise InputError("TI and signal must be finite", "signal")
    if np.unique(ti).size < C.MIN_DISTINCT_TIS:
        raise InputError(f"{np.unique(ti).size} distinct TIs; the fit needs {C.MIN_DISTINCT_TIS}", "TI")
    order = np.argsort(ti, kind="stable")
    ti, y = ti[order], y[order]
    scale = float(np.max(np.abs(y))) or 1.0
    yn = y / scale
    start = _varpro_start(ti, yn) if start is None else (start[0] / scale, start[1] / scale, start[2])
    reasons = []
    if start is None:
        return IRFit(float("nan"), float("nan"), float("nan"), float("nan"), float("inf"), float("nan"),
                     float("inf"), len(ti), False, ["no inversion-recovery curve fits (no null)"])
    a0, b0, g0 = start

    def resid(p):
        return floored_ir(ti, p) - yn

    def jac(p):
        return floored_ir(ti, p, jac=True)[1]

    floor0 = 0.5 * float(np.min(yn))
    sol = optimize.least_squares(resid, [a0, b0, math.log(g0), floor0], jac=jac, method="lm", xtol=1e-10,
                                 ftol=1e-10)
    p = sol.x
    if not (p[0] > 0 and p[1] > p[0]):
        p = np.array([a0, b0, math.log(g0), floor0])
    a, b, t1s = float(p[0]), float(p[1]), float(math.exp(p[2]))
    r = resid(p)
    n = len(ti)
    rss = float(r @ r)
    span = float(np.ptp(yn)) or 1.0
    nrmse = math.sqrt(rss / n) / span
    null = null_of(a, b, t1s)
    sd = float("inf")
    if n > 4:
        J = sol.jac
        try:
            cov = np.linalg.pinv(J.T @ J) * rss / (n - 4)
            # derivatives of T1* ln(B/A) with respect to (A, B, log T1*, floor)
            grad = np.array([-t1s / a, t1s / b, t1s * math.log(b / a), 0.0])
            var = float(grad @ cov @ grad)
            sd = math.sqrt(var) if var >= 0 and math.isfinite(var) else float("inf")
        except (np.linalg.LinAlgError, ValueError):
            sd = float("inf")
    if nrmse > C.BAD_FIT_NRMSE:
        reasons.append(f"poor inversion-recovery fit (residual {nrmse:.2f} of the signal range > "
                       f"{C.BAD_FIT_NRMSE}): frames out of TI order, motion, or not a TI scout")
    if not math.isfinite(sd) or sd > C.BAD_FIT_MAX_UNCERTAINTY_MS:
        reasons.append(f"null TI uncertain (sd {sd:.0f} ms > {C.BAD_FIT_MAX_UNCERTAINTY_MS:g} ms)")
    if math.isfinite(null) and not (ti[0] <= null <= ti[-1]):
        reasons.append(f"null {null:.0f} ms lies outside the scout's TIs {ti[0]:g}–{ti[-1]:g} ms (extrapolated)")
    return IRFit(a * scale, b * scale, t1s, null, sd, t1s * (b / a - 1.0), nrmse, n, not reasons, reasons,
                 abs(float(p[3])) * scale)


def roi_curve(frames, mask) -> np.ndarray:
    """Median of each frame inside ``mask`` (robust to a few scar or blood pixels in the ROI)."""
    mask = np.asarray(mask, bool)
    if mask.shape != frames.shape[1:]:
        raise InputError(f"ROI mask {mask.shape} does not match the frames {frames.shape[1:]}", "ROI")
    if mask.sum() < 3:
        raise InputError(f"ROI holds {int(mask.sum())} pixel(s); draw or find at least 3", "ROI")
    return np.median(frames[:, mask], axis=1)


# ---------------------------------------------------------------------------------------------
# automatic ROI: LV blood pool (a round, late-bright blob) and the ring around it that nulls later

@dataclasses.dataclass
class FoundROI:
    myocardium: np.ndarray
    blood: np.ndarray
    confidence: float
    reason: str


def pixel_null_map(frames, ti_ms) -> np.ndarray:
    """TI of each pixel's minimum (parabola through the minimum and its neighbours)."""
    ti = np.asarray(ti_ms, float)
    k = np.argmin(frames, axis=0)
    k = np.clip(k, 1, len(ti) - 2)
    rows, cols = np.indices(k.shape)
    y0, y1, y2 = frames[k - 1, rows, cols], frames[k, rows, cols], frames[k + 1, rows, cols]
    denom = y0 - 2 * y1 + y2
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (y0 - y2) / np.where(denom == 0, 1, denom), 0.0)
    shift = np.clip(shift, -1, 1)
    t_lo, t, t_hi = ti[k - 1], ti[k], ti[k + 1]
    return np.where(shift < 0, t + shift * (t - t_lo), t + shift * (t_hi - t))


def _disk(r):
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.hypot(yy, xx) <= r).astype(float)


def _annulus(r_in, r_out):
    yy, xx = np.mgrid[-r_out:r_out + 1, -r_out:r_out + 1]
    d = np.hypot(yy, xx)
    return ((d > r_in) & (d <= r_out)).astype(float)


@functools.lru_cache(maxsize=8)
def _kernel_spectra(radii: tuple, wall: int, image_shape: tuple):
    """(spectra [kernels, fy, fx], FFT shape, half size) of the disk and annulus of every radius, each
    centred in one odd square (cached: a scanner's scouts share spacing and size)."""
    from scipy import fft

    kernels = [k for r in radii for k in (_disk(r), _annulus(r + 1, r + 1 + wall))]
    size = max(k.shape[0] for k in kernels)
    half = size // 2
    shape = tuple(fft.next_fast_len(n + size - 1, real=True) for n in image_shape)
    padded = np.zeros((len(kernels), size, size), np.float32)
    for i, k in enumerate(kernels):
        o = half - k.shape[0] // 2
        padded[i, o:o + k.shape[0], o:o + k.shape[1]] = k
    return fft.rfft2(padded, shape, workers=-1), shape, half, tuple(float(k.sum()) for k in kernels)


def _kernel_sums(images, radii: tuple, wall: int) -> np.ndarray:
    """'same'-size correlations [kernels, c, H, W] of every image [c, H, W] with the disk and the annulus
    of every radius (symmetric kernels: equal to convolutions): one FFT per image, one inverse FFT for
    all, in single precision (the caller centres its values, so rounding stays far below what it
    resolves)."""
    from scipy import fft

    spectra, shape, half, _ = _kernel_spectra(tuple(radii), int(wall), tuple(images.shape[1:]))
    full = fft.irfft2(fft.rfft2(images.astype(np.float32), shape, workers=-1)[None] * spectra[:, None], shape,
                      workers=-1)
    return full[..., half:half + images.shape[1], half:half + images.shape[2]]


BLOOD_RADII_MM = (12.0, 14.5, 17.0, 19.5, 22.0, 25.0, 28.0)   # mid-ventricular LV cavity radii
CENTRE_PRIOR = 0.35   # the scout is planned on the heart: score x exp(-(distance / (0.35 FOV))^2)
WALL_MM = 9.0


def find_myocardium(frames, ti_ms, spacing_mm=None) -> FoundROI:
    """Find the LV blood pool and the myocardial ring; InputError('no myocardium found') if none.

    Matched filter on the per-pixel null map: a disk (blood, early null) inside an annulus one wall
    thick (myocardium, later null), over centres and radii; score = (ring null - disk null) / pooled
    sd x the fraction of pixels with signal. The myocardium is then the annulus pixels that null
    closer to the ring than to the blood (scar, blood and partial-volume pixels drop out)."""
    frames = np.asarray(frames, float)
    spacing = float(np.mean(spacing_mm)) if spacing_mm else 2.5
    peak = frames.max(0)
    valid = (peak > 0.2 * float(np.percentile(peak, 99))).astype(float)
    nullmap = pixel_null_map(frames, ti_ms)
    centre = float(np.mean(nullmap[valid > 0])) if valid.any() else 0.0   # centred for the FFT sums
    nv, nv2 = (nullmap - centre) * valid, (nullmap - centre) ** 2 * valid
    wall = max(2, int(round(WALL_MM / spacing)))
    yy, xx = np.indices(nullmap.shape)
    size = max(nullmap.shape)
    prior = np.exp(-(np.hypot(yy - nullmap.shape[0] / 2, xx - nullmap.shape[1] / 2) / (CENTRE_PRIOR * size)) ** 2)
    radii = tuple(sorted({max(2, int(round(r_mm / spacing))) for r_mm in BLOOD_RADII_MM}))
    sums = _kernel_sums(np.stack([valid, nv, nv2]), radii, wall)                # (kernels, 3, H, W)
    areas = _kernel_spectra(radii, wall, valid.shape)[3]
    best = None
    for j, r in enumerate(radii):
        stats = []
        for area, (n, s1, s2) in zip(areas[2 * j:2 * j + 2], sums[2 * j:2 * j + 2]):
            m = s1 / np.maximum(n, 1)
            v = s2 / np.maximum(n, 1) - m ** 2
            stats.append((n / area, m, np.maximum(v, 0)))
        (f_in, m_in, v_in), (f_ring, m_ring, v_ring) = stats
        score = (m_ring - m_in) / np.sqrt(v_in + v_ring + 15.0 ** 2) * np.clip(f_in, 0, 1) ** 2 * np.clip(f_ring, 0, 1)
        score[f_in < 0.9] = -np.inf
        score = score * prior
        k = np.unravel_index(int(np.argmax(score)), score.shape)
        if best is None or score[k] > best[0]:
            best = (float(score[k]), k, r, float(m_in[k]) + centre, float(m_ring[k]) + centre)
    if best is None or not np.isfinite(best[0]) or best[0] < 0.5 or best[4] - best[3] < 10:
        raise InputError("no myocardium found (no disk of early-nulling blood inside a later-nulling ring); "
                         "draw a myocardial ROI", "ROI")
    score, (cy, cx), r, n_in, n_ring = best
    d = np.hypot(yy - cy, xx - cx)
    split = 0.5 * (n_in + n_ring)
    blood = (d <= r - 0.5) & (valid > 0) & (nullmap < split)
    myo = (d > r - 1) & (d <= r + 1.5 + wall) & (valid > 0) & (nullmap >= split)
    if myo.sum() >= 8:
        values = nullmap[myo]
        med = float(np.median(values))
        mad = float(np.median(np.abs(values - med))) or 5.0
        myo &= np.abs(nullmap - med) <= 2.5 * 1.4826 * mad
    if myo.sum() < 8 or blood.sum() < 3:
        raise InputError(f"no myocardium found ({int(myo.sum())} myocardial, {int(blood.sum())} blood pixels "
                         "at the best LV candidate); draw a myocardial ROI", "ROI")
    ring_px = ((d > r) & (d <= r + 1 + wall)).sum()
    coverage = float(myo.sum() / max(ring_px, 1))
    confidence = float(np.clip(min(score / 4.0, 1.0) * min(coverage / 0.5, 1.0), 0.0, 1.0))
    reason = (f"LV blood pool r={r * spacing:.0f} mm at pixel ({cx}, {cy}); {int(myo.sum())} myocardial px "
              f"({coverage:.0%} of the ring); ring nulls {n_ring - n_in:.0f} ms after the blood")
    return FoundROI(myo, blood, confidence, reason)


# ---------------------------------------------------------------------------------------------
# the scout -> LGE relation and the later-after-contrast drift

def lge_null_ms(t1_ms, rr_ms=C.DEFAULT_RR_MS, every_rr=C.DEFAULT_INVERSIONS_EVERY_RR,
                readout_ms=C.DEFAULT_READOUT_MS, efficiency=1.0) -> float:
    """Null TI of a segmented IR-GRE LGE for tissue T1: inversions every ``every_rr`` RR; the readout
    window after TI is taken to saturate Mz, which then recovers for ``every_rr*RR - TI - readout``:
    ``TI = T1 ln(1 + eta (1 - E))``, ``E = exp(-(every_rr RR - TI - readout) / T1)`` (fixed point)."""
    if not (t1_ms > 0 and rr_ms > 0 and every_rr >= 1):
        raise InputError(f"T1 {t1_ms}, RR {rr_ms} ms and inversions every {every_rr} RR must be positive", "rule")
    ti = t1_ms * math.log(2.0)
    for _ in range(50):
        recovery = max(every_rr * rr_ms - ti - readout_ms, 0.0)
        new = t1_ms * math.log(1.0 + efficiency * (1.0 - math.exp(-recovery / t1_ms)))
        if abs(new - ti) < 1e-6:
            break
        ti = new
    return ti


def drift_ms(minutes_since_injection, minutes_to_lge, rate_at_10min=C.DRIFT_MS_PER_MIN_AT_10MIN) -> float:
    """Null-TI lengthening between the scout and the LGE: rate(t) = r10 * 10 / t ms/min (t in minutes
    after injection), integrated: ``10 r10 ln((t + dt) / t)``."""
    t = max(float(minutes_since_injection), 0.5)
    return 10.0 * rate_at_10min * math.log((t + max(float(minutes_to_lge), 0.0)) / t)


DEFAULT_T1_OVER_SCOUT_NULL = 1.6   # myocardial T1 / scout null when no fit gives B/A (B/A = 2.4)

PSIR_NOTE = ("PSIR reconstructions are less TI-sensitive: a TI somewhat shorter than the null keeps the "
             "correct scar/myocardium contrast there; the range applies to magnitude LGE.")


def lge_rule(scout_null_ms, t1_ms=None, meta=None, rr_ms=None, every_rr=None, readout_ms=None,
             minutes_since_injection=None, minutes_to_lge=None, drift_rate=None, physics_null_ms=None,
             null_sd_ms=None) -> dict:
    """Recommended LGE TI from the scout's myocardial null (the fused estimate), every assumption stated.

    With a physics fit (``t1_ms`` and its scout null ``physics_null_ms``, default ``scout_null_ms``)
    the scout->LGE shift ``lge_null(T1) - physics_null`` is added to ``scout_null_ms``, so the
    CNN/fusion move the recommendation 1:1; without a fit T1 = 1.6 x scout null. ``null_sd_ms`` (the null's sd) is carried
    into ``recommended_uncertainty_ms`` (times the rule's slope when T1 is derived from the null)."""
    meta = meta or {}
    notes = []
    rr = rr_ms or meta.get("rr_ms")
    if not rr:
        rr = C.DEFAULT_RR_MS
        notes.append(f"RR interval unknown (no NominalInterval/HeartRate): {rr:g} ms assumed")
    every = every_rr or C.DEFAULT_INVERSIONS_EVERY_RR
    readout = C.DEFAULT_READOUT_MS if readout_ms is None else readout_ms
    since = minutes_since_injection if minutes_since_injection is not None else meta.get("minutes_since_injection")
    if since is None:
        since = C.DEFAULT_MINUTES_SINCE_INJECTION
        notes.append(f"time since injection unknown (AcquisitionTime/ContrastBolusStartTime): {since:g} min assumed")
    to_lge = C.DEFAULT_MINUTES_SCOUT_TO_LGE if minutes_to_lge is None else minutes_to_lge
    rate = C.DRIFT_MS_PER_MIN_AT_10MIN if drift_rate is None else drift_rate
    sd = float(null_sd_ms) if null_sd_ms is not None and math.isfinite(null_sd_ms) else float("nan")
    if t1_ms is not None and math.isfinite(t1_ms):
        ref = scout_null_ms if physics_null_ms is None or not math.isfinite(physics_null_ms) else physics_null_ms
        shift = lge_null_ms(t1_ms, rr, every, readout) - float(ref)
        lge, slope = scout_null_ms + shift, 1.0
    else:
        t1_ms = scout_null_ms * DEFAULT_T1_OVER_SCOUT_NULL
        notes.append(f"myocardial T1 taken as {DEFAULT_T1_OVER_SCOUT_NULL} x the scout null (no fit)")
        lge = lge_null_ms(t1_ms, rr, every, readout)
        shift = lge - scout_null_ms
        slope = (lge_null_ms(t1_ms + DEFAULT_T1_OVER_SCOUT_NULL, rr, every, readout) - lge)   # d lge / d null
    drift = drift_ms(since, to_lge, rate)
    return {
        "scout_null_ti_ms": scout_null_ms, "myocardial_t1_ms": t1_ms, "lge_null_ti_ms": lge + drift,
        "lge_null_at_scout_time_ms": lge, "scout_to_lge_shift_ms": shift, "drift_ms": drift,
        "recommended_ti_ms": lge + drift + C.RECOMMEND_MARGIN_MS,
        "recommended_uncertainty_ms": abs(slope) * sd,
        "optimal_range_ms": [lge + drift + C.OPTIMAL_RANGE_MS[0], lge + drift + C.OPTIMAL_RANGE_MS[1]],
        "rr_ms": rr, "inversions_every_rr": every, "readout_ms": readout,
        "minutes_since_injection": since, "minutes_scout_to_lge": to_lge, "drift_ms_per_min_at_10min": rate,
        "statement": (f"null_ti_ms is the myocardial null ON THE SCOUT (Look-Locker). The LGE TI applies the "
                      f"segmented IR-GRE relation (T1 {t1_ms:.0f} ms, inversion every {every} RR of {rr:.0f} ms, "
                      f"readout {readout:g} ms) as a shift of {shift:+.1f} ms added to the scout null, and +{drift:.1f} ms drift for {to_lge:g} min more at "
                      f"{since:.1f} min after injection, then +{C.RECOMMEND_MARGIN_MS:g} ms into the optimal "
                      f"range [null{C.OPTIMAL_RANGE_MS[0]:+g}, null{C.OPTIMAL_RANGE_MS[1]:+g}] ms. " + PSIR_NOTE),
        "assumptions": notes,
    }


@dataclasses.dataclass
class PhysicsEstimate:
    myocardium: Optional[IRFit]
    blood: Optional[IRFit]
    roi_source: str
    roi_confidence: float
    roi_reason: str
    myo_curve: np.ndarray
    blood_curve: Optional[np.ndarray]
    myo_mask: np.ndarray
    blood_mask: Optional[np.ndarray]


def estimate_physics(frames, ti_ms, spacing_mm=None, myo_mask=None, blood_mask=None) -> PhysicsEstimate:
    """Fit myocardium (the given ROI, else the found one) and LV blood (found when not given)."""
    frames = np.asarray(frames, float)
    found = None
    if myo_mask is None or blood_mask is None:
        try:
            found = find_myocardium(frames, ti_ms, spacing_mm)
        except InputError:
            if myo_mask is None:
                raise
    if myo_mask is not None:
        source, conf, reason = "user ROI", 1.0, "myocardial ROI given"
    else:
        myo_mask, source, conf, reason = found.myocardium, "found", found.confidence, found.reason
    if blood_mask is None and found is not None:
        blood_mask = found.blood
    myo_curve = roi_curve(frames, myo_mask)
    blood_curve = roi_curve(frames, blood_mask) if blood_mask is not None else None
    return PhysicsEstimate(fit_ir(ti_ms, myo_curve), fit_ir(ti_ms, blood_curve) if blood_curve is not None else None,
                           source, conf, reason, myo_curve, blood_curve, np.asarray(myo_mask, bool),
                           None if blood_mask is None else np.asarray(blood_mask, bool))
