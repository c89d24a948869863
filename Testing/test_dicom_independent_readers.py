"""Our DICOM loader against independent readers on the same files: SimpleITK/GDCM, Slicer's
vtkMRMLVolumeArchetypeStorageNode (slicer-core) and dcm2niix (skipped only where it is absent)."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from slicercad.dicom.scan import load_volume, scan_folder
from slicercad.dicom.write import write_series
from slicercad.geometry import ijk_to_ras_matrix


def data_file(name):
    return Path(get_testdata_file(name, download=False))


def corners(image):
    """Physical (LPS) positions of the 8 corner voxel centres, as a sorted array (order-independent)."""
    size = image.GetSize()
    pts = [image.TransformIndexToPhysicalPoint((i, j, k))
           for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    return np.array(sorted(np.round(pts, 3).tolist()))


def assert_same_volume(ours, theirs, tol_mm=0.01, atol=0.0):
    """Same voxel grid in space (any axis order/flip) and the same values at each physical voxel."""
    assert sorted(ours.GetSize()) == sorted(theirs.GetSize())
    assert np.allclose(corners(ours), corners(theirs), atol=tol_mm)
    resampled = sitk.Resample(sitk.Cast(theirs, sitk.sitkFloat64), ours, sitk.Transform(), sitk.sitkNearestNeighbor, -1e9)
    a = sitk.GetArrayFromImage(ours).astype(np.float64)
    b = sitk.GetArrayFromImage(resampled)
    assert np.allclose(a, b, atol=atol), f"max voxel difference {np.abs(a - b).max()}"


def sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def slicer_read(files):
    """Volume read by Slicer's archetype storage node: (IJKToRAS 4x4, [k, j, i] array).

    Like Slicer's DICOM plugin, the node is given the file list of the series (in slice order;
    we pass it reversed, which the reader sorts back itself)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    files = [str(f) for f in files][::-1]
    storage.SetFileName(files[0])
    storage.ResetFileNameList()
    for name in files:
        storage.AddFileName(name)
    storage.SetSingleFile(int(len(files) == 1))
    assert storage.ReadData(node) == 1
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    data = node.GetImageData()
    dims = data.GetDimensions()
    array = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(dims[::-1])
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]), array


def slicer_as_image(files):
    """Slicer's reading as a SimpleITK image (IJKToRAS -> LPS geometry) for ``assert_same_volume``."""
    m, array = slicer_read(files)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ m
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return image


def dcm2niix_read(folder, tmp_path):
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix is not installed (Debian package dcm2niix)")
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run([exe, "-z", "n", "-b", "n", "-o", str(out), "-f", "vol", str(folder)],
                   check=True, capture_output=True)
    return sitk.ReadImage(str(sorted(out.glob("*.nii"))[0]))


@pytest.fixture(scope="module")
def written_series(tmp_path_factory):
    """An oblique, anisotropic image written with shuffled file names (one series in its own folder)."""
    from conftest import oblique_direction

    rng = np.random.default_rng(5)
    array = np.round(rng.normal(200.0, 60.0, size=(9, 18, 22))).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 1.3, 2.7))
    image.SetOrigin((-31.5, 12.25, 40.0))
    image.SetDirection(oblique_direction().ravel().tolist())
    folder = tmp_path_factory.mktemp("oblique")
    files = write_series(image, folder, modality="MR", shuffle_names=True, seed=11)
    return image, folder, files


def test_written_oblique_shuffled_series_loads_in_order(written_series):
    image, folder, files = written_series
    assert [p.name for p in sorted(files)] != [p.name for p in files]   # names really are shuffled
    volume = scan_folder(folder).volumes()[0]
    assert volume.files == files                                         # sorted back along the normal
    ours = volume.load()
    assert np.allclose(ours.GetOrigin(), image.GetOrigin(), atol=0.01)
    assert np.allclose(ours.GetSpacing(), image.GetSpacing(), atol=1e-6)
    assert np.allclose(ours.GetDirection(), image.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(image))


def test_written_series_matches_simpleitk_slicer_and_dcm2niix(written_series, tmp_path):
    image, folder, files = written_series
    ours, warnings = load_volume(files)
    assert warnings == []
    assert_same_volume(ours, sitk_series(folder))
    m, array = slicer_read(files)
    assert np.allclose(m, ijk_to_ras_matrix(ours), atol=1e-4)
    assert np.array_equal(array, sitk.GetArrayFromImage(ours))
    assert_same_volume(ours, dcm2niix_read(folder, tmp_path), atol=1e-3)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "693_UNCR.dcm", "693_J2KR.dcm",
                                  "MR-SIEMENS-DICOM-WithOverlays.dcm", "eCT_Supplemental.dcm"])
def test_real_files_match_simpleitk_and_slicer(name):
    path = data_file(name)
    ours, _ = load_volume([path])
    theirs = sitk.ReadImage(str(path))
    assert_same_volume(ours, theirs)
    assert_same_volume(ours, slicer_as_image([path]))


def test_real_ct_matches_dcm2niix(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    shutil.copy(data_file("693_UNCR.dcm"), folder)
    ours, _ = load_volume([folder / "693_UNCR.dcm"])
    theirs = dcm2niix_read(folder, tmp_path)
    assert np.allclose(ours.GetSpacing()[:2], theirs.GetSpacing()[:2], atol=1e-5)
    # dcm2niix keeps one slice; compare the in-plane grid and values on that slice
    resampled = sitk.Resample(sitk.Cast(theirs, sitk.sitkFloat64), ours, sitk.Transform(), sitk.sitkNearestNeighbor, -1e9)
    assert np.allclose(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(ours))


def test_enhanced_ct_geometry_from_functional_groups():
    ours, warnings = load_volume([data_file("eCT_Supplemental.dcm")])
    assert warnings == []
    assert ours.GetSize() == (512, 512, 2)
    assert np.allclose(ours.GetSpacing(), (0.388672, 0.388672, 10.0))
    # frames sit at z = -159 and -149 mm; the normal of IOP (-1,0,0 / 0,1,0) points to -z
    assert np.allclose(ours.GetOrigin(), (99.5, -301.5, -149.0))
    assert np.allclose(np.array(ours.GetDirection()).reshape(3, 3)[:, 2], (0, 0, -1))
    assert float(sitk.GetArrayFromImage(ours).min()) >= -1024.0   # intercept -1024 from the shared group
