"""AnomalyCT chest X-ray sample path: lung fields, the lung frame (similarity) and its grid in physical space."""
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from scipy import ndimage

from slicercad.anomaly import cxr
from slicercad.dicom.volume import load_volume
from slicercad.errors import InputError
from slicercad.synth import anomaly_cxr


def test_pinned_definitions():
    assert cxr.CXR_SIZE == (116, 128) and all(s % 4 == 0 for s in cxr.CXR_SIZE)
    assert cxr.GRID_HALF_WIDTH == 1.1 and cxr.GRID_V_RANGE == (-0.7, 1.3)
    assert (cxr.LUNG_LEVEL, cxr.SOFT_LEVEL) == (0.3, 0.7) and cxr.CXR_CENTRAL == 0.1
    assert cxr.LUNG_FRACTION_RANGE == (0.08, 0.6) and cxr.MIN_LUNG_FRACTION == 0.02
    assert cxr.MAX_ROTATION_DEG == 25.0 and cxr.WORK_PX == 256 and cxr.OPENING_RADII_PX == (0, 2, 3, 4, 6)
    assert (cxr.EDGE_UNIFORM, cxr.EDGE_MAX_FRACTION, cxr.FILM_EDGE_PX) == (0.03, 0.15, 2)
    s = cxr.cxr_sample(anomaly_cxr.normal_cxr(1).image)
    su, sv = s.grid.GetSpacing()
    d = s.info["lung_distance_mm"]
    assert su == pytest.approx(2 * 1.1 * d / 128) and sv == pytest.approx(2.0 * d / 116)     # square pixels


def _rotated(img: sitk.Image, deg: float) -> sitk.Image:
    """The same radiograph turned in-plane by ``deg`` about its centre (content rotated, grid kept)."""
    t = sitk.Euler2DTransform()
    t.SetCenter(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()]))
    t.SetAngle(np.deg2rad(deg))
    return sitk.Resample(img, img, t, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def test_lung_frame_undoes_rotation_and_size():
    ph = anomaly_cxr.normal_cxr(5)
    base = cxr.cxr_sample(ph.image)
    turned = cxr.cxr_sample(_rotated(ph.image, 10.0))
    assert abs(turned.info["rotation_deg"] - base.info["rotation_deg"]) == pytest.approx(10.0, abs=1.5)
    both = base.mask & turned.mask
    r_aligned = np.corrcoef(base.x[0][both], turned.x[0][both])[0, 1]
    plain = [ndimage.zoom(sitk.GetArrayFromImage(i), 0.5, order=1) for i in (ph.image, _rotated(ph.image, 10.0))]
    r_plain = np.corrcoef(plain[0].ravel(), plain[1].ravel())[0, 1]      # control: the grid fixed to the image
    assert r_aligned > 0.95 and r_aligned > r_plain + 0.1
    big = sitk.Image(ph.image)
    big.SetSpacing([s * 1.2 for s in ph.image.GetSpacing()])            # a 20 % larger chest, same pixels
    s_big = cxr.cxr_sample(big)
    assert s_big.info["lung_distance_mm"] == pytest.approx(1.2 * base.info["lung_distance_mm"], rel=1e-6)
    assert np.allclose(s_big.x, base.x, atol=1e-4)                      # the grid scales with the chest


def test_phantom_rotation_recovered_across_cases():
    est, true = [], []
    for seed in range(6):
        ph = anomaly_cxr.normal_cxr(100 + seed, "rotated")
        est.append(cxr.cxr_sample(ph.image).info["rotation_deg"])
        true.append(ph.params["rotation_deg"])
    # the phantom turns its coordinates by +rot, which turns the picture by -rot (rows point down); its two lungs
    # differ in height (independent draws) and the heart notches one base, so the frame is ~1-3 deg off
    err = np.array(est) + np.array(true)
    assert np.max(np.abs(err)) < 3.5 and np.corrcoef(est, true)[0, 1] < -0.95


def test_grid_is_in_the_inputs_physical_space():
    """A lesion mask resampled onto the grid lands on the brighter pixels there; a map on the grid resampled back
    onto the input peaks at the lesion (the panel's overlay and the CLI's NRRD go that way)."""
    ph = anomaly_cxr.normal_cxr(7)
    img, les = anomaly_cxr.insert_anomaly(ph, "nodule", 28.0, 0.2, seed=2)
    s, base = cxr.cxr_sample(img), cxr.cxr_sample(ph.image)
    on_grid = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(les, sitk.sitkFloat32), s.grid, sitk.Transform(),
                                                   sitk.sitkLinear, 0.0, sitk.sitkFloat32)) >= 0.5
    assert on_grid.sum() > 20
    assert (s.x[0] - base.x[0])[on_grid].mean() > 0.05 > abs((s.x[0] - base.x[0])[~on_grid].mean())
    diff = sitk.GetImageFromArray((s.x[0] - base.x[0]).astype(np.float32))
    diff.CopyInformation(s.grid)
    back = sitk.GetArrayFromImage(sitk.Resample(diff, img, sitk.Transform(), sitk.sitkLinear, 0.0))
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert sitk.GetArrayFromImage(les)[peak] == 1


def test_real_radiograph_and_refusals():
    img, _ = load_volume([get_testdata_file("RG1_UNCI.dcm", download=False)])
    s = cxr.cxr_sample(img)
    assert abs(s.info["rotation_deg"]) < 5 and 0.15 < s.info["lung_fraction"] < 0.4
    ph = anomaly_cxr.normal_cxr(1)
    assert abs(cxr.cxr_sample(_rotated(ph.image, 20.0)).info["rotation_deg"]) < 25
    with pytest.raises(InputError, match=r"rotated -3\d deg \(at most 25"):
        cxr.cxr_sample(_rotated(ph.image, 30.0))
    ramp = 1.0 - np.abs(np.linspace(-1, 1, 128))[None].repeat(128, 0)        # dark sides, bright middle
    with pytest.raises(InputError, match="two lung fields"):                # dark, but open to the border
        cxr.cxr_sample(sitk.GetImageFromArray(ramp.astype(np.float32)))
    one = ph.values.copy()
    one[:, : one.shape[1] // 2] = np.where(ph.lungs[:, : one.shape[1] // 2], 0.62, one[:, : one.shape[1] // 2])
    with pytest.raises(InputError, match="two lung fields"):                # one lung field only
        cxr.cxr_sample(sitk.GetImageFromArray(one))


def test_lung_frame_reaches_the_csv():
    from slicercad.anomaly.cli import CSV_FIELDS, pose_fields

    s = cxr.cxr_sample(anomaly_cxr.normal_cxr(3).image)
    row = pose_fields(s.info)
    assert set(row) == {"rotation_deg", "lung_distance_mm", "kept_voxels"} <= set(CSV_FIELDS)
    assert row["lung_distance_mm"] == round(s.info["lung_distance_mm"], 1) and 120 < row["lung_distance_mm"] < 200


def _padded(ph, pad: int, ring: int, ring_value=1.0) -> sitk.Image:
    """The phantom with ``pad`` px of air around it and a uniform ``ring`` px band at the film's edge
    (collimation: unexposed, bright in MONOCHROME2)."""
    rng = np.random.default_rng(0)
    n = ph.values.shape[0] + 2 * pad + 2 * ring
    v = np.full((n, n), ring_value, np.float32)
    inner = 0.08 + rng.normal(0, 0.012, (n - 2 * ring, n - 2 * ring)).astype(np.float32)
    inner[pad:pad + ph.values.shape[0], pad:pad + ph.values.shape[1]] = ph.values
    v[ring:n - ring, ring:n - ring] = inner
    img = sitk.GetImageFromArray(v * 4095.0)
    img.SetSpacing(ph.image.GetSpacing())
    return img


@pytest.mark.parametrize("pad,ring", [(40, 6), (80, 6), (40, 0)])
def test_collimated_film_keeps_the_lung_frame(pad, ring):
    ph = anomaly_cxr.normal_cxr(12)
    base = cxr.cxr_sample(ph.image)
    s = cxr.cxr_sample(_padded(ph, pad, ring))
    assert s.info["lung_distance_mm"] == pytest.approx(base.info["lung_distance_mm"], rel=0.02)
    assert s.info["rotation_deg"] == pytest.approx(base.info["rotation_deg"], abs=1.0)
    r0, r1, c0, c1 = cxr.edge_bands(np.pad(np.random.default_rng(1).normal(size=(50, 50)), 3, constant_values=5.0))
    assert (r0, r1, c0, c1) == (3, 53, 3, 53)                                 # the uniform bands, no more


def test_outside_air_is_not_scored_and_clipped_pixels_are_kept():
    """Air around the patient (border-touching dark components) leaves the mask; a clipped bright marker inside
    the film is kept (inpainted from its surroundings, KEPT in the mask channel), not noise."""
    from slicercad.anomaly import preprocess as pp

    ph = anomaly_cxr.normal_cxr(13)
    s = cxr.cxr_sample(ph.image)
    film = np.isfinite(sitk.GetArrayFromImage(sitk.Resample(ph.image, s.grid, sitk.Transform(), sitk.sitkLinear,
                                                             np.nan, sitk.sitkFloat32)))
    edge = film & ~ndimage.binary_erosion(film, iterations=2)
    assert edge.any() and not (s.mask & edge).any()                          # the film's edge is not scored
    corner = np.zeros(s.mask.shape, bool)
    corner[:6, :6] = True                                                    # grid corner: air beside the shoulder
    assert not (s.mask & corner).any() and s.mask.mean() > 0.7
    v = ph.values.copy()
    v[100:108, 60:68] = 1.0                                                  # a lead marker over the lung, clipped
    img = sitk.GetImageFromArray(v * 4095.0)
    img.CopyInformation(ph.image)
    marked = cxr.cxr_sample(img)
    assert marked.kept is not None and marked.info["n_kept"] > 0 and not (marked.kept & marked.mask).any()
    assert marked.x[0][marked.kept].max() < 0.9                              # inpainted, not left at the clip
    assert np.all(marked.stacked()[-1][marked.kept] == pp.KEPT)


def test_anisotropic_pixels_and_a_turned_direction_give_the_same_sample():
    ph = anomaly_cxr.normal_cxr(14)
    base = cxr.cxr_sample(ph.image)
    aniso = sitk.Resample(ph.image, [256, 192], sitk.Transform(), sitk.sitkLinear, ph.image.GetOrigin(),
                          [1.4, 1.4 * 256 / 192], ph.image.GetDirection(), 0.0, sitk.sitkFloat32)
    a = cxr.cxr_sample(aniso)
    both = base.mask & a.mask
    assert np.corrcoef(base.x[0][both], a.x[0][both])[0, 1] > 0.97
    assert a.info["lung_distance_mm"] == pytest.approx(base.info["lung_distance_mm"], rel=0.02)
    turned = sitk.Image(ph.image)
    th = np.deg2rad(40.0)
    turned.SetDirection([np.cos(th), -np.sin(th), np.sin(th), np.cos(th)])   # same pixels, turned in space
    t = cxr.cxr_sample(turned)
    assert np.allclose(t.x, base.x, atol=1e-4) and t.info["rotation_deg"] == pytest.approx(
        base.info["rotation_deg"], abs=0.01)


def test_map_on_a_one_slice_volume_keeps_its_geometry():
    """The panel's radiograph is a one-slice volume: the map comes back on that volume's own origin and spacing."""
    from slicercad.anomaly.detector import load_detector

    ph = anomaly_cxr.normal_cxr(15)
    vol = sitk.JoinSeries([ph.image])
    vol.SetOrigin((10.0, -20.0, 55.0))
    vol.SetSpacing((1.4, 1.4, 3.0))
    r = load_detector(None, "cxr").score_image(vol[:, :, 0], "case")
    m = r.map_image(vol)
    assert m.GetSize() == vol.GetSize() and m.GetOrigin() == vol.GetOrigin() and m.GetSpacing() == vol.GetSpacing()
    flat = r.map_image(vol[:, :, 0])
    assert np.array_equal(sitk.GetArrayFromImage(m)[0], sitk.GetArrayFromImage(flat))


def test_a_film_outside_the_adult_lung_distance_is_scored_with_a_warning():
    from slicercad.anomaly.detector import load_detector

    assert cxr.ADULT_LUNG_DISTANCE_MM == (110.0, 230.0)
    det = load_detector(None, "cxr")
    assert det.card["input_spec"]["valid_ranges"]["lung_distance_mm"] == [110.0, 230.0]
    assert det.score_image(anomaly_cxr.normal_cxr(16).image).warnings == []
    img, _ = load_volume([get_testdata_file("RG1_UNCI.dcm", download=False)])   # PixelSpacing 0: D in pixels
    warned = det.score_image(img).warnings
    assert len(warned) == 1 and warned[0].startswith("lung_distance_mm 7") and "110-230" in warned[0]
