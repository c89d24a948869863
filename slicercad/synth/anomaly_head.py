"""SYNTHETIC emergency head CT phantoms for AnomalyCT (seed 001 part 2): a procedural normal head with
anatomical variation, and anomalies to insert with size and contrast sweeps. Everything here is generated.

Normal head (HU, 2.5 mm isotropic grid PHANTOM_SIZE, LPS axes, random small rotation about z):
  air -1000; scalp 40 HU; skull (ellipsoidal shell 4-8 mm, 700-1100 HU, diploe darker); inside the inner table
  a 1-3 mm CSF rim (8 HU), cortex grey matter 38 HU, white matter 27 HU (an inner ellipsoid with a smooth-noise
  boundary), lateral ventricles (two ellipsoids, size varies), third ventricle, sulci (thresholded smooth noise
  in the cortical shell, CSF), falx (thin midline 50 HU), CT noise (sigma 3.5 HU) plus low-frequency drift.
  Head size x U(0.9, 1.1) per axis, ventricle scale x U(0.8, 1.25), sulcal width varies.
  **Adult population** (own random stream, ``population``): age U(18, 90); age-related atrophy
  a = clip((age - 55) / 35, 0, 1) x U(0.6, 1) widens the CSF rim x (1 + 0.6 a), the sulci (threshold - 0.4 a)
  and the ventricles x (1 + 0.8 a); physiological calcification (pineal with probability
  0.15 + 0.5 clip((age - 18) / 60, 0, 1), each choroid plexus with half that; radius 1.5-3 mm, 90-200 HU).
  The prevalences are chosen, not fitted to a cohort: normal heads of an emergency population include the old.
Normal-variation controls (healthy but unusual: the tails of that population, ``variant=``): ``atrophy``
  (the oldest, most atrophic: age U(82, 90), the draw U(0.92, 1), so a in 0.71-1.0, the population's top ~5 %;
  at a = 1 the ventricles are x1.8), ``calcification`` (all three sites, 2.5-4 mm, 150-300 HU),
  ``asymmetric`` (elongated, rotated head), ``large`` (head x1.12); and two healthy variants **outside** the
  training population (``SUPPORT``): ``cavum_septum`` (a CSF slit between the frontal horns) and
  ``ventricle_asymmetry`` (the left lateral ventricle x2 in volume: each semi-axis x2^(1/3), a clearly
  visible asymmetry still seen in healthy adults; formerly each semi-axis was x1.5, x3.4 in volume, the size of
  a trapped ventricle rather than a normal variant).
Anomalies (``insert_anomaly``; mask returned; any isotropic LPS grid -- also the real backgrounds of
  ``real_anatomy.real_head_background``; sizes in mm):
  ``ich``  intracerebral haemorrhage: lobulated blob in parenchyma, brain + contrast HU, thin oedema rim -6 HU;
  ``sdh``  subdural haematoma: crescent along the inner table over one convexity, thickness = size;
  ``infarct`` hypodense wedge-like region of cortex + white matter, brain - contrast HU.
Sizes (mm) and contrasts (HU) of the sweep: SWEEP below.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError

PHANTOM_SPACING_MM = 2.5
PHANTOM_SIZE = (72, 88, 64)            # (x, y, z) voxels -> 180 x 220 x 160 mm
NOISE_HU = 3.5
ANOMALY_TYPES = ("ich", "sdh", "infarct")
SWEEP = {"ich": {"size_mm": (8.0, 14.0, 22.0), "contrast_hu": (12.0, 25.0, 40.0)},
         "sdh": {"size_mm": (4.0, 7.0, 11.0), "contrast_hu": (12.0, 25.0, 40.0)},
         "infarct": {"size_mm": (15.0, 25.0, 35.0), "contrast_hu": (4.0, 8.0, 14.0)}}
VARIANTS = ("atrophy", "calcification", "asymmetric", "large", "cavum_septum", "ventricle_asymmetry")
SUPPORT = {"atrophy": "tail", "calcification": "tail", "asymmetric": "pose/shape", "large": "size",
           "cavum_septum": "outside", "ventricle_asymmetry": "outside"}
AGE_RANGE = (18.0, 90.0)
VENTRICLE_ASYMMETRY_VOLUME = 2.0     # the variant's left lateral ventricle, x this in volume
ATROPHY_TAIL_AGE, ATROPHY_TAIL_DRAW = (82.0, 90.0), 0.92   # the atrophy variant: a >= 0.71, ~5 % of the population


@dataclass
class HeadPhantom:
    image: sitk.Image                   # HU, float32
    patient_id: str
    params: dict
    brain: np.ndarray = field(repr=False, default=None)     # parenchyma mask (k j i) where lesions may go
    inner: np.ndarray = field(repr=False, default=None)     # inside the inner table


def _smooth_noise(rng, shape, sigma):
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma) * sigma ** 1.5


def _coords(shape, rot_deg, center_off):
    k, j, i = np.indices(shape, dtype=np.float32)
    z = (k - (shape[0] - 1) / 2) * PHANTOM_SPACING_MM - center_off[2]
    y = (j - (shape[1] - 1) / 2) * PHANTOM_SPACING_MM - center_off[1]
    x = (i - (shape[2] - 1) / 2) * PHANTOM_SPACING_MM - center_off[0]
    a = np.deg2rad(rot_deg)
    xr, yr = np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y
    return xr, yr, z


def population(seed: int, variant: str | None = None) -> dict:
    """Age-related draws of one normal head (own random stream, see module doc): age, atrophy in [0, 1] and the
    physiological calcifications present ({site: (radius mm, HU)})."""
    rng = np.random.default_rng([seed, 23])
    age = float(rng.uniform(*AGE_RANGE))
    atrophy = float(np.clip((age - 55.0) / 35.0, 0.0, 1.0) * rng.uniform(0.6, 1.0))
    if variant == "atrophy":                     # the top ~5 % of the population's atrophy (module doc)
        age = float(rng.uniform(*ATROPHY_TAIL_AGE))
        atrophy = (age - 55.0) / 35.0 * float(rng.uniform(ATROPHY_TAIL_DRAW, 1.0))
    p_pineal = 0.15 + 0.5 * min(max((age - 18.0) / 60.0, 0.0), 1.0)
    calc = {}
    for site, p in (("pineal", p_pineal), ("choroid_left", p_pineal / 2), ("choroid_right", p_pineal / 2)):
        draw = rng.uniform(size=3)
        if draw[0] < p:
            calc[site] = (1.5 + 1.5 * float(draw[1]), 90.0 + 110.0 * float(draw[2]))
    if variant == "calcification":
        calc = {site: (2.5 + 1.5 * float(rng.uniform()), 150.0 + 150.0 * float(rng.uniform()))
                for site in ("pineal", "choroid_left", "choroid_right")}
    return {"age": age, "atrophy": atrophy, "calcifications": calc}


def _calcifications(pop, x, y, z, sep):
    sites = {"pineal": (0.0, 22.0, -2.0), "choroid_left": (sep + 2.0, 8.0, 6.0),
             "choroid_right": (-(sep + 2.0), 8.0, 6.0)}
    return [(sites[name], rv) for name, rv in pop["calcifications"].items()]


def normal_head(seed: int, variant: str | None = None, patient_id: str | None = None) -> HeadPhantom:
    """One SYNTHETIC normal head CT (see module doc)."""
    if variant is not None and variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; known {VARIANTS}", "variant")
    rng = np.random.default_rng([seed, 17])
    pop = population(seed, variant)
    shape = PHANTOM_SIZE[::-1]
    scale = rng.uniform(0.9, 1.1, 3)
    rot = rng.normal(0, 4)
    if variant == "large":
        scale = scale * 1.12
    if variant == "asymmetric":
        scale = scale * np.array([0.92, 1.1, 1.0])
        rot += rng.choice([-1, 1]) * 12
    off = rng.normal(0, 3, 3)
    x, y, z = _coords(shape, rot, off)
    semi = np.array([68.0, 84.0, 62.0]) * scale        # inner-table semi-axes (x, y, z) mm
    semi = np.minimum(semi, [80.0, 98.0, 72.0])
    r_in = np.sqrt((x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2)
    thick = rng.uniform(4.0, 8.0)
    mean_semi = float(np.mean(semi))
    d_in = (r_in - 1.0) * mean_semi                      # ~ signed distance (mm) to the inner table
    hu = np.full(shape, -1000.0, np.float32)
    hu[d_in <= thick + 4.0] = 40.0                       # scalp
    skull = (d_in > 0) & (d_in <= thick)
    bone_hu = rng.uniform(700, 1100)
    hu[skull] = bone_hu
    diploe = skull & (np.abs(d_in - thick / 2) < thick / 5)
    hu[diploe] = bone_hu * 0.6
    inner = d_in <= 0
    a = pop["atrophy"]
    csf_rim = rng.uniform(1.0, 3.0) * (1.0 + 0.6 * a)
    hu[inner] = 8.0
    brain = inner & (d_in <= -csf_rim)
    hu[brain] = 38.0
    wm_b = 0.72 + 0.06 * _smooth_noise(rng, shape, 4.0) / 4.0
    wm = brain & (r_in < wm_b)
    hu[wm] = 27.0
    # sulci: thresholded smooth noise in the cortical shell
    shell = brain & (r_in > wm_b)
    sulc_thr = rng.uniform(1.1, 1.5) - 0.4 * a
    sulci = shell & (_smooth_noise(rng, shape, 1.5) > sulc_thr * 1.5 ** 1.5 * 0.35)
    hu[sulci] = 8.0
    # ventricles
    vs = rng.uniform(0.8, 1.25) * (1.0 + 0.8 * a)
    sep = rng.uniform(6, 9)
    vent = np.zeros(shape, bool)
    for side in (-1, 1):
        grow = VENTRICLE_ASYMMETRY_VOLUME ** (1 / 3) if variant == "ventricle_asymmetry" and side == 1 else 1.0
        v_side = vs * grow
        vent |= ((x - side * sep) / (7 * v_side)) ** 2 + ((y + 4) / (28 * v_side)) ** 2 + \
            ((z - 8) / (9 * v_side)) ** 2 < 1
    if variant == "cavum_septum":                      # a CSF slit between the frontal horns
        vent |= (np.abs(x) < 2.0) & (y > -4 - 22 * vs) & (y < -4) & (np.abs(z - 8) < 6 * vs)
    vent |= (x / (2.0 * vs)) ** 2 + ((y + 2) / (12 * vs)) ** 2 + ((z + 6) / (7 * vs)) ** 2 < 1
    vent &= brain
    hu[vent] = 8.0
    falx = inner & (np.abs(x) < 1.3) & (z > -10) & ~vent
    hu[falx] = 50.0
    for centre, (radius, value) in _calcifications(pop, x, y, z, sep):
        hu[(((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) < radius ** 2) & brain] = value
    tissue = hu > -500
    hu += (4.0 * _smooth_noise(rng, shape, 8.0) / 8.0 ** 1.5 * tissue).astype(np.float32)
    hu += rng.normal(0, NOISE_HU, shape).astype(np.float32) * tissue
    image = sitk.GetImageFromArray(hu.astype(np.float32))
    image.SetSpacing([PHANTOM_SPACING_MM] * 3)
    image.SetOrigin([-(s - 1) / 2 * PHANTOM_SPACING_MM for s in PHANTOM_SIZE])
    pid = patient_id or f"HEAD{seed:05d}"
    parenchyma = brain & ~vent & ~sulci & ~falx
    return HeadPhantom(image, pid, {"seed": seed, "variant": variant, "scale": scale.tolist(), **pop,
                                    "rotation_deg": float(rot), "ventricle_scale": float(vs)},
                       parenchyma, inner)


def insert_anomaly(head: HeadPhantom, kind: str, size_mm: float, contrast_hu: float, seed: int):
    """(image with the anomaly, lesion mask image (uint8)) -- the input head is left unchanged."""
    if kind not in ANOMALY_TYPES:
        raise InputError(f"unknown anomaly type {kind!r}; known {ANOMALY_TYPES}", "kind")
    if not size_mm > 0:
        raise InputError(f"size must be > 0 mm, got {size_mm}", "size_mm")
    rng = np.random.default_rng([seed, 29])
    hu = sitk.GetArrayFromImage(head.image).astype(np.float32)
    shape = hu.shape
    sp = float(head.image.GetSpacing()[0])
    if not np.allclose(head.image.GetSpacing(), sp):
        raise InputError(f"lesions are inserted on an isotropic grid, got spacing {head.image.GetSpacing()}", "head")
    brain, inner = head.brain, head.inner
    if kind == "sdh":
        dist_out = ndimage.distance_transform_edt(inner) * sp          # mm to the inner table, inside
        k, j, i = np.indices(shape)
        cand = np.argwhere(inner & (dist_out < 5.0) & (k > shape[0] * 0.45))
        c = cand[rng.integers(len(cand))]
        extent = rng.uniform(35, 50)
        near = ((k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2) * sp ** 2 < extent ** 2
        lesion = inner & near & (dist_out <= size_mm)
        delta = contrast_hu + 38.0 - hu   # blood replaces CSF and cortex: target = brain level + contrast
        hu[lesion] += delta[lesion] * 1.0
    else:
        dist_in = ndimage.distance_transform_edt(brain) * sp
        depth_ok = brain & (dist_in > (size_mm / 2 + 2 if kind == "ich" else size_mm / 4))
        cand = np.argwhere(depth_ok)
        if not len(cand):
            raise InputError(f"no room for a {size_mm} mm {kind} in this head", "size_mm")
        c = cand[rng.integers(len(cand))]
        k, j, i = np.indices(shape, dtype=np.float32)
        r = np.sqrt(((k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2)) * sp
        lobes = 1.0 + 1.5 * ndimage.gaussian_filter(rng.normal(size=shape), 5.0 / sp) * (2.5 / sp) ** 1.5
        lesion = (r < size_mm / 2 * lobes) & (brain if kind == "infarct" else inner)
        if kind == "ich":
            hu[lesion] += contrast_hu + (38.0 - hu[lesion]) * 0.3
            rim = ndimage.binary_dilation(lesion, iterations=1) & ~lesion & brain
            hu[rim] -= 6.0
        else:
            hu[lesion] -= contrast_hu
    if not lesion.any():
        raise InputError(f"the {kind} of {size_mm} mm left no voxel in this head", "size_mm")
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(head.image)
    m = sitk.GetImageFromArray(lesion.astype(np.uint8))
    m.CopyInformation(head.image)
    return out, m
