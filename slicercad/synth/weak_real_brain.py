"""Brain-metastasis-like lesions placed into a REAL T1 brain: the Colin27 template of Debian's
``mricron-data`` (``ch2better.nii.gz``, one healthy adult, 0.5 mm; ``ch2bet.nii.gz``, its brain
extraction on a 1 mm grid). The lesions are SYNTHETIC (the ``brain_t1c`` lesions of ``weak_lesions``: enhancing solid or
ring metastases with optional oedema); only the anatomy around them is real. Colin27 is a non-contrast
T1, so there are no enhancing vessels: the lesion is the brightest thing in its neighbourhood.

The template is binned once to a 1 mm grid (2 x 2 x 2 means) (``GRID_MM``) and scaled so that white matter
is about 0.55 (as in the phantom); each lesion's block is then sampled from it on that patient's own
acquisition grid (``weak_lesions._patient``: ~0.9 x 0.9 x 1 mm, a third oblique), centred at a random point
of the brain at least a lesion radius + 3 mm inside its surface, with Rician noise.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ImageIOError, InputError
from .weak_lesions import (DIAMETER_RANGE_MM, WeakPhantomLesion, _centroid_and_size, block_grid, block_images,
                           lesion_draws, lesion_shape, metastasis, noise_field)

TEMPLATES = Path("/usr/share/mricron/templates")
COLIN27_HEAD = TEMPLATES / "ch2better.nii.gz"
COLIN27_BRAIN = TEMPLATES / "ch2bet.nii.gz"
REAL_TYPE = "brain_t1c_colin27"
GRID_MM = 1.0
WHITE_MATTER = 0.55          # white matter's value after scaling (the phantom's background is ~0.5)
MARGIN_MM = 3.0              # lesion surface to brain surface, at least


def colin27_missing() -> str | None:
    """Why the real brain cannot be used here (None: it can)."""
    missing = [str(p) for p in (COLIN27_HEAD, COLIN27_BRAIN) if not p.is_file()]
    if missing:
        return f"Colin27 T1 template not installed ({', '.join(missing)}): apt-get install mricron-data"
    return None


def _read(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot read the Colin27 template ({exc})", str(path)) from exc


@functools.lru_cache(maxsize=1)
def load_colin27() -> tuple:
    """(head T1 on a ``GRID_MM`` grid, scaled: white matter ~ ``WHITE_MATTER``; distance inside the brain
    in mm on the same grid, 0 outside)."""
    reason = colin27_missing()
    if reason:
        raise ImageIOError(reason, str(COLIN27_HEAD))
    head, brain = _read(COLIN27_HEAD), _read(COLIN27_BRAIN)
    factor = [max(1, int(round(GRID_MM / s))) for s in head.GetSpacing()]     # 2 x 2 x 2 voxel means
    head1 = sitk.BinShrink(head, factor)
    brain1 = sitk.Resample(brain, head1, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)
    inside = sitk.GetArrayViewFromImage(brain1) > 0
    values = sitk.GetArrayFromImage(head1)
    white = float(np.percentile(values[inside], 90))
    scaled = sitk.GetImageFromArray((values * (WHITE_MATTER / white)).astype(np.float32))
    scaled.CopyInformation(head1)
    depth = sitk.GetImageFromArray(ndimage.distance_transform_edt(inside, GRID_MM).astype(np.float32))
    depth.CopyInformation(head1)
    return scaled, depth


def _centre_in_brain(depth: sitk.Image, radius_mm: float, rng) -> np.ndarray:
    kji = np.argwhere(sitk.GetArrayViewFromImage(depth) >= radius_mm + MARGIN_MM)
    if not len(kji):
        raise InputError(f"no place in the brain for a lesion of radius {radius_mm:.1f} mm", "diameter_range")
    k, j, i = kji[rng.integers(len(kji))]
    return np.array(depth.TransformContinuousIndexToPhysicalPoint([float(i), float(j), float(k)]))


def generate_real_brain_lesions(n: int, seed: int, diameter_range=DIAMETER_RANGE_MM) -> list:
    """``n`` SYNTHETIC metastases in the real Colin27 brain from ``seed`` (1-3 per patient, sizes
    log-uniform), each on its own block with its true mask; ``lesion_type`` ``REAL_TYPE``."""
    if n < 0:   # lesion_draws is lazy
        raise InputError(f"number of lesions must be >= 0, got {n}", "n")
    head, depth = load_colin27()
    rng = np.random.default_rng([seed, 101])
    out = []
    for i, patient, acq, diameter in lesion_draws(n, rng, "brain_t1c", diameter_range):
        block = block_grid(diameter, acq, rng, _centre_in_brain(depth, diameter / 2, rng))
        les = lesion_shape(block, diameter, rng, "brain_t1c")
        ref = sitk.Image([int(v) for v in block["size"]], sitk.sitkFloat32)
        ref.SetSpacing(block["spacing"].tolist())
        ref.SetOrigin(block["origin"].tolist())
        ref.SetDirection(block["direction"].ravel().tolist())
        bg = sitk.GetArrayFromImage(sitk.Resample(head, ref, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                  sitk.sitkFloat32)).transpose(2, 1, 0).ravel()
        img = metastasis(bg * acq["contrast"] ** 0.1, les, block, acq, rng, noise_field(block, rng))
        image, mask = block_images(img, les, block)
        centre, size = _centroid_and_size(mask)
        pid = f"{REAL_TYPE}-s{seed}-P{patient:04d}"
        out.append(WeakPhantomLesion(f"{pid}-L{i:04d}", pid, REAL_TYPE, f"{les['shape_kind']}_{les['variant']}",
                                     image, mask, centre, size, "bright"))
    return out
