"""SYNTHETIC lesion phantoms for the weak-label segmenter (seed 001 part 1): three lesion types of
different modality, shape and polarity, each rendered on its own anisotropic (sometimes oblique) grid
with a ground-truth mask. Everything here is generated and labelled SYNTHETIC.

- ``lung_ct``: **bright** solid / part-solid lobulated or spiculated nodules (-600..+60 HU) in textured
  lung (-850 HU) with vessels, some against the chest wall; 0.7 x 0.7 x 1.25 mm class grids, CT noise.
- ``liver_mri``: **dark** smooth or heterogeneous lesions in bright hepatobiliary-phase parenchyma with dark
  vessels and a bias field, some at the liver edge; 1.4 x 1.4 x 3 mm class grids, Rician noise.
- ``brain_t1c``: **bright** enhancing metastases on contrast T1 -- solid or **ring-enhancing** with a
  necrotic core, optional peri-lesional oedema, grey/white/CSF texture, bright vessels; ~1 mm grids.

The unseen-type experiment trains on two types and tests on the third; ``liver_mri`` is the one of the
opposite polarity to the other two (the black/white-inversion ablation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError

TYPES = ("lung_ct", "liver_mri", "brain_t1c")
POLARITY = {"lung_ct": "bright", "liver_mri": "dark", "brain_t1c": "bright"}
DIAMETER_RANGE_MM = (5.0, 30.0)
SPACING = {"lung_ct": (0.7, 0.7, 1.25), "liver_mri": (1.4, 1.4, 3.0), "brain_t1c": (0.9, 0.9, 1.0)}
MAX_BLOCK_PX = 64      # per axis: large lesions get a coarser grid, as a coarser scan would give
LESIONS_PER_PATIENT = (1, 3)
TOUCHING_VESSEL = 0.5   # probability that a vessel touches the lesion


@dataclass
class WeakPhantomLesion:
    """One SYNTHETIC lesion: image and true mask on the same native grid (LPS), its centre and size."""

    lesion_id: str
    patient_id: str
    lesion_type: str
    variant: str
    image: sitk.Image
    mask: sitk.Image
    center_lps: np.ndarray        # centroid of the true mask
    diameter_mm: float            # equivalent-sphere diameter of the true mask
    polarity: str


def _rotation(rng, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _smooth_noise(shape, sigma_px, rng) -> np.ndarray:
    sigma = np.minimum(np.broadcast_to(np.asarray(sigma_px, float), (len(shape),)), np.array(shape) / 3.0)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-2)


def _tubes(points, n, radius_range, rng, extent, touch=None) -> np.ndarray:
    """Soft union of ``n`` random straight tubes through the block (vessels), values in [0, 1]; with
    ``touch`` = (centre, radius) the first tube passes at about that radius from the centre (a vessel
    touching the lesion, which region growing leaks into)."""
    out = np.zeros(len(points))
    for t in range(n):
        a = rng.uniform(-extent, extent, 3)
        if t == 0 and touch is not None:
            v = rng.normal(size=3)
            a = touch[0] + v / np.linalg.norm(v) * touch[1] * rng.uniform(0.9, 1.3)
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        r = rng.uniform(*radius_range)
        rel = points - a
        dist = np.linalg.norm(rel - np.outer(rel @ u, u), axis=1)
        out = np.maximum(out, np.clip(r - dist + 0.5, 0, 1))
    return out


def _shape_radius(dirs, r0, rng, kind: str) -> np.ndarray:
    """Radius along unit directions: an ellipsoid with lobulation / spiculation bumps."""
    semi = r0 * np.exp(rng.uniform(-0.35, 0.35, 3))
    semi *= r0 / np.prod(semi) ** (1 / 3)
    rot = _rotation(rng, 90)
    local = dirs @ rot
    radius = 1.0 / np.sqrt(np.sum((local / semi) ** 2, axis=1))
    n_lobes = {"smooth": 0, "lobulated": 4, "spiculated": 14}[kind]
    for _ in range(n_lobes):
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        if kind == "spiculated":
            amp, kappa = rng.uniform(0.15, 0.45), rng.uniform(40, 120)
        else:
            amp, kappa = rng.uniform(0.08, 0.22), rng.uniform(3, 8)
        radius = radius * (1 + amp * np.exp(kappa * (dirs @ v - 1)))
    return radius


def _patient(rng, lesion_type: str) -> dict:
    base = np.array(SPACING[lesion_type]) * np.exp(rng.uniform(-0.12, 0.12, 3))
    return {"spacing": base, "oblique": rng.random() < 0.35, "noise": rng.uniform(0.7, 1.3),
            "contrast": rng.uniform(0.75, 1.25)}


def block_grid(diameter: float, acq: dict, rng, centre=None) -> dict:
    """The lesion's block: ``size`` (i, j, k), ``spacing``, ``direction``, ``origin`` (LPS; centred on
    ``centre``, default random), ``local`` (LPS offsets of every voxel from the block centre, i fastest
    last) and ``half`` (mm)."""
    half = 1.6 * diameter + 3.0
    spacing = np.maximum(acq["spacing"], 2 * half / MAX_BLOCK_PX)
    size = np.maximum(np.ceil(2 * half / spacing).astype(int), 8)
    direction = _rotation(rng, 25) if acq["oblique"] else np.eye(3)
    centre = rng.uniform(-60, 60, 3) if centre is None else np.asarray(centre, float)
    origin = centre - direction @ (spacing * (size - 1) / 2)
    grids = np.meshgrid(*[np.arange(s) for s in size], indexing="ij")
    idx = np.stack([g.ravel() for g in grids], 1).astype(float)
    local = (idx - (size - 1) / 2) * spacing @ direction.T          # LPS offsets from the block centre
    return {"size": size, "spacing": spacing, "direction": direction, "origin": origin, "local": local,
            "half": half}


def noise_field(block: dict, rng):
    """``field(scale_mm)``: smooth unit-variance noise on ``block`` at that scale, flat in block order."""
    shape3 = tuple(block["size"][::-1])

    def field(scale_mm):
        return _smooth_noise(shape3, np.maximum(scale_mm / block["spacing"][::-1], 0.7), rng).transpose(2, 1, 0).ravel()
    return field


def lesion_shape(block: dict, diameter: float, rng, lesion_type: str) -> dict:
    """Where the lesion lies in ``block``: its centre offset, shape kind and variant, the radius along each
    voxel's direction, the signed distance (mm, > 0 inside) and the partial-volume ``inside`` fraction."""
    local = block["local"]
    lesion_c = rng.uniform(-0.15, 0.15, 3) * diameter
    rel = local - lesion_c
    dist = np.linalg.norm(rel, axis=1) + 1e-9
    dirs = rel / dist[:, None]
    shape_kind, variant = "smooth", "solid"
    if lesion_type == "lung_ct":
        shape_kind = rng.choice(["smooth", "lobulated", "spiculated"], p=[0.3, 0.4, 0.3])
        variant = "part_solid" if rng.random() < 0.2 else "solid"
    elif lesion_type == "liver_mri":
        shape_kind = rng.choice(["smooth", "lobulated"], p=[0.6, 0.4])
        variant = "heterogeneous" if rng.random() < 0.35 else "homogeneous"
    else:
        shape_kind = rng.choice(["smooth", "lobulated"], p=[0.6, 0.4])
        variant = "ring" if rng.random() < 0.45 else "solid"
    radius = _shape_radius(dirs, diameter / 2, rng, shape_kind)
    signed = radius - dist                                           # > 0 inside, mm
    vox = float(np.mean(block["spacing"]))
    return {"r0": diameter / 2, "lesion_c": lesion_c, "shape_kind": shape_kind, "variant": variant, "radius": radius,
            "dist": dist, "signed": signed, "vox": vox, "inside": np.clip(signed / vox + 0.5, 0, 1)}


def _render(lesion_type: str, diameter: float, acq: dict, rng) -> tuple:
    r0 = diameter / 2
    block = block_grid(diameter, acq, rng)
    size, spacing, local, half = block["size"], block["spacing"], block["local"], block["half"]
    les = lesion_shape(block, diameter, rng, lesion_type)
    lesion_c, shape_kind, variant = les["lesion_c"], les["shape_kind"], les["variant"]
    signed, vox, inside = les["signed"], les["vox"], les["inside"]
    field = noise_field(block, rng)
    c = acq["contrast"]
    touch = (lesion_c, r0) if rng.random() < TOUCHING_VESSEL else None
    if lesion_type == "lung_ct":
        bg = -850 + 50 * field(3.0)
        vessels = _tubes(local, rng.integers(2, 6), (0.6, 2.0), rng, half, touch)
        img = bg + (40 - bg) * vessels
        if rng.random() < 0.3:                                        # chest wall
            n = rng.normal(size=3)
            n /= np.linalg.norm(n)
            d_wall = r0 * rng.uniform(0.9, 1.8)
            img = np.where(local @ n - lesion_c @ n > d_wall, 40 + 15 * field(5.0), img)
        lesion_val = rng.uniform(10, 60)
        if variant == "part_solid":
            core = np.clip((signed - 0.55 * r0) / vox + 0.5, 0, 1)
            lesion_val = -550 + 400 * core
        lesion = lesion_val + 25 * field(2.0)
        img = img * (1 - inside) + lesion * inside
        img = ndimage.gaussian_filter(img.reshape(size).transpose(2, 1, 0), 0.6 / spacing[::-1])
        img = img + rng.normal(0, 22 * acq["noise"], img.shape)
    elif lesion_type == "liver_mri":
        bg = 1.0 + 0.05 * field(8.0)
        vessels = _tubes(local, rng.integers(1, 4), (1.0, 3.0), rng, half, touch)
        img = bg * (1 - 0.55 * vessels)
        if rng.random() < 0.3:                                        # liver edge
            n = rng.normal(size=3)
            n /= np.linalg.norm(n)
            img = np.where(local @ n - lesion_c @ n > r0 * rng.uniform(1.0, 2.0), 0.35 + 0.03 * field(6.0), img)
        lesion = rng.uniform(0.25, 0.6) / c ** 0.5 + 0.04 * field(2.0)
        if variant == "heterogeneous":
            lesion = lesion + 0.15 * field(3.0)
        img = img * (1 - inside) + lesion * inside
        bias = np.exp(0.15 * field(60.0))
        img = (img * bias).reshape(size).transpose(2, 1, 0)
        sigma = 0.05 * acq["noise"]
        img = np.sqrt((img + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2)
    else:
        tissue = field(4.0)
        bg = np.where(tissue > 1.2, 0.18, 0.5 + 0.05 * np.tanh(tissue))  # CSF where the field is high
        vessels = _tubes(local, rng.integers(1, 4), (0.5, 1.2), rng, half, touch)
        img = metastasis(bg + (1.0 - bg) * vessels, les, block, acq, rng, field)
    image, mask_img = block_images(img, les, block)
    return image, mask_img, f"{shape_kind}_{variant}"


def metastasis(img, les: dict, block: dict, acq: dict, rng, field):
    """An enhancing (solid or ring) brain metastasis with optional oedema on a contrast-T1 background
    ``img`` (flat, block order; white matter about 0.5), then Rician noise; returns the [k, j, i] array."""
    if rng.random() < 0.5:                                        # oedema
        edema = np.clip((les["radius"] * rng.uniform(1.3, 2.0) - les["dist"]) / 3.0, 0, 1)
        img = img * (1 - 0.3 * edema)
    enh = rng.uniform(0.95, 1.3) * acq["contrast"] ** 0.3
    lesion = enh + 0.05 * field(2.0)
    if les["variant"] == "ring":
        thick = rng.uniform(1.2, 3.0) + 0.1 * les["r0"]
        core = np.clip((les["signed"] - thick) / les["vox"] + 0.5, 0, 1)
        lesion = lesion * (1 - core) + rng.uniform(0.2, 0.35) * core
    img = img * (1 - les["inside"]) + lesion * les["inside"]
    img = img.reshape(block["size"]).transpose(2, 1, 0)
    sigma = 0.03 * acq["noise"]
    return np.sqrt((img + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2)


def block_images(img: np.ndarray, les: dict, block: dict) -> tuple:
    """(image, mask) SimpleITK images on the block's grid from the [k, j, i] array and the lesion."""
    mask = (les["signed"] >= 0).reshape(block["size"]).transpose(2, 1, 0).astype(np.uint8)
    image = sitk.GetImageFromArray(img.astype(np.float32))
    image.SetSpacing(block["spacing"].tolist())
    image.SetOrigin(block["origin"].tolist())
    image.SetDirection(block["direction"].ravel().tolist())
    mask_img = sitk.GetImageFromArray(mask)
    mask_img.CopyInformation(image)
    return image, mask_img


def _centroid_and_size(mask: sitk.Image) -> tuple:
    arr = sitk.GetArrayViewFromImage(mask)
    kji = np.argwhere(arr > 0)
    centre = np.array(mask.TransformContinuousIndexToPhysicalPoint(kji.mean(0)[::-1].tolist()))
    volume = len(kji) * float(np.prod(mask.GetSpacing()))
    return centre, float((6 * volume / np.pi) ** (1 / 3))


def lesion_draws(n: int, rng, lesion_type: str, diameter_range):
    """Yields ``(i, patient number, acquisition, diameter)`` for ``n`` lesions, 1-3 per patient, sizes
    log-uniform in ``diameter_range``; lazily, so the caller's rendering draws from ``rng`` in between."""
    if n < 0:
        raise InputError(f"number of lesions must be >= 0, got {n}", "n")
    patient, left = -1, 0
    lo, hi = np.log(diameter_range[0]), np.log(diameter_range[1])
    for i in range(n):
        if left == 0:
            patient += 1
            left = int(rng.integers(LESIONS_PER_PATIENT[0], LESIONS_PER_PATIENT[1] + 1))
            acq = _patient(rng, lesion_type)
        left -= 1
        yield i, patient, acq, float(np.exp(rng.uniform(lo, hi)))


def generate_weak_lesions(n: int, seed: int, lesion_type: str, diameter_range=DIAMETER_RANGE_MM) -> list:
    """``n`` SYNTHETIC lesions of ``lesion_type`` from ``seed`` (1-3 per patient, sizes log-uniform)."""
    if lesion_type not in TYPES:
        raise InputError(f"lesion type must be one of {TYPES}, got {lesion_type!r}", "lesion_type")
    if n < 0:   # checked here too: lesion_draws is lazy
        raise InputError(f"number of lesions must be >= 0, got {n}", "n")
    rng = np.random.default_rng([seed, TYPES.index(lesion_type)])
    out = []
    for i, patient, acq, diameter in lesion_draws(n, rng, lesion_type, diameter_range):
        image, mask, variant = _render(lesion_type, diameter, acq, rng)
        centre, size = _centroid_and_size(mask)
        pid = f"{lesion_type}-s{seed}-P{patient:04d}"
        out.append(WeakPhantomLesion(f"{pid}-L{i:04d}", pid, lesion_type, variant, image, mask, centre, size,
                                     POLARITY[lesion_type]))
    return out
