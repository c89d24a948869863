"""Spatial normalisation of a head CT to a canonical head, part of the one sample path
(``preprocess.head_ct_sample``): the intracranial mask is registered to a template, so head size, shape and
pose no longer decide where on the model grid a structure lies.

* Template: the inner-table ellipsoid with semi-axes TEMPLATE_SEMI_AXES_MM (x, y, z) = 68 x 84 x 62 mm
  (136 x 168 x 124 mm: an adult intracranial cavity's breadth, length and height), centred at 0, axes along LPS,
  scaled by s0 = (V / V_template)^(1/3) (V: the mask's volume) for the case at hand.
* Both masks as floats (block means), smoothed by a Gaussian of the grid spacing; mean squares, every voxel,
  one thread (deterministic).
* Rigid registration (versor rotation + translation; the scale stays s0, so no step can flip or collapse it),
  from the mask centroid and no rotation, on a COARSE_SPACING_MM grid, then refined on REGISTRATION_SPACING_MM
  (a local optimiser: several starts were tried and picked wrong minima of the near-symmetric shape, which the
  acquired pose did not).
* Per-axis scale: the mask's weighted standard deviation along each canonical axis over the template's.
* Result: p_input = t + R diag(scale) p_canonical. The model grid is the canonical grid mapped by it: direction R,
  spacing HEAD_SPACING_MM x scale_i -- an ordinary (rotated, anisotropic) sitk image, so every resample to or
  from it stays in physical space. A lesion does not move the registration (it uses the mask only).
* Fit check: Dice of the mask with the scaled template in the canonical frame, at least MIN_DICE.
* Orientation check (``check_orientation``): the template is symmetric, so a 180-degree turn or a mirror fits
  as well. Only upside-down is checked: the extracranial tissue (skull base, neck, face) lies inferior of the
  intracranial centroid; more than FLIP_MM superior in the canonical frame is refused (a mislabelled header, a
  flipped file). Where the field of view holds no skull base / neck (offset under FLIP_MM either way) it is not
  verifiable and ``upside_down_checked`` is False. Front-back (the table and head holder lie posterior) and
  left-right are not checked.
* Refused (not matched to a head): a per-axis scale outside SCALE_RANGE, a rotation over MAX_ROTATION_DEG, a
  fit below MIN_DICE.
A rotation the mask cannot decide (two near-equal axes: roll when breadth ~ height) stays near the acquired pose;
the mask is a shape, not the anatomy (falx and ventricles are not used).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

TEMPLATE_SEMI_AXES_MM = (68.0, 84.0, 62.0)
REGISTRATION_SPACING_MM = 6.0
COARSE_SPACING_MM = 12.0
SCALE_RANGE = (0.75, 1.35)
MAX_ROTATION_DEG = 60.0
MIN_DICE = 0.80
FLIP_MM = 10.0
ITERATIONS = 150


@functools.lru_cache(maxsize=16)
def template(spacing: float = REGISTRATION_SPACING_MM, scale=(1.0, 1.0, 1.0), smooth: bool = True) -> sitk.Image:
    """The template mask (float; smoothed by ``spacing`` unless ``smooth`` is False) with semi-axes
    TEMPLATE_SEMI_AXES_MM x ``scale``, on a grid 1.4 x the unscaled extent x max(scale), centred at 0."""
    semi = np.asarray(TEMPLATE_SEMI_AXES_MM) * np.asarray(scale)
    size = [int(math.ceil(2.8 * a * max(scale) / spacing)) for a in TEMPLATE_SEMI_AXES_MM]
    k, j, i = np.indices(size[::-1], dtype=np.float32)
    coords = [(idx - (n - 1) / 2.0) * spacing for idx, n in zip((i, j, k), size)]
    inside = sum((c / a) ** 2 for c, a in zip(coords, semi)) <= 1.0
    img = sitk.GetImageFromArray(inside.astype(np.float32))
    img.SetSpacing([spacing] * 3)
    img.SetOrigin([-(n - 1) / 2.0 * spacing for n in size])
    return sitk.SmoothingRecursiveGaussian(img, spacing) if smooth else img


def _moving(mask_img: sitk.Image, spacing: float) -> sitk.Image:
    factors = [max(1, int(round(spacing / s))) for s in mask_img.GetSpacing()]
    pad = [(-n) % f for n, f in zip(mask_img.GetSize(), factors)]       # BinShrink drops a partial last bin
    padded = sitk.ConstantPad(sitk.Cast(mask_img, sitk.sitkFloat32), [0, 0, 0], pad, 0.0)
    small = sitk.BinShrink(padded, factors)
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


@functools.lru_cache(maxsize=1)
def _template_sd() -> np.ndarray:
    return _sd_in_frame(template())


def _register(fixed, moving, transform, spacing):
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=spacing / 4.0, minStep=1e-4,
                                                 numberOfIterations=ITERATIONS, relaxationFactor=0.7,
                                                 gradientMagnitudeTolerance=1e-10)
    reg.SetInitialTransform(transform, inPlace=True)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetNumberOfThreads(1)
    reg.Execute(fixed, moving)
    return float(reg.GetMetricValue())


def _rigid(mask_img, centre, s0):
    """Rigid fit (VersorRigid3DTransform, centre 0) of the s0-scaled template to the mask, coarse then fine."""
    rigid = sitk.VersorRigid3DTransform()
    rigid.SetCenter((0.0, 0.0, 0.0))
    rigid.SetTranslation(centre)
    _register(template(COARSE_SPACING_MM, (s0,) * 3), _moving(mask_img, COARSE_SPACING_MM), rigid, COARSE_SPACING_MM)
    moving = _moving(mask_img, REGISTRATION_SPACING_MM)
    _register(template(REGISTRATION_SPACING_MM, (s0,) * 3), moving, rigid, REGISTRATION_SPACING_MM)
    return rigid, moving


def _fit_dice(moving, rigid, scale) -> float:
    """Dice of the mask (moved into the canonical frame) with the template scaled per axis."""
    ref = template(REGISTRATION_SPACING_MM, tuple(float(v) for v in np.round(scale, 3)), smooth=False)
    tmpl = sitk.GetArrayViewFromImage(ref) > 0.5
    mask = sitk.GetArrayViewFromImage(sitk.Resample(moving, ref, rigid, sitk.sitkLinear, 0.0)) > 0.5
    return float(2.0 * (tmpl & mask).sum() / max(1, tmpl.sum() + mask.sum()))


def normalising_transform(mask_img: sitk.Image, icm: np.ndarray, source="image") -> dict:
    """{'translation', 'rotation' (3 x 3, columns = canonical axes in LPS), 'scale' (per canonical axis),
    'rotation_deg', 'fit_dice'} mapping canonical points to the input's physical space (see module doc)."""
    idx = np.argwhere(icm).mean(0)[::-1]
    centre = mask_img.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx])
    volume = float(icm.sum() * np.prod(mask_img.GetSpacing()))
    s0 = (volume / (4.0 / 3.0 * math.pi * np.prod(TEMPLATE_SEMI_AXES_MM))) ** (1.0 / 3.0)
    rigid, moving = _rigid(mask_img, centre, s0)
    rot = np.asarray(rigid.GetMatrix(), float).reshape(3, 3)
    translation = np.asarray(rigid.GetTranslation(), float)
    scale = _sd_in_frame(moving, rot, translation) / _template_sd()
    angle = math.degrees(math.acos(float(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))
    lo, hi = SCALE_RANGE
    dice = _fit_dice(moving, rigid, scale) if ((scale >= lo) & (scale <= hi)).all() else 0.0
    if not ((scale >= lo) & (scale <= hi)).all() or angle > MAX_ROTATION_DEG or dice < MIN_DICE:
        raise InputError(f"the intracranial space did not match the template head (scale x y z "
                         f"{' '.join(f'{v:.2f}' for v in scale)}, allowed {lo}-{hi}; rotation {angle:.0f} deg, "
                         f"allowed <= {MAX_ROTATION_DEG:.0f}; fit Dice {dice:.2f}, at least {MIN_DICE}): not a "
                         "whole head, or far outside the training distribution", source)
    return {"translation": translation, "rotation": rot, "scale": scale, "rotation_deg": angle, "fit_dice": dice}


def check_orientation(hu: np.ndarray, icm: np.ndarray, image: sitk.Image, norm: dict, source="image") -> dict:
    """Refuse an upside-down head: extracranial tissue (skull base, neck, face) more than FLIP_MM superior of the
    intracranial centroid in the canonical frame (see module doc). {'extracranial_offset_mm' (x, y, z canonical),
    'upside_down_checked' (the offset is clearly inferior, so the check had something to see)}. Front-back and
    left-right are not checked (the table and head holder lie posterior in a supine scan; a normal head is
    near-symmetric left-right)."""
    step = tuple(max(1, int(round(3.0 / s))) for s in image.GetSpacing()[::-1])       # ~3 mm subsample
    sub = tuple(slice(None, None, st) for st in step)
    tissue = (hu[sub] > -500.0) & ~icm[sub]
    inside = icm[sub]
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)

    def centroid(m):
        kji = np.argwhere(m).mean(0) * step
        return np.asarray(image.GetOrigin()) + d @ (kji[::-1] * np.asarray(image.GetSpacing()))
    offset = norm["rotation"].T @ (centroid(tissue) - centroid(inside)) if tissue.any() else np.zeros(3)
    if offset[2] > FLIP_MM:
        raise InputError(f"the skull base / neck / face lie {offset[2]:.0f} mm superior of the brain: the head looks "
                         "upside down; check the orientation in the file's header (direction cosines) or the "
                         "patient position", source)
    return {"extracranial_offset_mm": [float(v) for v in offset], "upside_down_checked": bool(offset[2] < -FLIP_MM)}


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
