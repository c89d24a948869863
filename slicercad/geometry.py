"""The one coordinate path: RAS (Slicer) <-> LPS (ITK/DICOM) <-> IJK voxel indices <-> KJI arrays.

Conventions
- A SimpleITK image's origin/direction are LPS; ``direction`` columns are the i, j, k axes.
- ``sitk.GetArrayFromImage`` and ``slicer.util.arrayFromVolume`` index arrays as [k, j, i].
- Slicer's IJKToRAS matrix maps (i, j, k, 1) to RAS; RAS = diag(-1, -1, 1) * LPS.
All sizes are millimetres.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import GeometryError

COORDINATE_SYSTEMS = ("LPS", "RAS")
_FLIP = np.diag([-1.0, -1.0, 1.0])


def check_system(system: str, source: str | None = None) -> str:
    """Return the normalised coordinate-system name or raise naming ``source``."""
    name = str(system).strip().upper()
    if name not in COORDINATE_SYSTEMS:
        raise GeometryError(f"coordinate_system must be one of {COORDINATE_SYSTEMS}, got {system!r}", source)
    return name


def ras_to_lps(points) -> np.ndarray:
    """Convert RAS point(s) (shape (3,) or (N, 3)) to LPS."""
    return np.asarray(points, dtype=float) @ _FLIP


lps_to_ras = ras_to_lps  # the flip is its own inverse


def to_lps(points, system: str) -> np.ndarray:
    """Points given in ``system`` ('LPS' or 'RAS') as LPS."""
    pts = np.asarray(points, dtype=float)
    return ras_to_lps(pts) if check_system(system) == "RAS" else pts


def ijk_to_lps_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 homogeneous matrix mapping (i, j, k, 1) to LPS millimetres."""
    dim = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=float).reshape(dim, dim)
    m = np.eye(4)
    m[:dim, :dim] = direction * np.array(image.GetSpacing(), dtype=float)
    m[:dim, 3] = image.GetOrigin()
    return m


def ijk_to_ras_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 matrix equal to what Slicer's ``GetIJKToRASMatrix`` returns for the same volume."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ ijk_to_lps_matrix(image)


def geometry_from_ijk_to_ras(matrix) -> dict:
    """Origin, spacing and direction (LPS, SimpleITK order) from a 4x4 IJKToRAS matrix."""
    m = np.asarray(matrix, dtype=float).reshape(4, 4)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ m
    axes = lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise GeometryError(f"IJKToRAS matrix has a zero-length axis: spacing {spacing.tolist()}")
    direction = axes / spacing
    return {
        "origin": tuple(lps[:3, 3]),
        "spacing": tuple(spacing),
        "direction": tuple(direction.ravel()),
    }


def physical_to_ijk(image: sitk.Image, points, system: str = "LPS") -> np.ndarray:
    """Continuous (i, j, k) index of physical point(s) given in ``system``."""
    lps = np.atleast_2d(to_lps(points, system))
    inv = np.linalg.inv(ijk_to_lps_matrix(image))
    homog = np.c_[lps, np.ones(len(lps))]
    ijk = (homog @ inv.T)[:, :3]
    return ijk[0] if np.ndim(points) == 1 else ijk


def ijk_to_physical(image: sitk.Image, ijk, system: str = "LPS") -> np.ndarray:
    """Physical point(s) in ``system`` of continuous (i, j, k) index(es)."""
    idx = np.atleast_2d(np.asarray(ijk, dtype=float))
    lps = (np.c_[idx, np.ones(len(idx))] @ ijk_to_lps_matrix(image).T)[:, :3]
    out = lps_to_ras(lps) if check_system(system) == "RAS" else lps
    return out[0] if np.ndim(ijk) == 1 else out


def ijk_to_kji(ijk) -> np.ndarray:
    """Reverse the last axis: (i, j, k) <-> (k, j, i) for numpy array indexing."""
    return np.asarray(ijk)[..., ::-1]


def inside(image: sitk.Image, ijk, margin: float = 0.5) -> bool:
    """True when continuous index ``ijk`` lies within the image's voxel extent."""
    size = np.array(image.GetSize(), dtype=float)
    idx = np.asarray(ijk, dtype=float)
    return bool(np.all(idx >= -margin) and np.all(idx <= size - 1 + margin))
