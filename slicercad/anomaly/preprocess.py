"""The one sample path of AnomalyCT: head CT (3D) here, chest X-ray (2D) in ``cxr`` -> fixed-grid channels in
[0, 1] + the mask of voxels that count in the likelihood. No torch here (the Slicer module may import it at load).

Head CT (``head_ct_sample``)
  1. HU check: a head CT in Hounsfield units has air (1st percentile <= AIR_MAX_HU) and skull
     (99.5th percentile >= BONE_MIN_HU); an MR or an unscaled image is refused with that reason.
  2. Intracranial mask that **reaches the inner table**: bone = HU >= BONE_HU; in every slice along each of
     the three array axes the holes of the (closed) skull are filled and the union kept (a coronal slice open at
     the foramen magnum is closed in the axial planes above it; where tissue touches the edge of the field of view
     that edge closes the slice, where air does it does not), then the 3D holes of that union with the bone;
     intracranial = filled & ~bone & HU >
     INTRACRANIAL_MIN_HU (no sinus / mastoid air), largest component. No erosion: a
     tight brain strip would cut subdural blood off. Its volume must lie in ICV_RANGE_ML (an adult head).
  3. Fixed grid: HEAD_GRID_SIZE voxels (x, y, z) of HEAD_SPACING_MM on the **canonical head** of
     ``normalise`` (the intracranial mask registered to a template: rotation, isotropic and per-axis scale,
     translation), i.e. the grid follows the head's pose and size (physical space: any input direction, tilt
     already resampled by ``slicercad.dicom``).
     Extracranial voxels are set to NEUTRAL_HU (30) before the area-averaging resample, so skull partial
     volume does not leak into intracranial voxels next to the inner table (where subdural blood lies).
  4. Channels: brain window BRAIN_WINDOW (level 40, width 80 HU: 0..80 HU; acute blood sits at its top) and
     subdural window SUBDURAL_WINDOW (level 80, width 200 HU: -20..180 HU), each linear to [0, 1] and clipped.
  5. Likelihood mask: intracranial & not clipped in the wide (subdural) window. The intracranial voxels it
     leaves out and the holes of the intracranial mask (> 180 HU: calcification, which the skull threshold also
     cuts out, intracranial bone, metal) are **kept**: inpainted from the scored voxels around
     them (``inpaint_kept``) and marked KEPT in the mask channel, so the models see brain there, not the
     background's noise, and do not score them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from .normalise import check_orientation, normalised_grid, normalising_transform

BRAIN_WINDOW = (40.0, 80.0)          # (level, width) HU -> 0..80 HU
SUBDURAL_WINDOW = (80.0, 200.0)      # (level, width) HU -> -20..180 HU
HEAD_CHANNELS = ("brain_40_80", "subdural_80_200")
AIR_MAX_HU = -500.0                  # 1st percentile of a head CT (air around the head) is at most this
BONE_MIN_HU = 300.0                  # 99.5th percentile (skull) is at least this
BONE_HU = 200.0                      # skull threshold of the intracranial mask
CLOSE_RADIUS_MM = 3.0               # skull gaps (foramina, sutures) closed up to this radius, in mm per axis
INTRACRANIAL_MIN_HU = -200.0         # air (sinuses, mastoid cells) enclosed by bone is not intracranial
HEAD_EXTENT_MM = (90.0, 230.0)       # intracranial bounding box per axis (adult skull ~120-200 mm)
ICV_RANGE_ML = (500.0, 2600.0)       # intracranial volume of an adult head (phantoms: ~900-1700 mL)
MAX_SPACING_MM = 10.0                # coarser input is refused
HEAD_GRID_SIZE = (36, 44, 32)        # (x, y, z) voxels; each divisible by 4 (2 Glow levels)
HEAD_SPACING_MM = 5.0                # -> 180 x 220 x 160 mm: a large adult skull is not cropped
NEUTRAL_HU = 30.0                    # extracranial voxels are set to this before the coarse resample
MAX_INPUT_VOXELS = 120_000_000       # a larger input is refused (bounded memory: ~6 float32 copies of it)


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Linear window to [0, 1], clipped: level - width/2 -> 0, level + width/2 -> 1."""
    lo = level - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - lo) / width, 0.0, 1.0)


KEPT = 0.5                           # mask-channel value of a kept (inpainted, unscored) voxel; scored 1, background 0


def inpaint_kept(x: np.ndarray, mask: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``x`` (C, *grid) with the ``kept`` voxels (inside the anatomy but left out of the score: clipped by a
    window -- calcification, bone, metal) set to the Gaussian-weighted mean of the scored voxels around them
    (sigma 1.5 voxels, doubled until every kept voxel has scored neighbours). Noise there (the background's
    filler) made the flow's neighbouring voxels improbable: 1-3 clipped voxels of a calcified pineal held the
    whole head's map score. A kept voxel with no scored voxel within reach (sigma 16) keeps its value."""
    out = x.copy()
    todo = kept.copy()
    sigma, w = 1.5, mask.astype(np.float32)
    while todo.any() and sigma <= 16:
        den = ndimage.gaussian_filter(w, sigma)
        ok = todo & (den > 1e-3)
        for c in range(len(out)):
            out[c][ok] = (ndimage.gaussian_filter(np.where(mask, x[c], 0.0), sigma) / np.maximum(den, 1e-6))[ok]
        todo &= ~ok
        sigma *= 2
    return out


@dataclass
class Sample:
    """x: (C, *grid) float32 in [0, 1]; mask: grid bool (voxels in the likelihood); grid: sitk reference image;
    kept: grid bool (inside the anatomy, not scored, inpainted -- ``inpaint_kept``), None for none."""
    x: np.ndarray
    mask: np.ndarray
    grid: sitk.Image
    kind: str
    info: dict = field(default_factory=dict)
    kept: np.ndarray | None = None

    def stacked(self) -> np.ndarray:
        """(C + 1, *grid): channels then the mask channel (1 scored, KEPT kept, 0 background): the models'
        tensor."""
        m = self.mask.astype(np.float32)
        if self.kept is not None:
            m = np.where(self.kept & ~self.mask, np.float32(KEPT), m)
        return np.concatenate([self.x, m[None]]).astype(np.float32)


def check_hu(array: np.ndarray, source="image") -> dict:
    """Refuse an image that is not a CT in HU (reason named); returns the percentiles used."""
    a = np.asarray(array)
    sub = a.ravel()[:: max(1, a.size // 2_000_000)]
    p1, p995 = (float(v) for v in np.percentile(sub, [1.0, 99.5]))
    if p1 > AIR_MAX_HU or p995 < BONE_MIN_HU:
        raise InputError(f"does not look like a head CT in Hounsfield units (1st percentile {p1:.0f}, 99.5th "
                         f"{p995:.0f}; a head CT has air <= {AIR_MAX_HU:.0f} and skull >= {BONE_MIN_HU:.0f} HU): "
                         "give a CT with its rescale slope/intercept applied", source)
    return {"p1_hu": p1, "p99_5_hu": p995}


def _as_3d(image: sitk.Image, source) -> sitk.Image:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("expected a single-component (grey) image", source)
    if image.GetDimension() == 2:
        return sitk.JoinSeries([image])
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D volume, got {image.GetDimension()}D", source)
    return image


def _at(axis: int, index) -> tuple:
    """Index tuple selecting ``index`` along ``axis`` of a 3D array."""
    return tuple(index if a == axis else slice(None) for a in range(3))


def _shift_into(acc: np.ndarray, src: np.ndarray, axis: int, k: int, dilate: bool) -> None:
    """In place: acc[p] |= src[p - k] (dilate), or acc[p] &= src[p - k] with False where p - k lies outside."""
    n = acc.shape[axis]
    k = max(-n, min(n, k))
    dst, s = (slice(k, None), slice(0, n - k)) if k >= 0 else (slice(0, n + k), slice(-k, None))
    (np.bitwise_or if dilate else np.bitwise_and)(acc[_at(axis, dst)], src[_at(axis, s)], out=acc[_at(axis, dst)])
    if not dilate:
        acc[_at(axis, slice(0, k) if k >= 0 else slice(n + k, None))] = False


def _morph(x: np.ndarray, st: np.ndarray, axes, dilate: bool) -> np.ndarray:
    """Binary dilation or erosion (border 0, as ``ndimage`` with border_value=0) of the 3D ``x`` by the 2D
    symmetric element ``st`` laid on ``axes``, slice by slice across the third axis: each row of ``st`` is a
    centred run, so the runs grow along axes[1] by unit steps and the rows are combined by shifts along axes[0]
    (a few whole-array operations instead of one pass per element voxel)."""
    c, half = st.shape[0] // 2, {}
    for i, row in enumerate(st):
        if row.any():
            half[i - c] = w = int(row.sum()) // 2
            if not np.array_equal(row, np.abs(np.arange(row.size) - row.size // 2) <= w):
                raise ValueError("closing element rows must be centred runs")
    out, run, prev, grown = np.full(x.shape, not dilate), x.copy(), np.empty_like(x), 0
    for w in sorted(set(half.values())):
        for _ in range(w - grown):
            np.copyto(prev, run)
            _shift_into(run, prev, axes[1], 1, dilate)
            _shift_into(run, prev, axes[1], -1, dilate)
        grown = w
        for i in (i for i, hw in half.items() if hw == w):
            _shift_into(out, run, axes[0], i, dilate)
    return out


def _fill_open(solid: np.ndarray, structure: np.ndarray, faces) -> np.ndarray:
    """``solid`` with its holes filled: background regions (connected by ``structure``) that reach an open
    border voxel are outside, the others are holes (one labelling, as ``binary_fill_holes``). ``faces``:
    (index of a border face, where on it the background is open: a mask, or ``...`` for all of it)."""
    labels, n = ndimage.label(~solid, structure)
    hole = np.ones(n + 1, bool)
    for index, is_open in faces:
        hole[labels[index][is_open]] = False
    hole[0] = True                             # label 0: the solid itself
    return hole[labels]


def _fill_slices(closed: np.ndarray, tissue: np.ndarray, axis: int) -> np.ndarray:
    """Holes of ``closed`` (3D) filled slice by slice along ``axis``; where tissue touches the array border (a
    head cut by the field of view) the border acts as a wall, where air does it stays open."""
    plane = np.zeros((3, 3, 3), bool)
    plane[_at(axis, 1)] = ndimage.generate_binary_structure(2, 1)
    faces = [(_at(a, end), ~tissue[_at(a, end)]) for a in range(3) if a != axis for end in (0, -1)]
    return _fill_open(closed, plane, faces)


def closing_element(plane_spacing_mm, radius_mm: float = CLOSE_RADIUS_MM) -> np.ndarray:
    """2D structuring element closing skull gaps up to ``radius_mm`` in mm along each in-plane axis: the L1
    ball (diamond) of that radius in mm, so a 5 mm slice axis closes one slice, not 35 mm (on an isotropic grid
    it is the 4-connected cross iterated radius/spacing times)."""
    r = [max(0, int(round(radius_mm / max(float(s), 0.1)))) for s in plane_spacing_mm]
    if max(r) == 0:
        r = [1 if float(s) == min(map(float, plane_spacing_mm)) else 0 for s in plane_spacing_mm]
    i, j = np.mgrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1]
    return (np.abs(i) / max(r[0], 1e-9) * (r[0] > 0) + np.abs(j) / max(r[1], 1e-9) * (r[1] > 0) <= 1.0 + 1e-9) & (
        ((i == 0) | (r[0] > 0)) & ((j == 0) | (r[1] > 0)))


def _tissue_box(tissue: np.ndarray, margin: int) -> tuple | None:
    """Slices of the bounding box of ``tissue`` grown by ``margin`` voxels per side (clipped); None if empty."""
    box = []
    for axis in range(3):
        hit = np.flatnonzero(tissue.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(max(0, hit[0] - margin), min(tissue.shape[axis], hit[-1] + 1 + margin)))
    return tuple(box)


def intracranial_mask(hu: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Mask (same shape, k j i) of the space inside the skull, up to the inner table (see module doc). Worked
    on the tissue bounding box grown by twice the closing radius (outside it nothing changes the result)."""
    volume = min(hu.shape) > 2
    elements = {axis: closing_element([s for a, s in enumerate(spacing_zyx) if a != axis])
                for axis in (range(3) if volume else (0,))}
    shape, margin = hu.shape, 2 + 2 * max(max(st.shape) // 2 for st in elements.values())
    box = _tissue_box(hu > AIR_MAX_HU, margin)
    if box is None:
        return np.zeros(shape, bool)
    hu = hu[box]
    bone, tissue = hu >= BONE_HU, hu > AIR_MAX_HU
    filled = np.zeros_like(bone)
    for axis, st in elements.items():
        plane = [a for a in range(3) if a != axis]
        closed = _morph(_morph(bone, st, plane, True), st, plane, False)
        closed |= bone
        filled |= _fill_slices(closed, tissue, axis)
    del tissue
    if volume:                                # boxes no orthogonal plane closes, enclosed by filled voxels in 3D
        faces = [(_at(a, end), ...) for a in range(3) for end in (0, -1)]
        filled = _fill_open(filled | bone, ndimage.generate_binary_structure(3, 1), faces)
    inside = filled & ~bone & (hu > INTRACRANIAL_MIN_HU)
    del filled, bone
    labels, n = ndimage.label(inside)
    if n:
        flat, chunk = labels.ravel(), 1 << 22          # bincount casts to int64: in chunks, not 8 B/voxel at once
        sizes = sum(np.bincount(flat[i:i + chunk], minlength=n + 1) for i in range(0, flat.size, chunk))
        inside = labels == 1 + int(np.argmax(sizes[1:]))
    out = np.zeros(shape, bool)
    out[box] = inside
    return out


def check_head_extent(icm: np.ndarray, spacing_xyz, source="image") -> None:
    """The intracranial mask's bounding box must look like a skull (HEAD_EXTENT_MM along every axis; phantoms
    and the real Cranium span 115-184 mm): a bone-enclosed space of another body part is refused."""
    idx = np.argwhere(icm)
    extent = (idx.max(0) - idx.min(0) + 1) * np.asarray(spacing_xyz, float)[::-1]
    lo, hi = HEAD_EXTENT_MM
    if not ((extent >= lo) & (extent <= hi)).all():
        mm = " x ".join(f"{e:.0f}" for e in extent[::-1])
        raise InputError(f"the bone-enclosed region spans {mm} mm (x y z), outside {lo:.0f}-{hi:.0f} mm per axis: "
                         "not a head CT (or not the whole head)", source)


def _area_averaged(image: sitk.Image, hu: np.ndarray, icm: np.ndarray, out_sp: float) -> sitk.Image:
    """The intracranial HU (extracranial voxels -> NEUTRAL_HU: skull partial volume must not leak into the mask)
    area-averaged for a resample to ``out_sp`` mm: on the mask's bounding box plus 4 sigma (outside it the image
    is the constant NEUTRAL_HU, the resample's default), block means of whole voxels up to out_sp / 2 (a fine
    clinical grid; none on a grid already that coarse), then a Gaussian of the remaining sigma, sigma^2 =
    (out_sp / 2)^2 - (spacing / 2)^2."""
    sp = np.asarray(image.GetSpacing(), float)
    shrink = np.maximum(1, np.floor(out_sp / 2.0 / sp)).astype(int)
    sigma = np.sqrt(np.maximum(0.0, (out_sp / 2.0) ** 2 - (sp * shrink / 2.0) ** 2))
    idx = np.argwhere(icm)
    pad = (np.ceil(4.0 * sigma / sp) + 2 * shrink).astype(int)[::-1]
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, icm.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    work = sitk.GetImageFromArray(np.where(icm[box], hu[box], np.float32(NEUTRAL_HU)).astype(np.float32))
    work.SetSpacing(image.GetSpacing())
    work.SetDirection(image.GetDirection())
    work.SetOrigin(image.TransformIndexToPhysicalPoint([int(v) for v in lo[::-1]]))
    if shrink.max() > 1:
        work = sitk.BinShrink(work, [int(v) for v in shrink])
    if (sigma > 0).all():
        return sitk.SmoothingRecursiveGaussian(work, [float(v) for v in sigma])
    for axis in np.flatnonzero(sigma > 0):     # a 5 mm slice axis needs none (ITK refuses a zero sigma)
        work = sitk.RecursiveGaussian(work, float(sigma[axis]), False, sitk.RecursiveGaussianImageFilter.ZeroOrder,
                                      int(axis))
    return work


def truncated_area_mm2(icm: np.ndarray, spacing_xyz) -> float:
    """Area (mm^2) of the intracranial mask on the array's faces: > 0 where the field of view cuts the head (the
    registration's per-axis scale and the grid are then distorted; reported, not refused)."""
    sz, sy, sx = (float(v) for v in np.asarray(spacing_xyz, float)[::-1])
    face = {0: sy * sx, 1: sz * sx, 2: sz * sy}
    return float(sum((icm.take(0, a).sum() + icm.take(-1, a).sum()) * face[a] for a in range(3)))


def head_ct_sample(image: sitk.Image, source="image", grid_size=HEAD_GRID_SIZE,
                   spacing_mm=HEAD_SPACING_MM) -> Sample:
    """A head CT (HU) on the fixed grid: channels (brain, subdural window) + likelihood mask."""
    image = _as_3d(image, source)
    n_vox = int(np.prod(image.GetSize()))
    if n_vox > MAX_INPUT_VOXELS:
        raise InputError(f"the volume has {n_vox} voxels, over the {MAX_INPUT_VOXELS} this path processes in "
                         "bounded memory: crop or downsample it first", source)
    if image.GetSize()[2] < 8:
        raise InputError(f"a head CT volume needs at least 8 slices, got {image.GetSize()[2]} (a single slice "
                         "or a 2D image is not a volume; the chest X-ray model takes 2D images)", source)
    sp = image.GetSpacing()
    if max(sp) > MAX_SPACING_MM:
        raise InputError(f"voxel spacing {tuple(round(s, 2) for s in sp)} mm is coarser than {MAX_SPACING_MM} mm, "
                         "outside what the model was built for", source)
    hu = sitk.GetArrayViewFromImage(image).astype(np.float32)
    info = check_hu(hu, source)
    icm = intracranial_mask(hu, sp[::-1])
    icv_ml = float(icm.sum() * np.prod(sp) / 1000.0)
    if not ICV_RANGE_ML[0] <= icv_ml <= ICV_RANGE_ML[1]:
        raise InputError(f"intracranial volume {icv_ml:.0f} mL is outside {ICV_RANGE_ML} mL: not a whole adult head "
                         "(a partial scan, a child, or a skull that is not closed), outside the training "
                         "distribution", source)
    check_head_extent(icm, sp, source)
    mask_img = sitk.GetImageFromArray(icm.astype(np.uint8))
    mask_img.CopyInformation(image)
    norm = normalising_transform(mask_img, icm, source)
    info.update(check_orientation(hu, icm, image, norm, source), truncated_mm2=truncated_area_mm2(icm, sp))
    ref = normalised_grid(norm, grid_size, spacing_mm)
    smooth = _area_averaged(image, hu, icm, min(ref.GetSpacing()))
    hu_g = sitk.GetArrayFromImage(sitk.Resample(smooth, ref, sitk.Transform(), sitk.sitkLinear, NEUTRAL_HU,
                                                sitk.sitkFloat32))
    m_g = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(mask_img, sitk.sitkFloat32), ref, sitk.Transform(),
                                               sitk.sitkLinear, 0.0, sitk.sitkFloat32)) >= 0.5
    x = np.stack([window(hu_g, *BRAIN_WINDOW), window(hu_g, *SUBDURAL_WINDOW)])
    lo, hi = SUBDURAL_WINDOW[0] - SUBDURAL_WINDOW[1] / 2, SUBDURAL_WINDOW[0] + SUBDURAL_WINDOW[1] / 2
    mask = m_g & (hu_g > lo) & (hu_g < hi)
    if mask.sum() < 100:
        raise InputError("too few intracranial voxels on the model grid", source)
    kept = ndimage.binary_fill_holes(m_g) & ~mask      # clipped, or enclosed bone-dense (the mask's holes)
    info.update(icv_ml=icv_ml, center_lps=[float(c) for c in norm["translation"]], n_mask=int(mask.sum()),
                n_kept=int(kept.sum()), scale_xyz=[float(v) for v in norm["scale"]],
                rotation_deg=norm["rotation_deg"], fit_dice=norm["fit_dice"])
    grid = sitk.Image(ref)
    return Sample(inpaint_kept(x, mask, kept).astype(np.float32), mask, grid, "head_ct", info, kept)


def resample_to_grid(image: sitk.Image, grid: sitk.Image, label=False, default=0.0) -> np.ndarray:
    """``image`` (e.g. a lesion mask on the input grid) onto a sample's grid as an array (k j i); ``default``
    outside the image."""
    if label:
        out = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                            sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out) >= 0.5
    return sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, default,
                                                sitk.sitkFloat32))


def map_to_image(map_array: np.ndarray, grid: sitk.Image, reference: sitk.Image | None = None) -> sitk.Image:
    """A map on the model grid as an image; resampled (linear) onto ``reference`` when given. A 2D map (chest
    X-ray) onto a one-slice 3D reference (a radiograph loaded as a volume) is resampled onto its slice and
    stacked back with the volume's own origin, direction and slice spacing."""
    img = sitk.GetImageFromArray(np.asarray(map_array, dtype=np.float32))
    img.CopyInformation(grid)
    if reference is None:
        return img
    flat = img.GetDimension() == 2 and reference.GetDimension() == 3
    out = sitk.Resample(img, reference[:, :, 0] if flat else reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                        sitk.sitkFloat32)
    if not flat:
        return out
    vol = sitk.JoinSeries([out])
    vol.CopyInformation(reference)
    return vol
