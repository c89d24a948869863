"""Image files (NRRD, NIfTI, MetaImage) through SimpleITK, written atomically, and resampling
of one phase onto another phase's grid. Geometry is LPS millimetres throughout."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import SimpleITK as sitk

from .atomic import atomic_path
from .errors import ImageIOError, InputError

SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha")
INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ImageIOError(f"unsupported image file type; expected one of {list(SUFFIXES)}", path)


def read_image(path) -> sitk.Image:
    """Read a 2D/3D image; ImageIOError names the file when it is missing, unsupported or corrupt."""
    path = Path(path)
    _suffix(path)
    if not path.is_file():
        raise ImageIOError("file not found", path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise ImageIOError(f"cannot read image ({first})", path) from exc


def write_image(image: sitk.Image, path, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` atomically (the target appears complete or not at all).

    A detached NRRD header (.nhdr) is written with its data file in a temporary folder beside the
    target; the data file is moved first, then the header, so the header never points to nothing.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not isinstance(image, sitk.Image):
        raise ImageIOError(f"expected a SimpleITK image, got {type(image).__name__}", path)
    try:
        if suffix == ".nhdr":
            _write_detached_nrrd(image, path, compress)
        else:
            with atomic_path(path) as tmp:
                sitk.WriteImage(image, str(tmp), compress)
    except (RuntimeError, OSError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ImageIOError(f"cannot write image ({detail})", path) from exc
    return path


def _write_detached_nrrd(image: sitk.Image, path: Path, compress: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        sitk.WriteImage(image, str(tmpdir / path.name), compress)
        written = sorted(p for p in tmpdir.iterdir() if p.name != path.name)
        for data_file in written:
            os.replace(data_file, path.parent / data_file.name)
        os.replace(tmpdir / path.name, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def resample_to_reference(image: sitk.Image, reference: sitk.Image, interpolator: str = "linear",
                          default: float = 0.0) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid (size, spacing, origin, direction).

    Physical points keep their values: no transform is applied, only the grid changes. The pixel
    type of ``image`` is kept (use "nearest" for label maps); voxels outside ``image`` get ``default``.
    """
    if interpolator not in INTERPOLATORS:
        raise InputError(f"interpolator must be one of {sorted(INTERPOLATORS)}, got {interpolator!r}",
                         "interpolator")
    if image.GetDimension() != reference.GetDimension():
        raise InputError(f"image is {image.GetDimension()}D but reference is {reference.GetDimension()}D",
                         "reference")
    return sitk.Resample(image, reference, sitk.Transform(), INTERPOLATORS[interpolator], float(default),
                         image.GetPixelID())
