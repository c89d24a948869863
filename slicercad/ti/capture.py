"""SYNTHETIC smartphone photo of a frame shown on a console monitor (the report's phone scenario).

Chain: window/level as displayed (8-bit, clipped) -> resampling onto the monitor's pixel grid
(bilinear, as viewers do) -> monitor gamma -> camera: perspective (corner jitter), moiré (the beat of
the monitor's pixel pitch against the sensor's, modelled as a low-frequency 2D cosine pattern),
glare (a veiling offset and a soft bright spot), optics blur, sensor noise, tone curve -> JPEG.
The photo is cropped to the displayed frame (as an app's framing guide would) with a small
misalignment. Two monitor profiles: a 4K colour monitor and a 3-megapixel greyscale one showing the
frame smaller (more moiré and glare), matching the report's ranking (4K better than 3 MP).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import InputError

PROFILES = {
    "4k": {"display_px": 960, "camera_px": 320, "moire": (0.01, 0.04), "glare": (0.0, 0.12),
           "perspective": 0.03, "blur": (0.4, 0.8), "noise": (0.5, 2.0), "jpeg": (80, 95)},
    "3mp": {"display_px": 560, "camera_px": 256, "moire": (0.03, 0.09), "glare": (0.05, 0.25),
            "perspective": 0.05, "blur": (0.7, 1.3), "noise": (1.5, 4.0), "jpeg": (60, 85)},
}


def window_level(frame, rng, jitter=0.15) -> np.ndarray:
    """8-bit display of a frame: window from its 99.5th percentile, level = window/2, both jittered."""
    top = float(np.percentile(frame, 99.5)) or 1.0
    width = top * rng.uniform(1 - jitter, 1 + jitter)
    level = width / 2 * rng.uniform(1 - jitter / 2, 1 + jitter / 2)
    return np.clip((frame - (level - width / 2)) / width * 255.0, 0, 255)


def simulate_photo(frame, profile: str = "4k", seed: int = 0) -> np.ndarray:
    """uint8 greyscale photo (camera_px square) of ``frame`` shown on the ``profile`` monitor."""
    if profile not in PROFILES:
        raise InputError(f"monitor profile must be one of {sorted(PROFILES)}, got {profile!r}", "profile")
    p = PROFILES[profile]
    rng = np.random.default_rng(seed)
    shown = window_level(np.asarray(frame, float), rng).astype(np.uint8)
    d = p["display_px"]
    monitor = np.asarray(Image.fromarray(shown).resize((d, d), Image.BILINEAR), float) / 255.0
    luminance = monitor ** 2.2
    # camera view: perspective from jittered corners, output camera_px square around the frame
    c = p["camera_px"]
    j = p["perspective"] * d
    src = np.array([[0, 0], [d, 0], [d, d], [0, d]], float) + rng.uniform(-j, j, (4, 2))
    dst = np.array([[0, 0], [c, 0], [c, c], [0, c]], float)
    coeffs = _perspective_coeffs(dst, src)
    lum_img = Image.fromarray((np.clip(luminance, 0, 1) * 65535).astype(np.uint16).astype(np.int32), mode="I")
    photo = np.asarray(lum_img.transform((c, c), Image.PERSPECTIVE, coeffs, Image.BILINEAR), float) / 65535.0
    yy, xx = np.mgrid[0:c, 0:c] / c
    f1, f2 = rng.uniform(4, 18, 2)
    th = rng.uniform(0, np.pi)
    u, v = xx * np.cos(th) + yy * np.sin(th), -xx * np.sin(th) + yy * np.cos(th)
    photo *= 1 + rng.uniform(*p["moire"]) * np.cos(2 * np.pi * f1 * u + rng.uniform(0, 6.3)) * np.cos(
        2 * np.pi * f2 * v + rng.uniform(0, 6.3))
    g = rng.uniform(*p["glare"])
    gx, gy, gs = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.35)
    photo += g * (0.3 + np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * gs ** 2)))
    photo = ndimage.gaussian_filter(photo, rng.uniform(*p["blur"]))
    exposure = rng.uniform(0.85, 1.1)
    photo = np.clip(photo * exposure, 0, 1) ** (1 / 2.2 * rng.uniform(0.9, 1.1)) * 255.0
    photo += rng.normal(0, rng.uniform(*p["noise"]), photo.shape)
    out = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=int(rng.integers(*p["jpeg"])))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("L"))


def _perspective_coeffs(dst, src):
    """PIL PERSPECTIVE coefficients mapping output (dst) points to input (src) points."""
    A, b = [], []
    for (x, y), (u, v) in zip(dst, src):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.array(A, float), np.array(b, float)).tolist()
