"""Sphere / ellipsoid labels from a centre and a diameter on anisotropic and oblique grids."""
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import oblique_direction
from slicercad.errors import GeometryError, InputError
from slicercad.geometry import lps_to_ras
from slicercad.weak import shapes
from slicercad.weak.shapes import axes_diameters, ellipsoid_label, equivalent_diameter, sphere_label


def _grid(size=(60, 50, 30), spacing=(0.7, 0.9, 2.5), oblique=True):
    img = sitk.Image(list(size), sitk.sitkUInt8)
    img.SetSpacing(spacing)
    img.SetOrigin((10.0, -5.0, 3.0))
    if oblique:
        img.SetDirection(oblique_direction().ravel().tolist())
    return img


def _volume(label):
    return float(sitk.GetArrayViewFromImage(label).sum()) * float(np.prod(label.GetSpacing()))


def _centroid(label):
    arr = sitk.GetArrayViewFromImage(label).astype(float)
    kji = np.argwhere(arr > 0)
    w = arr[arr > 0]
    return np.array(label.TransformContinuousIndexToPhysicalPoint((kji * w[:, None]).sum(0)[::-1] / w.sum()))


@pytest.mark.parametrize("oblique", [False, True])
@pytest.mark.parametrize("diameter", [6.0, 20.0])
def test_sphere_volume_and_centre_on_anisotropic_grids(oblique, diameter):
    grid = _grid(oblique=oblique)
    centre = np.array(grid.TransformContinuousIndexToPhysicalPoint((30.3, 24.6, 14.8)))
    label = sphere_label(grid, centre, diameter)
    expected = 4 / 3 * np.pi * (diameter / 2) ** 3
    # partial-volume fractions: within 1 %, centre within a tenth of a voxel
    pv = sphere_label(grid, centre, diameter, partial_volume=True)
    assert pv.GetPixelID() == sitk.sitkFloat32
    assert abs(_volume(pv) - expected) < 0.01 * expected
    # binary: each of the n boundary voxels (0 < fraction < 1) rounds by at most half a voxel, independently
    # (sd voxel / sqrt(12) each), so sqrt(n) voxels is ~3.5 sd -- 15 % of a 6 mm sphere on this grid, 1.3 % of a
    # 20 mm one; a diameter 7 % too small (-20 % volume) fails it (below)
    voxel = float(np.prod(grid.GetSpacing()))
    boundary = int(np.sum((sitk.GetArrayViewFromImage(pv) > 0) & (sitk.GetArrayViewFromImage(pv) < 1)))
    tol = np.sqrt(boundary) * voxel
    assert abs(_volume(label) - expected) < tol
    assert abs(_volume(sphere_label(grid, centre, 0.93 * diameter)) - expected) > tol   # the bound can fail
    assert np.linalg.norm(_centroid(label) - centre) < max(grid.GetSpacing())
    assert np.linalg.norm(_centroid(pv) - centre) < 0.1 * min(grid.GetSpacing())


def test_ras_centre_lands_on_the_same_voxels_as_lps():
    grid = _grid()
    centre = np.array(grid.TransformContinuousIndexToPhysicalPoint((20.0, 20.0, 10.0)))
    a = sitk.GetArrayFromImage(sphere_label(grid, centre, 10.0, "LPS"))
    b = sitk.GetArrayFromImage(sphere_label(grid, lps_to_ras(centre), 10.0, "RAS"))
    np.testing.assert_array_equal(a, b)
    kji = tuple(np.round(np.array(grid.TransformPhysicalPointToContinuousIndex(centre.tolist()))[::-1]).astype(int))
    assert a[kji] == 1


def test_oriented_ellipsoid_volume_and_extent():
    grid = _grid(size=(80, 80, 40), spacing=(0.6, 0.6, 1.5))
    centre = np.array(grid.TransformContinuousIndexToPhysicalPoint((40, 40, 20)))
    axes = oblique_direction((10, 30, -40))
    d = [24.0, 12.0, 8.0]
    pv = ellipsoid_label(grid, centre, d, axes=axes, partial_volume=True)
    expected = 4 / 3 * np.pi * np.prod(np.array(d) / 2)
    assert abs(_volume(pv) - expected) < 0.03 * expected
    arr = sitk.GetArrayFromImage(ellipsoid_label(grid, centre, d, axes=axes))
    pts = np.array([grid.TransformIndexToPhysicalPoint([int(v) for v in kji[::-1]]) for kji in np.argwhere(arr)])
    extent = (pts - centre) @ axes
    np.testing.assert_allclose(np.abs(extent).max(0), np.array(d) / 2, atol=1.0)


def test_circle_on_a_2d_image():
    img = sitk.Image([64, 64], sitk.sitkUInt8)
    img.SetSpacing((0.5, 0.8))
    c = img.TransformContinuousIndexToPhysicalPoint((32.0, 30.0))
    area = float(sitk.GetArrayFromImage(sphere_label(img, c, 12.0, partial_volume=True)).sum()) * 0.4
    assert abs(area - np.pi * 36) < 0.02 * np.pi * 36


def test_bad_input_is_named():
    grid = _grid()
    centre = np.array(grid.TransformContinuousIndexToPhysicalPoint((30, 25, 15)))
    with pytest.raises(InputError, match="diameter must be > 0"):
        sphere_label(grid, centre, 0.0)
    with pytest.raises(InputError, match="larger than the image"):
        sphere_label(grid, centre, 500.0)
    with pytest.raises(GeometryError, match="outside the image"):
        sphere_label(grid, centre + 1000.0, 10.0)
    with pytest.raises(InputError, match="orthogonal"):
        ellipsoid_label(grid, centre, [10, 8, 6], axes=np.ones((3, 3)))
    with pytest.raises(InputError, match="short axis"):
        axes_diameters(10, 12)


def test_report_axes_and_pinned_supersampling():
    assert axes_diameters(20, 10) == [20.0, 10.0, 10.0]
    assert axes_diameters(15) == [15.0, 15.0, 15.0]
    assert equivalent_diameter([20, 10, 10]) == pytest.approx((2000) ** (1 / 3))
    assert shapes.SUPERSAMPLE == 4
