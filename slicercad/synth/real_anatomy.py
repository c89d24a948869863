"""Real anatomy from packaged files, for loading / preprocessing tests and as real normal backgrounds.

``invesalius_head_ct()``: the head CT of Debian's ``invesalius-examples`` (``Cranium.inv3``, "ProMED CT 0051"),
an InVesalius 3 project: a tar holding ``main.plist`` (matrix dtype / shape, spacing, orientation, modality) and
``matrix.dat`` (raw little-endian array, shape (slices, rows, cols), values in HU). Returned as a SimpleITK
float32 image in HU with LPS geometry. Axes, pinned from the anatomy by Testing/test_anomaly_real_anatomy.py:
  * the project says orientation 1; the slices are **coronal**: the slice index runs anterior -> posterior (the
    nasal cavity / sinuses in the first slices, the occiput in the last), 1.5 mm apart;
  * rows run superior -> inferior (the vertex in row 0), columns along left-right, 0.957 mm.
  Left-right cannot be told from a normal head's anatomy: the columns are taken to run patient right -> left as
  in a DICOM coronal image (ImageOrientationPatient 1\\0\\0\\0\\0\\-1). The origin is arbitrary (volume centred
  at 0): the file keeps none. The scan covers 162 mm front to back, so the frontal pole is cut off.
``real_head_background(hu_image)``: the head resampled onto an isotropic 1.5 mm LPS grid (at 2.5 mm the thin
real skull no longer closes) as a ``HeadPhantom`` (intracranial and parenchyma masks from HU), so
``anomaly_head.insert_anomaly`` puts lesions into real anatomy;
``small_transform`` gives the few clearly-stated augmentations (rotation about z <= a few degrees, shifts of a few
mm) used to turn the one real case into several backgrounds. Everything derived here is ONE real patient.
"""
from __future__ import annotations

import plistlib
import tarfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError

INVESALIUS_CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
CORONAL = 1                                   # InVesalius project orientation code of this file (pinned by test)
# LPS direction (columns = index axes i, j, k): i -> +x (left), j -> -z (inferior), k -> +y (posterior)
CORONAL_DIRECTION = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)
BACKGROUND_SPACING_MM = 1.5                   # real backgrounds keep the thin skull closed (2.5 mm does not)
BACKGROUND_FOV_MM = (190.0, 230.0, 230.0)     # x, y, z: the whole skull down to the foramen magnum
PARENCHYMA_HU = (20.0, 45.0)                  # grey / white matter range for the "brain" mask of a real head


def _member(tar: tarfile.TarFile, name: str, path: Path):
    for m in tar.getmembers():
        if m.isfile() and Path(m.name).name == name:
            return tar.extractfile(m).read()
    raise InputError(f"{name} not found in the InVesalius project", str(path))


def read_inv3(path: str | Path) -> sitk.Image:
    """An InVesalius 3 project's CT volume (HU, float32, LPS); fields checked with a message naming them."""
    path = Path(path)
    if not path.is_file():
        raise InputError("InVesalius project not found (Debian package invesalius-examples)", str(path))
    try:
        with tarfile.open(path) as tar:
            meta = plistlib.loads(_member(tar, "main.plist", path))
            mat = meta.get("matrix", {})
            raw = _member(tar, mat.get("filename", "matrix.dat"), path)
    except (tarfile.TarError, plistlib.InvalidFileException) as exc:
        raise InputError(f"not a readable InVesalius project: {exc}", str(path)) from exc
    if meta.get("modality") != "CT":
        raise InputError(f"modality {meta.get('modality')!r}, expected CT", f"{path}: main.plist modality")
    if mat.get("dtype") != "int16":
        raise InputError(f"matrix dtype {mat.get('dtype')!r}, expected int16", f"{path}: main.plist matrix.dtype")
    shape = tuple(int(s) for s in mat.get("shape", ()))
    if len(shape) != 3 or len(raw) != 2 * int(np.prod(shape)):
        raise InputError(f"matrix shape {shape} does not match {len(raw)} bytes of int16", f"{path}: matrix.shape")
    if meta.get("orientation") != CORONAL:
        raise InputError(f"orientation {meta.get('orientation')!r}: only the coronal code {CORONAL} is verified",
                         f"{path}: main.plist orientation")
    spacing = [float(s) for s in meta.get("spacing", ())]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"spacing {spacing} is not 3 positive numbers", f"{path}: main.plist spacing")
    arr = np.frombuffer(raw, "<i2").reshape(shape).astype(np.float32)     # (slices, rows, cols)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetDirection(CORONAL_DIRECTION)
    centre = img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in img.GetSize()])
    img.SetOrigin([-c for c in centre])
    return img


def invesalius_head_ct(path: str | Path = INVESALIUS_CRANIUM) -> sitk.Image:
    return read_inv3(path)


def small_transform(image: sitk.Image, rot_deg: float = 0.0, shift_mm=(0.0, 0.0, 0.0)) -> sitk.Image:
    """``image`` rotated about the z axis through its centre and shifted (LPS mm), same grid, air outside."""
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()])
    tr = sitk.Euler3DTransform(centre, 0.0, 0.0, float(np.deg2rad(rot_deg)), [float(s) for s in shift_mm])
    return sitk.Resample(image, image, tr, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)


def real_head_background(image: sitk.Image, patient_id: str = "INVESALIUS_CRANIUM",
                         spacing_mm: float = BACKGROUND_SPACING_MM):
    """The head (HU) on an isotropic ``spacing_mm`` LPS grid of BACKGROUND_FOV_MM centred on its intracranial
    centroid, as a ``HeadPhantom`` with ``inner`` = intracranial mask and ``brain`` = intracranial voxels in
    PARENCHYMA_HU (smoothed HU) eroded by one voxel -- where ``insert_anomaly`` may place lesions."""
    from ..anomaly.preprocess import intracranial_mask
    from .anomaly_head import HeadPhantom

    hu = sitk.GetArrayViewFromImage(image).astype(np.float32)
    icm = intracranial_mask(hu, image.GetSpacing()[::-1])
    if not icm.any():
        raise InputError("no intracranial space found (is this a head CT in HU?)", patient_id)
    centre = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in np.argwhere(icm).mean(0)[::-1]])
    size = [int(round(f / spacing_mm)) for f in BACKGROUND_FOV_MM]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([float(spacing_mm)] * 3)
    ref.SetOrigin([c - (n - 1) / 2.0 * spacing_mm for c, n in zip(centre, size)])
    sigma = [max(0.01, (spacing_mm / 2.0) ** 2 - (s / 2.0) ** 2) ** 0.5 for s in image.GetSpacing()]
    out = sitk.Resample(sitk.SmoothingRecursiveGaussian(image, sigma), ref, sitk.Transform(), sitk.sitkLinear,
                        -1000.0, sitk.sitkFloat32)
    m = sitk.GetImageFromArray(icm.astype(np.uint8))
    m.CopyInformation(image)
    inner = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(m, sitk.sitkFloat32), ref, sitk.Transform(),
                                                 sitk.sitkLinear, 0.0, sitk.sitkFloat32)) >= 0.5
    g = sitk.GetArrayFromImage(out)
    sm = ndimage.gaussian_filter(g, 1.0)
    brain = ndimage.binary_erosion(inner & (sm >= PARENCHYMA_HU[0]) & (sm <= PARENCHYMA_HU[1]))
    return HeadPhantom(out, patient_id, {"real": True, "source": "invesalius-examples Cranium.inv3"}, brain, inner)
