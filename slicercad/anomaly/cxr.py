"""The chest X-ray half of AnomalyCT's one sample path: a frontal radiograph (2D, MONOCHROME2 convention:
``slicercad.dicom`` or the panel has already inverted MONOCHROME1) -> a lung-field-aligned fixed grid.

1. Working copy: area-averaged so its longer side is WORK_PX (the lung field is found on it).
2. Polarity check (lateral lung bands darker than the central column), else refused as inverted.
3. **Lung fields**: uniform border bands (collimation, shutters) trimmed (``edge_bands``); Otsu's threshold of
   the central box (CXR_CENTRAL trimmed each side); the dark connected
   components that do not touch the image border (the air around the patient does) -- the two largest, each at
   least MIN_LUNG_FRACTION of the image, together within LUNG_FRACTION_RANGE, else refused; opened by the
   smallest disk of OPENING_RADII_PX that cuts them off the outside air.
4. **Frame** (``lung_frame``): each lung's **upper half** (rows above its median row; a basal effusion, the
   diaphragm's height and the heart do not move it) gives a centroid; u = the unit vector from the image-left to
   the image-right centroid (its angle to the rows is the patient's rotation, refused above MAX_ROTATION_DEG),
   v = u turned to the image's row direction, D = the centroids' distance in mm. The model grid CXR_SIZE
   (rows, cols) covers u in +-GRID_HALF_WIDTH x D and v in GRID_V_RANGE x D about the centroids' midpoint:
   a similarity transform (rotation, isotropic scale, translation), so a rotated or a larger / smaller chest
   lands on the same grid and the pixel spacing is in D units (a radiograph without a calibrated spacing is
   handled alike). The grid is an sitk image in the input's physical space: maps go back by resampling.
5. Intensity: the lung fields' median -> LUNG_LEVEL, the median of the central box above the threshold ->
   SOFT_LEVEL, linearly, clipped to [0, 1]; the input is smoothed (sigma half the grid spacing, per input axis)
   before the linear resample. Likelihood mask: inside the input's field of view (FILM_EDGE_PX grid pixels
   in from its edge: a half-covered edge pixel held a normal's map maximum at 77 SD), not the air around the
   patient (the border-touching dark components of step 3, and the border bands) and not clipped; clipped
   pixels inside the body (markers, wires, dense bone) are **kept** (``preprocess.inpaint_kept``).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from .preprocess import Sample, inpaint_kept, resample_to_grid

CXR_SIZE = (116, 128)                # (rows, cols) of the model grid; each divisible by 4 (2 Glow levels)
GRID_HALF_WIDTH = 1.1                # u: +-1.1 D (D = distance of the lungs' upper-half centroids)
GRID_V_RANGE = (-0.7, 1.3)           # v: from 0.7 D above to 1.3 D below the centroids' midpoint (apices, bases)
WORK_PX = 256                        # longer side of the working copy the lung fields are found on
CXR_CENTRAL = 0.1                    # fraction trimmed on each side for Otsu's threshold and the soft median
LUNG_LEVEL, SOFT_LEVEL = 0.3, 0.7    # lung-field median -> 0.3, soft-tissue median -> 0.7
LUNG_FRACTION_RANGE = (0.08, 0.6)    # both lung fields together cover this fraction of the image
MIN_LUNG_FRACTION = 0.02             # each lung field at least this fraction of the image
OPENING_RADII_PX = (0, 2, 3, 4, 6)    # working-copy disks tried in turn to cut a lung off the outside air
EDGE_UNIFORM = 0.03                  # a border line this uniform (std / image range) is collimation or a shutter
EDGE_MAX_FRACTION = 0.15             # at most this much of each side is trimmed as such bands
FILM_EDGE_PX = 2                     # grid pixels this close to the film's edge are not scored (edge blur)
MAX_ROTATION_DEG = 25.0              # a frontal CXR rotated more than this is refused
ADULT_LUNG_DISTANCE_MM = (110.0, 230.0)  # an adult's D; outside it the score carries a warning (child, no spacing)
CXR_CHANNELS = ("cxr_lung_normalised",)


def _otsu(values: np.ndarray) -> float:
    f = sitk.OtsuThresholdImageFilter()
    f.SetNumberOfHistogramBins(128)
    f.Execute(sitk.GetImageFromArray(values.astype(np.float32).reshape(1, -1)))
    return float(f.GetThreshold())


def check_cxr_polarity(a: np.ndarray, source="image") -> None:
    """A frontal CXR in the MONOCHROME2 convention has lateral lung bands darker than the central (mediastinum,
    spine) column; an inverted image (MONOCHROME1 not inverted on loading) is refused with that reason."""
    rows, cols = a.shape
    mid = a[int(0.25 * rows):int(0.75 * rows)]
    central = float(np.median(mid[:, int(0.45 * cols):int(0.55 * cols)]))
    lateral = float(np.median(np.concatenate([mid[:, int(0.15 * cols):int(0.35 * cols)],
                                              mid[:, int(0.65 * cols):int(0.85 * cols)]], axis=1)))
    if lateral >= central:
        raise InputError(f"the lung bands (median {lateral:.4g}) are not darker than the central column (median "
                         f"{central:.4g}): the image looks inverted (MONOCHROME1 shown as stored?) or is not a "
                         "frontal chest X-ray; invert it or load it with the panel's Load study", source)


def edge_bands(work: np.ndarray) -> tuple:
    """(r0, r1, c0, c1): the working copy without its uniform border bands (collimation, shutters), each side
    trimmed while its outer line's std is below EDGE_UNIFORM of the image's 1-99 % range (at most
    EDGE_MAX_FRACTION)."""
    lo, hi = np.percentile(work, [1, 99])
    tol = EDGE_UNIFORM * max(float(hi - lo), 1e-12)
    rows, cols = work.shape
    r0, r1, c0, c1 = 0, rows, 0, cols
    while r0 < EDGE_MAX_FRACTION * rows and work[r0, c0:c1].std() < tol:
        r0 += 1
    while rows - r1 < EDGE_MAX_FRACTION * rows and work[r1 - 1, c0:c1].std() < tol:
        r1 -= 1
    while c0 < EDGE_MAX_FRACTION * cols and work[r0:r1, c0].std() < tol:
        c0 += 1
    while cols - c1 < EDGE_MAX_FRACTION * cols and work[r0:r1, c1 - 1].std() < tol:
        c1 -= 1
    return r0, r1, c0, c1


def _components(dark: np.ndarray):
    """(the two largest components of ``dark`` not touching its border, each >= MIN_LUNG_FRACTION of it, or
    None; the components that touch the border: the outside air)."""
    lab, n = ndimage.label(dark)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    border = border[border > 0]
    outside = np.isin(lab, border)
    sizes = ndimage.sum_labels(np.ones(dark.shape), lab, np.arange(1, n + 1)) if n else np.zeros(0)
    sizes[border - 1] = 0
    big = [int(i) + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= MIN_LUNG_FRACTION * dark.size]
    return ([lab == k for k in big] if len(big) == 2 else None), outside


def lung_fields(work: np.ndarray, source="image"):
    """(left lung, right lung, outside (air around the patient + uniform border bands), Otsu threshold) on the
    working copy; refused if not found. Inside the border bands (``edge_bands``), a lung joined to the outside air
    by a thin bridge (the apex, a shoulder) is cut off it by an opening with the smallest disk of OPENING_RADII_PX
    that separates two inner components; one must lie left and one right of the field's middle column. An
    upside-down film is **not** detected (the lung-width profile of the Otsu fields pointed the wrong way on the
    real RG1_UNCI film, and the phantoms' lungs are near symmetric top to bottom)."""
    r0, r1, c0, c1 = edge_bands(work)
    inner = work[r0:r1, c0:c1]
    rows, cols = inner.shape
    t = int(round(CXR_CENTRAL * rows)), int(round(CXR_CENTRAL * cols))
    thr = _otsu(inner[t[0]:rows - t[0], t[1]:cols - t[1]].ravel())
    dark = inner < thr
    for r in OPENING_RADII_PX:
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r + 0.01
        masks, out_in = _components(ndimage.binary_opening(dark, disk) if r else dark)
        if masks is not None:
            break
    else:
        raise InputError("could not find two lung fields (dark regions inside the body, each at least "
                         f"{MIN_LUNG_FRACTION:.0%} of the image): not a frontal chest X-ray, or the lungs touch "
                         "the image border", source)
    frac = float(sum(m.sum() for m in masks) / inner.size)
    if not LUNG_FRACTION_RANGE[0] <= frac <= LUNG_FRACTION_RANGE[1]:
        raise InputError(f"the lung fields cover {frac:.0%} of the image (expected {LUNG_FRACTION_RANGE[0]:.0%}-"
                         f"{LUNG_FRACTION_RANGE[1]:.0%}): not a frontal chest X-ray", source)
    masks.sort(key=lambda m: np.argwhere(m)[:, 1].mean())
    if not np.argwhere(masks[0])[:, 1].mean() < cols / 2 < np.argwhere(masks[1])[:, 1].mean():
        raise InputError("the two dark regions found are not one on each side of the image's middle: not a "
                         "frontal chest X-ray (or the patient is far off-centre)", source)

    def full(m):
        out = np.ones(work.shape, bool) if m is out_in else np.zeros(work.shape, bool)
        out[r0:r1, c0:c1] = m
        return out
    return full(masks[0]), full(masks[1]), full(out_in), thr


def _upper_centroid(mask: np.ndarray) -> np.ndarray:
    rc = np.argwhere(mask).astype(float)
    return rc[rc[:, 0] <= np.median(rc[:, 0])].mean(axis=0)


def lung_frame(work: sitk.Image, left, right, source="image") -> dict:
    """Centre (physical), unit u / v (physical), D (mm) and the rotation (degrees) from the two lung masks of the
    working copy ``work`` (an sitk image in the input's physical space)."""
    pts = []
    for m in (left, right):
        r, c = _upper_centroid(m)
        pts.append(np.array(work.TransformContinuousIndexToPhysicalPoint((float(c), float(r)))))
    d = pts[1] - pts[0]
    dist = float(np.linalg.norm(d))
    if dist <= 0:
        raise InputError("the two lung fields have the same centre", source)
    u = d / dist
    direction = np.array(work.GetDirection()).reshape(2, 2)
    col_dir, row_dir = direction[:, 0], direction[:, 1]          # physical unit vectors of the index axes
    v = row_dir - u * float(row_dir @ u)
    v /= np.linalg.norm(v)
    rot = float(np.degrees(np.arctan2(float(u @ row_dir), float(u @ col_dir))))
    if abs(rot) > MAX_ROTATION_DEG:
        raise InputError(f"the line through the lung fields is rotated {rot:.0f} deg (at most {MAX_ROTATION_DEG:.0f}"
                         " deg for a frontal chest X-ray): not a frontal view, or rotate it first", source)
    return {"centre": (pts[0] + pts[1]) / 2, "u": u, "v": v, "distance_mm": dist, "rotation_deg": rot}


def model_grid(frame: dict, size=CXR_SIZE) -> sitk.Image:
    """The fixed grid (rows, cols) on the lung frame as a 2D sitk image in the input's physical space."""
    rows, cols = size
    dist = frame["distance_mm"]
    su = 2 * GRID_HALF_WIDTH * dist / cols
    sv = (GRID_V_RANGE[1] - GRID_V_RANGE[0]) * dist / rows
    u, v = frame["u"], frame["v"]
    origin = frame["centre"] + u * (-GRID_HALF_WIDTH * dist + su / 2) + v * (GRID_V_RANGE[0] * dist + sv / 2)
    grid = sitk.Image([cols, rows], sitk.sitkUInt8)
    grid.SetSpacing([su, sv])
    grid.SetOrigin([float(o) for o in origin])
    grid.SetDirection([float(u[0]), float(v[0]), float(u[1]), float(v[1])])
    return grid


def _as_2d(image: sitk.Image, source) -> sitk.Image:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("expected a single-component (grey) radiograph", source)
    if image.GetDimension() == 3:
        if image.GetSize()[2] != 1:
            raise InputError(f"a chest X-ray is one 2D image; got a volume of {image.GetSize()[2]} slices (give "
                             "the head CT model a volume)", source)
        image = image[:, :, 0]
    if image.GetDimension() != 2:
        raise InputError(f"expected a 2D radiograph, got {image.GetDimension()}D", source)
    return image


def working_copy(image: sitk.Image, a: np.ndarray) -> sitk.Image:
    """The radiograph area-averaged to at most WORK_PX on its longer side, as a float image covering the same
    physical extent (its pixel edges on the input's)."""
    f = min(1.0, WORK_PX / max(a.shape))
    src = sitk.GetImageFromArray(ndimage.gaussian_filter(a, max(0.0, 0.5 / f - 0.5)) if f < 1 else a)
    src.CopyInformation(image)
    if f >= 1:
        return src
    size = [max(1, int(round(n * f))) for n in image.GetSize()]
    ratio = np.array(image.GetSize()) / np.array(size)
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in np.array(image.GetSpacing()) * ratio])
    ref.SetDirection(image.GetDirection())
    ref.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in 0.5 * ratio - 0.5]))
    return sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def polarity_ok(image: sitk.Image) -> bool:
    """Whether a 2D radiograph passes the sample path's polarity check (``check_cxr_polarity`` on its working
    copy: lung bands darker than the central column) -- for deciding whether a MONOCHROME1 file's image was
    already inverted by its reader."""
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    try:
        check_cxr_polarity(sitk.GetArrayFromImage(working_copy(image, a)))
    except InputError:
        return False
    return True


def cxr_sample(image: sitk.Image, source="image", size=CXR_SIZE):
    """A frontal chest radiograph -> ``preprocess.Sample`` on the lung-field-aligned grid (module doc)."""
    image = _as_2d(image, source)
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    if min(a.shape) < 32:
        raise InputError(f"radiograph of {a.shape} px is too small (at least 32 px a side)", source)
    if float(a.max() - a.min()) <= 0:
        raise InputError("the radiograph is constant", source)
    work_img = working_copy(image, a)
    work = sitk.GetArrayFromImage(work_img)
    check_cxr_polarity(work, source)
    left, right, outside, thr = lung_fields(work, source)
    frame = lung_frame(work_img, left, right, source)
    grid = model_grid(frame, size)
    rows, cols = work.shape
    t = int(round(CXR_CENTRAL * rows)), int(round(CXR_CENTRAL * cols))
    box = work[t[0]:rows - t[0], t[1]:cols - t[1]]
    lung_med, soft_med = float(np.median(work[left | right])), float(np.median(box[box >= thr]))
    if soft_med - lung_med <= 1e-6:
        raise InputError("no contrast between lung field and soft tissue", source)
    sp = image.GetSpacing()
    su, sv = grid.GetSpacing()
    smooth = sitk.GetImageFromArray(ndimage.gaussian_filter(a, (0.5 * sv / sp[1], 0.5 * su / sp[0])))
    smooth.CopyInformation(image)
    on_grid = resample_to_grid(smooth, grid, default=np.nan)
    out_img = sitk.GetImageFromArray(outside.astype(np.float32))
    out_img.CopyInformation(work_img)
    in_film = ndimage.binary_erosion(np.isfinite(on_grid), iterations=FILM_EDGE_PX)
    body = in_film & (resample_to_grid(out_img, grid, default=1.0) < 0.5)
    raw = (np.nan_to_num(on_grid, nan=lung_med) - lung_med) * (SOFT_LEVEL - LUNG_LEVEL) / (soft_med - lung_med) \
        + LUNG_LEVEL
    mask = body & (raw > 0.0) & (raw < 1.0)
    kept = body & ~mask
    x = inpaint_kept(np.clip(raw, 0.0, 1.0)[None].astype(np.float32), mask, kept)
    return Sample(x, mask, grid, "cxr",
                  {"lung_fraction": float((left.sum() + right.sum()) / work.size), "lung_median": lung_med,
                   "soft_median": soft_med, "rotation_deg": frame["rotation_deg"],
                   "lung_distance_mm": frame["distance_mm"], "n_mask": int(mask.sum()), "n_kept": int(kept.sum())},
                  kept)
