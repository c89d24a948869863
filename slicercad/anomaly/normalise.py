"""Spatial normalisation of a head CT to a canonical head, part of the one sample path
(``preprocess.head_ct_sample``): the intracranial mask is registered to a template, so head size, shape and
pose (yaw, pitch, roll) no longer decide where on the model grid a structure lies.

* Template: the inner-table ellipsoid with semi-axes TEMPLATE_SEMI_AXES_MM (x, y, z) = 68 x 84 x 62 mm
  (136 x 168 x 124 mm: an adult intracranial cavity's breadth, length and height), centred at 0, axes along LPS.
* Both masks as floats on a REGISTRATION_SPACING_MM grid (block mean), smoothed by a Gaussian of that sigma;
  mean squares, every voxel, one thread (deterministic).
* Stage 1: Similarity3D (rotation, isotropic scale, translation) from the mask centroid with scale
  (V / V_template)^(1/3), a local optimiser from no rotation (a direction the mask cannot decide -- two
  near-equal axes -- stays unrotated). Stage 2: a scale per template axis, k_i = the mask's weighted standard
  deviation along that axis in the registered frame over the template's.
* Result: p_input = t + s R diag(k) p_canonical. The model grid is the canonical grid mapped by it: direction R,
  spacing HEAD_SPACING_MM x s x k_i -- an ordinary (rotated, anisotropic) sitk image, so every resample to or
  from it stays in physical space. A lesion does not move the registration (it uses the mask only).
* Refused (not matched to a head): a per-axis scale s x k_i outside SCALE_RANGE, or a rotation over
  MAX_ROTATION_DEG.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

TEMPLATE_SEMI_AXES_MM = (68.0, 84.0, 62.0)
REGISTRATION_SPACING_MM = 6.0
SCALE_RANGE = (0.75, 1.35)
MAX_ROTATION_DEG = 60.0
ITERATIONS = 150


@functools.lru_cache(maxsize=2)
def template(spacing: float = REGISTRATION_SPACING_MM) -> sitk.Image:
    """The smoothed template mask (float) on a grid 1.4 x its extent, centred at 0."""
    size = [int(math.ceil(2.8 * a / spacing)) for a in TEMPLATE_SEMI_AXES_MM]
    k, j, i = np.indices(size[::-1], dtype=np.float32)
    coords = [(idx - (n - 1) / 2.0) * spacing for idx, n in zip((i, j, k), size)]
    inside = sum((c / a) ** 2 for c, a in zip(coords, TEMPLATE_SEMI_AXES_MM)) <= 1.0
    img = sitk.GetImageFromArray(inside.astype(np.float32))
    img.SetSpacing([spacing] * 3)
    img.SetOrigin([-(n - 1) / 2.0 * spacing for n in size])
    return sitk.SmoothingRecursiveGaussian(img, spacing)


def _moving(mask_img: sitk.Image, spacing: float) -> sitk.Image:
    factors = [max(1, int(round(spacing / s))) for s in mask_img.GetSpacing()]
    small = sitk.BinShrink(sitk.Cast(mask_img, sitk.sitkFloat32), factors)
    return sitk.SmoothingRecursiveGaussian(small, spacing)


def _sd_in_frame(img: sitk.Image, rot=np.eye(3), translation=np.zeros(3), scale=1.0) -> np.ndarray:
    """Weighted standard deviation per axis of a smoothed mask's points mapped by q = R^T (p - t) / s."""
    w = sitk.GetArrayViewFromImage(img).ravel().astype(float)
    keep = w > 0.05
    k, j, i = (a.ravel()[keep] for a in np.indices(img.GetSize()[::-1]))
    d = np.asarray(img.GetDirection(), float).reshape(3, 3)
    pts = np.asarray(img.GetOrigin()) + (np.stack([i, j, k], 1) * img.GetSpacing()) @ d.T
    q = (pts - translation) @ rot / scale
    w = w[keep]
    mean = (q * w[:, None]).sum(0) / w.sum()
    return np.sqrt((((q - mean) ** 2) * w[:, None]).sum(0) / w.sum())


def axis_scales(moving: sitk.Image, sim: sitk.Similarity3DTransform) -> np.ndarray:
    """Per canonical axis: the mask's standard deviation in the similarity-registered frame over the template's
    (both smoothed alike)."""
    s = float(sim.GetScale())
    rot = np.asarray(sim.GetMatrix(), float).reshape(3, 3) / s
    return _sd_in_frame(moving, rot, np.asarray(sim.GetTranslation(), float), s) / _sd_in_frame(template())


def _register(fixed, moving, transform):
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=ITERATIONS,
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetInitialTransform(transform, inPlace=True)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetNumberOfThreads(1)
    reg.Execute(fixed, moving)
    return transform


def normalising_transform(mask_img: sitk.Image, icm: np.ndarray, source="image") -> dict:
    """{'translation', 'rotation' (3 x 3, columns = canonical axes in LPS), 'scale' (per canonical axis),
    'rotation_deg'} mapping canonical points to the input's physical space (see module doc)."""
    fixed = template()
    idx = np.argwhere(icm).mean(0)[::-1]
    centre = mask_img.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx])
    volume = float(icm.sum() * np.prod(mask_img.GetSpacing()))
    s0 = (volume / (4.0 / 3.0 * math.pi * np.prod(TEMPLATE_SEMI_AXES_MM))) ** (1.0 / 3.0)
    moving = _moving(mask_img, REGISTRATION_SPACING_MM)
    sim = sitk.Similarity3DTransform()
    sim.SetCenter((0.0, 0.0, 0.0))
    sim.SetTranslation(centre)
    sim.SetScale(s0)
    _register(fixed, moving, sim)
    s = float(sim.GetScale())
    rot = np.asarray(sim.GetMatrix(), float).reshape(3, 3) / s
    scale = s * axis_scales(moving, sim)
    angle = math.degrees(math.acos(float(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))
    lo, hi = SCALE_RANGE
    if not ((scale >= lo) & (scale <= hi)).all() or angle > MAX_ROTATION_DEG:
        raise InputError(f"the intracranial space did not match the template head (scale x y z "
                         f"{' '.join(f'{v:.2f}' for v in scale)}, allowed {lo}-{hi}; rotation {angle:.0f} deg, "
                         f"allowed <= {MAX_ROTATION_DEG:.0f}): not a whole head, or far outside the training "
                         "distribution", source)
    return {"translation": np.asarray(sim.GetTranslation(), float), "rotation": rot, "scale": scale,
            "rotation_deg": angle}


def normalised_grid(norm: dict, size, spacing_mm: float) -> sitk.Image:
    """The canonical grid (``size`` voxels of ``spacing_mm``, centred at 0) mapped into the input's space."""
    ref = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    sp = spacing_mm * norm["scale"]
    origin_canon = -(np.asarray(size, float) - 1) / 2.0 * spacing_mm
    origin = norm["translation"] + norm["rotation"] @ (norm["scale"] * origin_canon)
    ref.SetSpacing([float(v) for v in sp])
    ref.SetDirection([float(v) for v in norm["rotation"].ravel()])
    ref.SetOrigin([float(v) for v in origin])
    return ref
