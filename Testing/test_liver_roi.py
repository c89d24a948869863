"""ROI extraction on each phase's own grid: centring, offsets, padding, bad input."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.errors import InputError, PhaseError
from slicercad.geometry import lps_to_ras
from slicercad.liver.roi import Lesion, RoiSpec, extract_rois, mask_roi, roi_to_patient


def rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def blob_image(center_lps, radius_mm, size, spacing, direction, origin):
    """An image with a bright ball (value 100 on 10) at ``center_lps``."""
    img = sitk.Image(list(size), sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetDirection(tuple(np.asarray(direction).ravel()))
    img.SetOrigin(origin)
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    m = np.asarray(direction) * np.asarray(spacing)
    pts = np.asarray(origin) + np.stack([ii, jj, kk], -1) @ m.T
    dist = np.linalg.norm(pts - center_lps, axis=-1)
    arr = np.where(dist <= radius_mm, 100.0, 10.0).astype(np.float32)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


P = np.array([12.3, -40.7, 55.2])


@pytest.fixture(scope="module")
def phases():
    """Two phases with different oblique, anisotropic grids, both containing a ball at P."""
    a = blob_image(P, 6.0, (60, 50, 12), (0.8, 1.1, 4.0), rotation([1, 2, 3], 20), (-10.0, -70.0, 30.0))
    b = blob_image(P, 6.0, (40, 44, 10), (1.7, 1.3, 5.0), rotation([-2, 1, 1], 12), (-20.0, -75.0, 30.0))
    return {"hepatobiliary": a, "T2": b}


def centroid(arr):
    w = np.clip(arr - arr.min(), 0, None) ** 2
    r, c = np.mgrid[0:arr.shape[0], 0:arr.shape[1]]
    return np.array([(w * r).sum(), (w * c).sum()]) / w.sum()


def test_fiducial_lands_at_roi_centre_on_every_phase_and_ras_matches_lps(phases):
    spec = RoiSpec(size_px=32, fov_mm=40.0)
    rois = extract_rois(phases, Lesion("L1", P, 12.0), spec=spec)
    assert rois.array.shape == (2, 32, 32) and rois.phases == ("hepatobiliary", "T2")
    for k in range(2):
        assert np.allclose(centroid(rois.array[k]), rois.center_px, atol=0.6)
    ras = extract_rois(phases, Lesion("L1", lps_to_ras(P), 12.0, coordinate_system="RAS"), spec=spec)
    assert np.allclose(ras.array, rois.array)
    for p, geom in rois.geometries.items():
        c = geom.TransformContinuousIndexToPhysicalPoint((15.5, 15.5, 0.0))
        assert np.allclose(c, P, atol=1e-6)
    assert not rois.padded


def test_offset_moves_only_that_phase(phases):
    spec = RoiSpec(size_px=32, fov_mm=40.0)
    base = extract_rois(phases, Lesion("L1", P, 12.0), spec=spec)
    moved = extract_rois(phases, Lesion("L1", P, 12.0, offsets_mm={"T2": (5.0, 0.0, 0.0)}), spec=spec)
    assert np.allclose(base.array[0], moved.array[0])
    assert not np.allclose(base.array[1], moved.array[1])
    shift_px = centroid(base.array[1]) - centroid(moved.array[1])
    axes = np.array(moved.geometries["T2"].GetDirection()).reshape(3, 3)
    expected = np.array([axes[:, 1] @ [5, 0, 0], axes[:, 0] @ [5, 0, 0]]) / base.spacing_mm
    assert np.allclose(shift_px, expected, atol=0.6)


def test_default_fov_follows_diameter():
    spec = RoiSpec()
    assert spec.field_of_view(5.0) == 48.0 and spec.field_of_view(30.0) == 90.0


def test_roi_running_off_the_image_is_padded_and_flagged(phases):
    img = phases["hepatobiliary"]
    edge = img.TransformContinuousIndexToPhysicalPoint((1.0, 25.0, 6.0))
    rois = extract_rois({"hepatobiliary": img}, Lesion("L2", edge, 10.0), spec=RoiSpec(size_px=32, fov_mm=40.0))
    assert rois.padded and 0.2 < rois.outside_fraction["hepatobiliary"] < 0.8
    assert np.all(np.isfinite(rois.array))


@pytest.mark.parametrize("lesion,err,text", [
    (Lesion("far", P + 500.0, 10.0), InputError, "outside"),
    (Lesion("flat", P, 0.0), InputError, "diameter"),
    (Lesion("neg", P, -3.0), InputError, "diameter"),
])
def test_bad_lesions_raise_naming_the_lesion(phases, lesion, err, text):
    with pytest.raises(err, match=text) as info:
        extract_rois(phases, lesion)
    assert info.value.source.startswith(lesion.lesion_id)


def test_missing_required_phase_names_lesion(phases):
    with pytest.raises(PhaseError, match="arterial") as info:
        extract_rois(phases, Lesion("L3", P, 10.0), phases=["arterial", "hepatobiliary"])
    assert info.value.source == "L3"


def test_mask_and_map_round_trip_to_patient_grid(phases):
    img = phases["hepatobiliary"]
    rois = extract_rois({"hepatobiliary": img}, Lesion("L4", P, 12.0), spec=RoiSpec(size_px=32, fov_mm=40.0))
    mask_img = sitk.Cast(sitk.BinaryThreshold(img, 50.0, 1e9), sitk.sitkUInt8)
    m = mask_roi(mask_img, rois.geometries["hepatobiliary"])
    assert np.allclose(np.argwhere(m).mean(0), rois.center_px, atol=0.6)
    back = sitk.GetArrayFromImage(roi_to_patient(m.astype(float), rois.geometries["hepatobiliary"], img))
    orig = sitk.GetArrayFromImage(mask_img) > 0
    slab = back > 0.5
    assert slab.sum() > 0 and (slab & orig).sum() / slab.sum() > 0.85


def test_voxel_order_does_not_change_the_roi():
    """The same physical image stored LPS-ordered and RAS-ordered gives the same, equally oriented ROI."""
    a = blob_image(P + [3.0, 0.0, 0.0], 5.0, (40, 40, 8), (1.0, 1.0, 3.0), np.eye(3), (-10.0, -70.0, 45.0))
    arr = sitk.GetArrayFromImage(a)[:, ::-1, ::-1].copy()
    b = sitk.GetImageFromArray(arr)
    b.SetSpacing(a.GetSpacing())
    b.SetDirection(tuple(np.diag([-1.0, -1.0, 1.0]).ravel()))
    b.SetOrigin(a.TransformIndexToPhysicalPoint((39, 39, 0)))
    spec = RoiSpec(size_px=24, fov_mm=30.0)
    ra = extract_rois({"T2": a}, Lesion("L", P, 10.0), spec=spec)
    rb = extract_rois({"T2": b}, Lesion("L", P, 10.0), spec=spec)
    assert np.allclose(ra.array, rb.array, atol=1e-4)
    assert centroid(ra.array[0])[1] > ra.center_px[1] + 1   # the ball lies 3 mm to patient Left: columns run L
