"""Lesion-sized Gaussian attention (seed 000): ``A = G * I + alpha * I`` per channel.

Sigma rule (documented, tested): sigma = lesion radius = diameter / 2, in ROI pixels
(``diameter_mm / 2 / spacing_mm``). The map is 1 at the lesion centre and exp(-1/2) = 0.61 on
the lesion's edge, so the whole lesion stays bright while tissue two radii away is dimmed to
0.14 and three radii away (the ROI border with the default 3-diameter field of view) to 0.01.
Without a mask (the product's default: what a reader marks) the lesion centre (the ROI centre)
and the measured diameter are used. With a mask (a drawn segment; a second mode, evaluated and
reported on its own) the centre is the mask's centroid and sigma is the larger of the mask's
equivalent-circle radius ``sqrt(area / pi)`` and the measured radius: sigma is never below what
the measured diameter gives, so a small or thin mask cannot collapse the map to a spike.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

DEFAULT_ALPHA = 0.1


def gaussian_map(shape, center_px, sigma_px) -> np.ndarray:
    """2D Gaussian, peak 1 at ``center_px`` = (row, col) (sub-pixel allowed), std ``sigma_px``.

    ``sigma_px`` may be one number or (sigma_row, sigma_col).
    """
    rows, cols = int(shape[0]), int(shape[1])
    s = np.broadcast_to(np.asarray(sigma_px, dtype=float), (2,))
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"sigma must be positive, got {sigma_px!r}", "gaussian_map.sigma_px")
    r = (np.arange(rows) - float(center_px[0])) / s[0]
    c = (np.arange(cols) - float(center_px[1])) / s[1]
    return np.exp(-0.5 * (r[:, None] ** 2 + c[None, :] ** 2)).astype(np.float32)


def sigma_from_diameter(diameter_mm: float, spacing_mm: float) -> float:
    """Sigma in pixels: the lesion radius, ``diameter_mm / 2 / spacing_mm``."""
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise InputError(f"diameter must be a positive number of mm, got {diameter_mm!r}", "diameter_mm")
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"spacing must be positive, got {spacing_mm!r}", "spacing_mm")
    return float(diameter_mm) / 2.0 / float(spacing_mm)


def equivalent_diameter_mm(mask, spacing_mm: float) -> float:
    """Diameter of the circle with the mask's area, in mm."""
    area_mm2 = float(np.count_nonzero(mask)) * float(spacing_mm) ** 2
    if area_mm2 <= 0:
        raise InputError("lesion mask is empty in the ROI", "mask")
    return 2.0 * np.sqrt(area_mm2 / np.pi)


def attention_from_mask(mask, spacing_mm: float, diameter_mm: float | None = None) -> np.ndarray:
    """Gaussian at the mask centroid; sigma from the larger of the mask's equivalent diameter and
    the measured ``diameter_mm`` (when given): never below what the measured diameter gives."""
    m = np.asarray(mask) > 0
    d = equivalent_diameter_mm(m, spacing_mm)
    if diameter_mm is not None:
        d = max(d, float(diameter_mm))
    rows, cols = np.nonzero(m)
    return gaussian_map(m.shape, (rows.mean(), cols.mean()), sigma_from_diameter(d, spacing_mm))


def attention_from_diameter(shape, diameter_mm: float, spacing_mm: float, center_px=None) -> np.ndarray:
    """Gaussian at ``center_px`` (default: the ROI centre) with sigma from the diameter."""
    if center_px is None:
        center_px = ((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0)
    return gaussian_map(shape, center_px, sigma_from_diameter(diameter_mm, spacing_mm))


def check_alpha(alpha) -> float:
    """Alpha as float in [0, 1], else InputError."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}", "alpha") from None
    if not (0.0 <= a <= 1.0):
        raise InputError(f"alpha must be in [0, 1], got {a}", "alpha")
    return a


def attend(stack, G, alpha: float = DEFAULT_ALPHA):
    """``G * I + alpha * I`` for every channel of ``stack`` ([..., C, H, W], numpy or torch).

    ``G`` is [H, W] or broadcastable per lesion (e.g. [N, 1, H, W] for a batch).
    """
    a = check_alpha(alpha)
    if tuple(np.shape(G))[-2:] != tuple(np.shape(stack))[-2:]:
        raise InputError(f"attention map shape {tuple(np.shape(G))} does not match ROI "
                         f"{tuple(np.shape(stack)[-2:])}", "G")
    if not isinstance(stack, np.ndarray):  # torch tensor
        import torch

        G = torch.as_tensor(G, dtype=stack.dtype, device=stack.device)
    return stack * G + a * stack
