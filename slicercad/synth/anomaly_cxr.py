"""SYNTHETIC frontal chest radiographs for AnomalyCT (seed 001 part 2). Everything here is generated.

Normal CXR (PHANTOM_PX square, 1.4 mm pixels, MONOCHROME2 convention: air dark, bone bright; values ~[0, 1]
then scaled to 12-bit): body (soft tissue), two lung fields (dark, with smooth vascular markings), heart
(bright, left of centre, size varies), mediastinum, diaphragm domes, ribs (curved bright bands), clavicles,
quantum noise. Variation: lung height/width, heart size and shift, inspiration (dome height), patient
rotation. Normal-variation controls (``variant=``): ``cardiomegaly_borderline`` (large but healthy heart
outline), ``rotated``, ``low_inspiration``.
Anomalies (``insert_anomaly``, mask returned): ``nodule`` (round opacity), ``mass`` (lobulated larger
opacity), ``effusion`` (basal opacity with a meniscus, blunting the costophrenic angle), ``pneumothorax``
(lateral rim of one lung: darker, no markings, a visible pleural line). SWEEP: sizes (mm) and contrasts.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError

PHANTOM_PX = 256
PIXEL_MM = 1.4
ANOMALY_TYPES = ("nodule", "mass", "effusion", "pneumothorax")
SWEEP = {"nodule": {"size_mm": (10.0, 18.0, 28.0), "contrast": (0.06, 0.12, 0.2)},
         "mass": {"size_mm": (35.0, 50.0, 70.0), "contrast": (0.06, 0.12, 0.2)},
         "effusion": {"size_mm": (20.0, 35.0, 55.0), "contrast": (0.1, 0.2, 0.3)},
         "pneumothorax": {"size_mm": (10.0, 18.0, 28.0), "contrast": (0.04, 0.08, 0.12)}}
VARIANTS = ("cardiomegaly_borderline", "rotated", "low_inspiration")
SUPPORT = {"cardiomegaly_borderline": "tail", "rotated": "pose (in-plane tilt, undone by the lung frame)",
           "low_inspiration": "tail"}


class CxrPhantom:
    def __init__(self, image, values, lungs, patient_id, params):
        self.image, self.values, self.lungs, self.patient_id, self.params = image, values, lungs, patient_id, params


def _to_image(values: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(np.clip(values * 4095.0, 0, 4095).astype(np.float32))
    img.SetSpacing([PIXEL_MM, PIXEL_MM])
    return img


def normal_cxr(seed: int, variant: str | None = None, patient_id: str | None = None) -> CxrPhantom:
    if variant is not None and variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; known {VARIANTS}", "variant")
    rng = np.random.default_rng([seed, 41])
    n = PHANTOM_PX
    r, c = np.indices((n, n), dtype=np.float32)
    rot = rng.normal(0, 2) + (rng.choice([-1, 1]) * 7 if variant == "rotated" else 0)
    a = np.deg2rad(rot)
    cy, cx = n / 2 + rng.normal(0, 3), n / 2 + rng.normal(0, 3)
    y, x = (r - cy), (c - cx)
    x, y = np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y
    v = np.full((n, n), 0.08, np.float32)                       # air
    body = (x / (n * 0.47)) ** 2 + ((y + n * 0.05) / (n * 0.6)) ** 2 < 1
    v[body] = 0.62
    lung_h = rng.uniform(0.30, 0.36) * n * (0.85 if variant == "low_inspiration" else 1.0)
    lung_w = rng.uniform(0.15, 0.18) * n
    lungs = np.zeros((n, n), bool)
    for side in (-1, 1):
        lx = side * rng.uniform(0.2, 0.23) * n
        ly = -0.02 * n + rng.normal(0, 2)
        lungs |= ((x - lx) / lung_w) ** 2 + ((y - ly) / lung_h) ** 2 < 1
    dome = rng.uniform(0.2, 0.26) * n * (0.8 if variant == "low_inspiration" else 1.0)
    lungs &= y < dome - 0.004 * x ** 2 / (n * 0.02)
    markings = ndimage.gaussian_filter(rng.normal(size=(n, n)), 1.5)
    markings = np.clip(markings * 2.5, 0, None) * 0.06
    v[lungs] = 0.2 + markings[lungs]
    hs = rng.uniform(0.85, 1.1) * (1.3 if variant == "cardiomegaly_borderline" else 1.0)
    heart = ((x - 0.05 * n - rng.normal(0, 2)) / (0.14 * n * hs)) ** 2 + ((y - 0.16 * n) / (0.12 * n * hs)) ** 2 < 1
    v[heart] = np.maximum(v[heart], 0.6)
    medi = (np.abs(x) < 0.06 * n) & (y < 0.1 * n) & body
    v[medi] = np.maximum(v[medi], 0.6)
    for k in range(9):                                          # ribs
        y0 = -0.32 * n + k * rng.uniform(0.07, 0.085) * n
        band = np.abs(y - (y0 + 0.0022 * x ** 2 / (n * 0.01) * 0.5)) < 0.012 * n
        v[band & body] += 0.08
    clav = np.abs(y + 0.34 * n - 0.15 * np.abs(x)) < 0.012 * n
    v[clav & body & (np.abs(x) < 0.3 * n)] += 0.12
    v += ndimage.gaussian_filter(rng.normal(size=(n, n)), 20) * 0.6
    v += rng.normal(0, 0.012, (n, n))
    v = np.clip(v, 0.0, 1.0).astype(np.float32)
    pid = patient_id or f"CXR{seed:05d}"
    return CxrPhantom(_to_image(v), v, lungs, pid, {"seed": seed, "variant": variant, "rotation_deg": float(rot),
                                                    "heart_scale": float(hs)})


def insert_anomaly(ph: CxrPhantom, kind: str, size_mm: float, contrast: float, seed: int):
    """(image with the anomaly, lesion mask image) -- the phantom is left unchanged."""
    if kind not in ANOMALY_TYPES:
        raise InputError(f"unknown anomaly type {kind!r}; known {ANOMALY_TYPES}", "kind")
    if not size_mm > 0:
        raise InputError(f"size must be > 0 mm, got {size_mm}", "size_mm")
    rng = np.random.default_rng([seed, 43])
    v = ph.values.copy()
    n = v.shape[0]
    r, c = np.indices(v.shape, dtype=np.float32)
    rad = size_mm / PIXEL_MM / 2
    lungs = ph.lungs
    if kind in ("nodule", "mass"):
        inner = ndimage.distance_transform_edt(lungs) > rad * 0.6
        cand = np.argwhere(inner) if inner.any() else np.argwhere(lungs)
        y0, x0 = cand[rng.integers(len(cand))]
        d = np.hypot(r - y0, c - x0)
        if kind == "mass":
            d = d / (1 + 0.2 * ndimage.gaussian_filter(rng.normal(size=v.shape), 4) * 8)
        profile = np.clip(1.0 - (d / rad) ** 2, 0, None) ** 0.5
        lesion = (profile > 0.1) & lungs
        v += (contrast * profile * lungs).astype(np.float32)
    elif kind == "effusion":
        side = rng.choice([-1, 1])
        half = lungs & ((c - n / 2) * side > 0)
        rows = np.argwhere(half)[:, 0]
        bottom = rows.max()
        height = size_mm / PIXEL_MM
        cols = c - n / 2
        meniscus = bottom - height + 0.004 * (np.abs(cols) - np.abs(cols[half]).mean()) ** 2 * side * 0 \
            - 0.3 * height * (np.abs(cols) / (n * 0.4))
        lesion = half & (r > meniscus)
        v[lesion] = np.maximum(v[lesion] + contrast, 0.5)
    else:
        side = rng.choice([-1, 1])
        half = lungs & ((c - n / 2) * side > 0)
        dist = ndimage.distance_transform_edt(half) * PIXEL_MM
        lateral = (c - n / 2) * side > np.percentile(((c - n / 2) * side)[half], 40)
        lesion = half & (dist < size_mm) & lateral
        smooth = ndimage.gaussian_filter(ph.values, 4)
        v[lesion] = smooth[lesion] - contrast                    # markings gone, darker
        line = ndimage.binary_dilation(lesion) & ~lesion & half
        v[line] += 0.08
    if not lesion.any():
        raise InputError(f"the {kind} of {size_mm} mm left no pixel in this image", "size_mm")
    v = np.clip(v, 0.0, 1.0)
    m = sitk.GetImageFromArray(lesion.astype(np.uint8))
    m.SetSpacing([PIXEL_MM, PIXEL_MM])
    return _to_image(v), m
