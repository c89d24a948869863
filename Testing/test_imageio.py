"""NRRD/NIfTI read/write checked against independent readers (hand-parsed headers, Slicer's
vtkMRMLVolumeArchetypeStorageNode), atomic writes, and resampling onto another grid."""
import gzip
import math
import re
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from slicercad import imageio
from slicercad.errors import ImageIOError, InputError
from slicercad.geometry import ijk_to_lps_matrix, ijk_to_ras_matrix


def _oblique_image(pixel=np.float32, seed=0):
    """Anisotropic, oblique (two rotations) image with random values."""
    values = np.random.default_rng(seed).normal(100, 30, (7, 9, 11)).astype(pixel)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.7, 1.3, 3.1))
    image.SetOrigin((12.5, -40.25, 7.0))
    a, b = math.radians(17), math.radians(-9)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    rz = np.array([[math.cos(b), -math.sin(b), 0], [math.sin(b), math.cos(b), 0], [0, 0, 1]])
    image.SetDirection((rz @ rx).ravel().tolist())
    return image


def _nrrd_header(path):
    """Fields of a NRRD header, parsed by hand (independent of ITK)."""
    raw = path.read_bytes()
    text = raw[: raw.index(b"\n\n")].decode("ascii") if b"\n\n" in raw else raw.decode("ascii")
    fields = {}
    for line in text.splitlines()[1:]:
        if ": " in line and not line.startswith("#"):
            key, value = line.split(": ", 1)
            fields[key.strip()] = value.strip()
    return fields


def _vectors(text):
    return np.array([[float(v) for v in vec.split(",")] for vec in re.findall(r"\(([^)]*)\)", text)])


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr"])
def test_nrrd_header_matches_image_geometry(tmp_path, suffix):
    image = _oblique_image()
    path = imageio.write_image(image, tmp_path / f"vol{suffix}")
    header = _nrrd_header(path)
    assert header["space"] == "left-posterior-superior"
    assert [int(v) for v in header["sizes"].split()] == list(image.GetSize())
    lps = ijk_to_lps_matrix(image)
    np.testing.assert_allclose(_vectors(header["space directions"]), lps[:3, :3].T, atol=1e-9)
    np.testing.assert_allclose(_vectors(header["space origin"])[0], lps[:3, 3], atol=1e-9)
    if suffix == ".nhdr":
        assert (tmp_path / header["data file"]).is_file()
    back = imageio.read_image(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(ijk_to_lps_matrix(back), lps, atol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _nifti_header(path):
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    dims = struct.unpack("<8h", raw[40:56])
    qform_code, sform_code = struct.unpack("<2h", raw[252:256])
    srow = np.array(struct.unpack("<12f", raw[280:328])).reshape(3, 4)
    return dims, qform_code, sform_code, srow


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_sform_and_slicer_reader_agree(tmp_path, suffix, scene):
    slicer = pytest.importorskip("slicer")
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    image = _oblique_image(np.int16, seed=3)
    path = imageio.write_image(image, tmp_path / f"vol{suffix}")
    dims, qform_code, sform_code, srow = _nifti_header(path)
    assert dims[:4] == (3, *image.GetSize())
    assert sform_code > 0 and qform_code > 0
    expected_ras = ijk_to_ras_matrix(image)
    np.testing.assert_allclose(srow, expected_ras[:3], atol=1e-4)

    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    slicer_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    np.testing.assert_allclose(slicer_ras, expected_ras, atol=1e-4)
    voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(image.GetSize()[::-1])
    np.testing.assert_array_equal(voxels, sitk.GetArrayFromImage(image))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ImageIOError, match="missing.nrrd"):
        imageio.read_image(tmp_path / "missing.nrrd")
    with pytest.raises(ImageIOError, match="unsupported"):
        imageio.read_image(tmp_path / "image.png")
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b this is not a gzip stream")
    with pytest.raises(ImageIOError, match="corrupt.nii.gz"):
        imageio.read_image(corrupt)
    truncated = tmp_path / "truncated.nrrd"
    good = imageio.write_image(_oblique_image(), tmp_path / "good.nrrd", compress=False)
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ImageIOError, match="truncated.nrrd"):
        imageio.read_image(truncated)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    target = imageio.write_image(_oblique_image(seed=1), tmp_path / "out.nii.gz")
    before = target.read_bytes()

    def failing_write(image, name, *args):
        with open(name, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(imageio.sitk, "WriteImage", failing_write)
    with pytest.raises(ImageIOError, match="disk full"):
        imageio.write_image(_oblique_image(seed=2), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ImageIOError, match="afile"):
        imageio.write_image(_oblique_image(), blocker / "sub.nrrd")


def _linear_field(points):
    return 3.0 * points[:, 0] - 2.0 * points[:, 1] + 0.5 * points[:, 2] + 10.0


def _voxel_points(image):
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.c_[i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)]
    return (ijk @ ijk_to_lps_matrix(image).T)[:, :3], ijk[:, :3]


def test_resample_keeps_physical_values():
    """A linear function of LPS position survives linear resampling exactly, on any grid."""
    source = _oblique_image()
    points, _ = _voxel_points(source)
    source = sitk.GetImageFromArray(_linear_field(points).reshape(source.GetSize()[::-1]).astype(np.float64))
    source.CopyInformation(_oblique_image())
    reference = sitk.Image([20, 18, 9], sitk.sitkUInt8)
    reference.SetSpacing((0.9, 0.8, 1.7))
    reference.SetOrigin((13.0, -39.0, 6.0))
    c, s = math.cos(math.radians(25)), math.sin(math.radians(25))
    reference.SetDirection((c, 0, s, 0, 1, 0, -s, 0, c))
    out = imageio.resample_to_reference(source, reference, default=-999.0)
    assert out.GetSize() == reference.GetSize() and out.GetDirection() == reference.GetDirection()
    assert out.GetPixelID() == source.GetPixelID()
    ref_points, _ = _voxel_points(reference)
    values = sitk.GetArrayFromImage(out).ravel()
    ijk_in_source = (np.c_[ref_points, np.ones(len(ref_points))] @ np.linalg.inv(ijk_to_lps_matrix(source)).T)[:, :3]
    interior = np.all((ijk_in_source > 0.01) & (ijk_in_source < np.array(source.GetSize()) - 1.01), axis=1)
    outside = np.any((ijk_in_source < -0.6) | (ijk_in_source > np.array(source.GetSize()) - 0.4), axis=1)
    assert interior.sum() > 50 and outside.sum() > 50
    np.testing.assert_allclose(values[interior], _linear_field(ref_points[interior]), atol=1e-6)
    np.testing.assert_array_equal(values[outside], -999.0)


def test_nearest_keeps_labels_and_bad_arguments_raise():
    labels = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 4, (6, 8, 8)).astype(np.uint8))
    labels.SetSpacing((2.0, 2.0, 4.0))
    reference = sitk.Image([23, 21, 11], sitk.sitkFloat32)
    reference.SetSpacing((0.7, 0.75, 2.1))
    out = imageio.resample_to_reference(labels, reference, "nearest")
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(out))) <= {0, 1, 2, 3}
    assert sitk.GetArrayFromImage(out)[0, 0, 0] == sitk.GetArrayFromImage(labels)[0, 0, 0]
    with pytest.raises(InputError, match="interpolator"):
        imageio.resample_to_reference(labels, reference, "cubic")
    with pytest.raises(InputError, match="2D"):
        imageio.resample_to_reference(sitk.Image([4, 4], sitk.sitkUInt8), reference)
