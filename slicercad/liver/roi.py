"""Per-lesion 2D ROIs cut at the lesion's physical position on each phase's own grid.

Geometry of one phase's ROI
- Plane: the phase's own slice plane (its i/j axes), so no slices of that phase are mixed beyond
  linear interpolation at the lesion's exact through-plane position; oblique and anisotropic
  grids are handled by SimpleITK resampling. In-plane axes are sign-normalised so every ROI is
  shown the same way: columns run towards patient Left, rows run ``normal x column`` (Posterior on
  an axial plane), whatever the phase's voxel order.
- Size: ``size_px`` x ``size_px`` pixels over a square field of view ``fov_mm``. The default
  field of view follows the lesion: ``max(fov_factor * diameter, min_fov_mm)`` = max(3 d, 48 mm),
  so a lesion spans about a third of the ROI at any size (and a 3 mm lesion still covers
  several pixels); pass ``fov_mm`` for a fixed physical field of view instead.
- Centre: the lesion centre (pixel ``(size-1)/2`` in both axes) plus an optional per-phase offset
  in mm for breath-hold misregistration.
- Off the image: pixels outside the phase's extent are filled by nearest-edge extrapolation and
  the fraction of such pixels is reported (``outside_fraction``; ``padded`` flags any).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import check_system, inside, physical_to_ijk, to_lps
from .phases import REFERENCE_PHASE, check_phases

_INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


@dataclass(frozen=True)
class RoiSpec:
    """How ROIs are cut: pixels and millimetres."""

    size_px: int = 64
    fov_mm: float | None = None      # fixed field of view; None -> max(fov_factor*d, min_fov_mm)
    fov_factor: float = 3.0
    min_fov_mm: float = 48.0
    interpolator: str = "linear"

    def field_of_view(self, diameter_mm: float) -> float:
        """ROI side length in mm for a lesion of ``diameter_mm``."""
        if self.fov_mm is not None:
            return float(self.fov_mm)
        return float(max(self.fov_factor * diameter_mm, self.min_fov_mm))

    def validate(self) -> "RoiSpec":
        if int(self.size_px) < 8:
            raise InputError(f"size_px must be >= 8, got {self.size_px}", "RoiSpec.size_px")
        if self.fov_mm is not None and not (np.isfinite(self.fov_mm) and self.fov_mm > 0):
            raise InputError(f"fov_mm must be a positive number, got {self.fov_mm}", "RoiSpec.fov_mm")
        if self.interpolator not in _INTERPOLATORS:
            raise InputError(f"interpolator must be one of {sorted(_INTERPOLATORS)}", "RoiSpec.interpolator")
        return self


ROI_SPEC_KEYS = ("fov_mm", "fov_factor", "min_fov_mm", "interpolator")   # + roi_px (size_px), on the card


def roi_spec_from_config(cfg: dict) -> RoiSpec:
    """The ``RoiSpec`` of a task config / model_config (``roi_px`` + ``ROI_SPEC_KEYS``; missing keys:
    the ``RoiSpec`` defaults, as cards written before these keys were stored were cut)."""
    d = RoiSpec()
    fov = cfg.get("fov_mm", d.fov_mm)
    return RoiSpec(size_px=int(cfg.get("roi_px", d.size_px)), fov_mm=None if fov is None else float(fov),
                   fov_factor=float(cfg.get("fov_factor", d.fov_factor)),
                   min_fov_mm=float(cfg.get("min_fov_mm", d.min_fov_mm)),
                   interpolator=str(cfg.get("interpolator", d.interpolator))).validate()


def roi_spec_from_card(spec_or_card: dict) -> RoiSpec:
    """The ``RoiSpec`` a model card declares (its ``input_spec``; a whole card is accepted): the ROI the
    model was trained on, used for serving, evaluation and the export crop."""
    spec = spec_or_card.get("input_spec", spec_or_card)
    roi = spec.get("roi") or {}
    px = spec.get("roi_px", [RoiSpec().size_px])
    return roi_spec_from_config({**roi, "roi_px": px[0] if isinstance(px, (list, tuple)) else px})


def roi_spec_dict(spec: RoiSpec) -> dict:
    """The card's ``input_spec.roi`` entry of ``spec``."""
    return {"fov_mm": spec.fov_mm, "fov_factor": float(spec.fov_factor), "min_fov_mm": float(spec.min_fov_mm),
            "interpolator": spec.interpolator,
            "field_of_view": (f"fixed {spec.fov_mm:g} mm" if spec.fov_mm is not None else
                              f"max({spec.fov_factor:g} x diameter, {spec.min_fov_mm:g} mm)") +
                             f" over {spec.size_px} pixels"}


@dataclass
class Lesion:
    """A lesion: centre point, longest diameter (mm), optional per-phase centre offsets (mm).

    ``center`` and ``offsets_mm`` are in ``coordinate_system`` ('LPS' or 'RAS').
    """

    lesion_id: str
    center: tuple
    diameter_mm: float
    coordinate_system: str = "LPS"
    offsets_mm: dict = field(default_factory=dict)

    def center_lps(self) -> np.ndarray:
        c = np.asarray(self.center, dtype=float)
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise InputError(f"center must be 3 finite numbers, got {self.center!r}", self.lesion_id)
        return to_lps(c, check_system(self.coordinate_system, self.lesion_id))

    def offset_lps(self, phase: str) -> np.ndarray:
        off = np.asarray(self.offsets_mm.get(phase, (0.0, 0.0, 0.0)), dtype=float)
        if off.shape != (3,) or not np.all(np.isfinite(off)):
            raise InputError(f"offset for phase {phase!r} must be 3 finite mm values, got {off!r}",
                             self.lesion_id)
        return to_lps(off, self.coordinate_system)  # RAS<->LPS flip is linear: same for vectors

    def check(self) -> "Lesion":
        d = self.diameter_mm
        if d is None or not np.isfinite(d) or d <= 0:
            raise InputError(f"diameter must be a positive number of mm, got {d!r}", self.lesion_id)
        self.center_lps()
        return self


@dataclass
class LesionRois:
    """The ROI stack of one lesion and where each ROI lies in the patient."""

    lesion_id: str
    phases: tuple
    array: np.ndarray            # float32 [phases, H, W]; rows/cols as described in the module doc
    geometries: dict             # phase -> sitk.Image (size W x H x 1) holding the ROI and its geometry
    centers_lps: dict            # phase -> ROI centre (lesion centre + that phase's offset), LPS mm
    outside_fraction: dict       # phase -> fraction of ROI pixels outside that phase's image
    spacing_mm: float
    fov_mm: float
    diameter_mm: float
    notes: list = field(default_factory=list)   # unit conversions and similar, shown with the result

    @property
    def padded(self) -> bool:
        """True when any phase's ROI ran off its image."""
        return any(f > 0 for f in self.outside_fraction.values())

    @property
    def center_px(self) -> tuple:
        """(row, col) of the lesion centre in the ROI array."""
        c = (self.array.shape[-1] - 1) / 2.0
        return (c, c)


def roi_axes(image: sitk.Image) -> np.ndarray:
    """3x3 direction of a ROI on ``image``'s slice plane: columns = (col axis, row axis, normal)."""
    d = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    normal = np.cross(d[:, 0], d[:, 1])
    normal /= np.linalg.norm(normal)
    if normal[np.argmax(np.abs(normal))] < 0:
        normal = -normal
    col = d[:, 0] - normal * (d[:, 0] @ normal)
    col /= np.linalg.norm(col)
    if col[np.argmax(np.abs(col))] < 0:
        col = -col
    row = np.cross(normal, col)
    return np.column_stack([col, row, normal])


def roi_reference(image: sitk.Image, center_lps, size_px: int, spacing_mm: float) -> sitk.Image:
    """An empty 1-slice image whose pixel ((size-1)/2, (size-1)/2, 0) is at ``center_lps``."""
    axes = roi_axes(image)
    half = (size_px - 1) / 2.0 * spacing_mm
    origin = np.asarray(center_lps, dtype=float) - axes[:, 0] * half - axes[:, 1] * half
    ref = sitk.Image([int(size_px), int(size_px), 1], sitk.sitkFloat32)
    ref.SetSpacing((spacing_mm, spacing_mm, float(image.GetSpacing()[2])))
    ref.SetDirection(tuple(axes.ravel()))
    ref.SetOrigin(tuple(origin))
    return ref


def _outside_fraction(image: sitk.Image, ref: sitk.Image) -> float:
    n = ref.GetSize()[0]
    jj, ii = np.mgrid[0:n, 0:n]
    m = np.array(ref.GetDirection()).reshape(3, 3) * np.array(ref.GetSpacing())
    pts = np.asarray(ref.GetOrigin()) + np.c_[ii.ravel(), jj.ravel(), np.zeros(n * n)] @ m.T
    idx = physical_to_ijk(image, pts)
    size = np.asarray(image.GetSize(), dtype=float)
    ok = np.all((idx >= -0.5) & (idx <= size - 0.5), axis=1)
    return float(1.0 - ok.mean())


def extract_phase_roi(image: sitk.Image, center_lps, spec: RoiSpec, diameter_mm: float,
                      lesion_id: str = None, phase: str = None):
    """Resample one phase at ``center_lps``; returns (array [H, W], sitk ROI image, outside fraction)."""
    spec.validate()
    if image.GetDimension() != 3:
        raise InputError(f"phase {phase!r} must be a 3D image, got {image.GetDimension()}D", lesion_id)
    where = f"{lesion_id} ({phase})" if phase else lesion_id
    idx = physical_to_ijk(image, center_lps)
    if not inside(image, idx):
        raise InputError(f"lesion centre {np.round(center_lps, 2).tolist()} mm (LPS) is outside the "
                         f"{phase or 'image'} volume (continuous index {np.round(idx, 2).tolist()}, "
                         f"size {list(image.GetSize())})", where)
    fov = spec.field_of_view(diameter_mm)
    spacing = fov / spec.size_px
    ref = roi_reference(image, center_lps, spec.size_px, spacing)
    src = sitk.Cast(image, sitk.sitkFloat32) if image.GetPixelID() != sitk.sitkFloat32 else image
    out = sitk.Resample(src, ref, sitk.Transform(), _INTERPOLATORS[spec.interpolator], 0.0,
                        sitk.sitkFloat32, True)
    arr = sitk.GetArrayFromImage(out)[0]
    if not np.all(np.isfinite(arr)):
        raise InputError(f"phase {phase!r} has NaN/inf voxels inside the ROI", where)
    return arr, out, _outside_fraction(image, ref)


def extract_rois(images: dict, lesion: Lesion, phases=None, spec: RoiSpec = RoiSpec()) -> LesionRois:
    """Cut the lesion's ROI on every requested phase (default: every phase present, canonical order).

    ``images`` maps phase name -> 3D sitk.Image (each with its own geometry). The lesion centre must
    lie inside the reference (hepatobiliary) phase when present, and every phase's centre plus its
    offset inside that phase; otherwise InputError names the lesion and phase.
    """
    lesion.check()
    phases = check_phases(images.keys(), phases if phases is not None else list(images), lesion.lesion_id)
    if not phases:
        raise InputError("no phases requested", lesion.lesion_id)
    centre = lesion.center_lps()
    if REFERENCE_PHASE in images and REFERENCE_PHASE not in phases:
        if not inside(images[REFERENCE_PHASE], physical_to_ijk(images[REFERENCE_PHASE], centre)):
            raise InputError(f"lesion centre {np.round(centre, 2).tolist()} mm (LPS) is outside the "
                             "hepatobiliary (reference) volume", lesion.lesion_id)
    arrays, geoms, centres, outside = [], {}, {}, {}
    for p in phases:
        c = centre + lesion.offset_lps(p)
        arr, geom, frac = extract_phase_roi(images[p], c, spec, lesion.diameter_mm, lesion.lesion_id, p)
        arrays.append(arr)
        geoms[p], centres[p], outside[p] = geom, c, frac
    fov = spec.field_of_view(lesion.diameter_mm)
    return LesionRois(lesion.lesion_id, phases, np.stack(arrays).astype(np.float32), geoms, centres,
                      outside, fov / spec.size_px, fov, float(lesion.diameter_mm))


def mask_roi(mask: sitk.Image, geometry: sitk.Image) -> np.ndarray:
    """A lesion mask (any grid) on one ROI's geometry -> bool [H, W], by partial-volume fraction.

    A floating-point mask is read as the lesion's partial-volume fraction per voxel (0..1, the
    SYNTHETIC phantom writes one); an integer mask (a labelmap, a segment) as 0/1 (> 0). The
    fraction is linearly interpolated onto the ROI plane and a pixel belongs to the lesion where
    it is >= 0.5. Only when no pixel reaches 0.5 (a lesion thinner than the ROI plane's
    sampling) the pixel(s) of highest fraction are kept, so a lesion is never lost.
    """
    floating = mask.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
    src = sitk.Cast(mask, sitk.sitkFloat32) if floating else sitk.Cast(mask > 0, sitk.sitkFloat32)
    frac = sitk.Resample(src, geometry, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    v = np.clip(sitk.GetArrayFromImage(frac)[0], 0.0, 1.0)
    m = v >= 0.5
    if not m.any() and v.max() > 0:
        m = v >= v.max() - 1e-6
    return m


def roi_to_patient(roi_map, geometry: sitk.Image, reference: sitk.Image, default: float = 0.0) -> sitk.Image:
    """Put a [H, W] map (attention, Grad-CAM) defined on a ROI back onto a patient grid.

    The map is a slab one ROI-slice thick (the phase's slice thickness) at the ROI plane; voxels of
    ``reference`` away from that slab get ``default``.
    """
    arr = np.asarray(roi_map, dtype=np.float32)
    n_rows, n_cols = geometry.GetSize()[1], geometry.GetSize()[0]
    if arr.shape != (n_rows, n_cols):
        raise InputError(f"map shape {arr.shape} does not match the ROI ({n_rows}, {n_cols})", "roi_map")
    img = sitk.GetImageFromArray(arr[None])
    img.CopyInformation(geometry)
    return sitk.Resample(img, reference, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
