"""Sphere / ellipsoid (3D) and circle / ellipse (2D) labels from a centre and diameter(s) in mm, on the
voxel grid of a reference SimpleITK image -- exact on anisotropic and oblique grids, because every voxel
centre is tested in physical (LPS) space. With ``partial_volume=True`` each voxel holds the fraction of
its volume inside the shape (``supersample``\u00b3 sub-voxel points, default 4 -> 64 per voxel)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from ..geometry import inside, physical_to_ijk, to_lps

SUPERSAMPLE = 4


def _diameters(diameters_mm, dim: int) -> np.ndarray:
    d = np.atleast_1d(np.asarray(diameters_mm, dtype=float)).ravel()
    if d.size == 1:
        d = np.repeat(d, dim)
    if d.size != dim:
        raise InputError(f"give one diameter or {dim} diameters in mm, got {d.size}", "diameter_mm")
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise InputError(f"diameter must be > 0 mm, got {d.tolist()}", "diameter_mm")
    return d


def _axes(axes, dim: int) -> np.ndarray:
    if axes is None:
        return np.eye(dim)
    a = np.asarray(axes, dtype=float).reshape(dim, dim)
    norms = np.linalg.norm(a, axis=0)
    if np.any(norms <= 0) or not np.allclose(a.T @ a / np.outer(norms, norms), np.eye(dim), atol=1e-4):
        raise InputError("ellipsoid axes must be orthogonal, non-zero column vectors (LPS)", "axes")
    return a / norms


def _centre(reference: sitk.Image, center, system: str) -> np.ndarray:
    dim = reference.GetDimension()
    c = np.asarray(center, dtype=float).ravel()
    if dim == 3:
        if c.size != 3:
            raise InputError(f"centre needs 3 coordinates, got {c.size}", "center")
        return to_lps(c, system)
    if c.size != 2:
        raise InputError(f"centre on a 2D image needs 2 coordinates (image x, y in mm), got {c.size}", "center")
    return c


def check_inside(reference: sitk.Image, center_lps, diameters=None, source: str = "center") -> np.ndarray:
    """Continuous index of the centre; GeometryError when it lies outside the image, InputError when a
    diameter exceeds the image's physical extent."""
    dim = reference.GetDimension()
    if dim == 3:
        ijk = physical_to_ijk(reference, center_lps, "LPS")
    else:
        ijk = np.array(reference.TransformPhysicalPointToContinuousIndex([float(v) for v in center_lps]))
    if not inside(reference, ijk):
        raise GeometryError(f"centre {np.round(center_lps, 2).tolist()} mm (LPS) lies outside the image "
                            f"(continuous index {np.round(ijk, 1).tolist()}, size {list(reference.GetSize())})",
                            source)
    if diameters is not None:
        extent = np.array(reference.GetSize()) * np.array(reference.GetSpacing())
        if np.max(diameters) > np.max(extent):
            raise InputError(f"diameter {np.max(diameters):g} mm is larger than the image "
                             f"({np.round(extent, 1).tolist()} mm)", "diameter_mm")
    return ijk


def ellipsoid_label(reference: sitk.Image, center, diameters_mm, system: str = "LPS", axes=None,
                    partial_volume: bool = False, supersample: int = SUPERSAMPLE) -> sitk.Image:
    """A label on ``reference``'s grid: 1 inside the ellipsoid (UInt8), or the inside fraction of each
    voxel (Float32, ``partial_volume``). ``center`` is in ``system`` (LPS/RAS; on a 2D image: image x, y
    mm); ``diameters_mm`` one value (sphere / circle) or one per axis; ``axes`` (columns, LPS) orient
    the ellipsoid (default: LPS axes)."""
    dim = reference.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"reference must be a 2D or 3D image, got {dim}D", "reference")
    d = _diameters(diameters_mm, dim)
    ax = _axes(axes, dim)
    c = _centre(reference, center, system)
    c_ijk = check_inside(reference, c, d)
    if partial_volume and (int(supersample) < 1):
        raise InputError(f"supersample must be >= 1, got {supersample}", "supersample")
    m = np.eye(dim + 1)
    direction = np.array(reference.GetDirection(), dtype=float).reshape(dim, dim)
    m[:dim, :dim] = direction * np.array(reference.GetSpacing(), dtype=float)
    m[:dim, dim] = reference.GetOrigin()
    lin = m[:dim, :dim]
    inv = np.linalg.inv(lin)
    shape_axes = ax * (d / 2.0)               # columns: semi-axes in LPS mm
    half = np.linalg.norm(inv @ shape_axes, axis=1)  # index-space half extent per index axis
    size = np.array(reference.GetSize())
    lo = np.clip(np.floor(c_ijk - half - 1).astype(int), 0, size - 1)
    hi = np.clip(np.ceil(c_ijk + half + 1).astype(int), 0, size - 1)
    grids = np.meshgrid(*[np.arange(lo[a], hi[a] + 1, dtype=float) for a in range(dim)], indexing="ij")
    idx = np.stack([g.ravel() for g in grids], axis=1)          # (N, dim) in (i, j[, k]) order
    # to the ellipsoid's unit frame: u = diag(2/d) ax^T (M idx + o - c)
    to_unit = (ax.T / (d[:, None] / 2.0)) @ lin                  # dim x dim
    offset = (ax.T / (d[:, None] / 2.0)) @ (m[:dim, dim] - c)
    if partial_volume and supersample > 1:
        s = int(supersample)
        sub = (np.arange(s) + 0.5) / s - 0.5
        subs = np.stack(np.meshgrid(*[sub] * dim, indexing="ij"), -1).reshape(-1, dim)
        frac = np.zeros(len(idx))
        for chunk in np.array_split(np.arange(len(idx)), max(1, len(idx) * len(subs) // 2_000_000)):
            pts = (idx[chunk, None, :] + subs[None]) @ to_unit.T + offset
            frac[chunk] = (np.sum(pts ** 2, axis=-1) <= 1.0).mean(axis=1)
        values = frac
    else:
        values = (np.sum((idx @ to_unit.T + offset) ** 2, axis=1) <= 1.0).astype(float)
    block = values.reshape([hi[a] - lo[a] + 1 for a in range(dim)]).transpose(*range(dim - 1, -1, -1))
    out = np.zeros(size[::-1], dtype=np.float32 if partial_volume else np.uint8)
    sl = tuple(slice(lo[a], hi[a] + 1) for a in range(dim - 1, -1, -1))
    out[sl] = block.astype(out.dtype)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image


def sphere_label(reference: sitk.Image, center, diameter_mm: float, system: str = "LPS",
                 partial_volume: bool = False) -> sitk.Image:
    """A sphere (3D) or circle (2D) of ``diameter_mm`` at ``center``; see :func:`ellipsoid_label`."""
    return ellipsoid_label(reference, center, float(diameter_mm), system, None, partial_volume)


def axes_diameters(long_axis_mm: float, short_axis_mm: float | None = None, dim: int = 3) -> list:
    """Ellipsoid diameters from a report's long / short axis: (long, short, short) -- the third axis,
    unmeasured in a 2D reading, is taken equal to the short axis. They carry no direction: drawn without
    axes they become the sphere of the same volume (``segment.sphere_shape``)."""
    long_axis = float(long_axis_mm)
    short = long_axis if short_axis_mm in (None, "") else float(short_axis_mm)
    if not (long_axis > 0 and short > 0):
        raise InputError(f"axes must be > 0 mm, got long {long_axis_mm}, short {short_axis_mm}", "diameter_mm")
    if short > long_axis:
        raise InputError(f"short axis {short:g} mm exceeds the long axis {long_axis:g} mm", "short_axis_mm")
    return [long_axis] + [short] * (dim - 1)


def equivalent_diameter(diameters_mm) -> float:
    """Diameter of the sphere with the ellipsoid's volume (geometric mean of the diameters)."""
    d = np.asarray(diameters_mm, dtype=float).ravel()
    return float(np.prod(d) ** (1.0 / d.size))
