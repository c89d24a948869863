"""AnomalyCT sample path: pinned windows / grid / thresholds, the HU check, the intracranial mask reaching the
inner table (real head CT slice and phantom subdural blood), the chest X-ray path with the real MONOCHROME1 CR,
SYNTHETIC phantoms with their anomalies, and bad input refused with a message naming the problem."""
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from scipy import ndimage

from slicercad.anomaly import baselines
from slicercad.anomaly import cxr
from slicercad.anomaly import preprocess as pp
from slicercad.dicom.volume import load_volume
from slicercad.errors import InputError
from slicercad.synth import anomaly_cxr, anomaly_head


def test_pinned_definitions():
    assert pp.BRAIN_WINDOW == (40.0, 80.0) and pp.SUBDURAL_WINDOW == (80.0, 200.0)
    assert pp.window(np.array([0.0, 40.0, 80.0, 100.0, -5.0]), *pp.BRAIN_WINDOW).tolist() == [0, 0.5, 1, 1, 0]
    assert pp.window(np.array([-20.0, 80.0, 180.0]), *pp.SUBDURAL_WINDOW).tolist() == [0, 0.5, 1]
    assert pp.HEAD_GRID_SIZE == (36, 44, 32) and pp.HEAD_SPACING_MM == 5.0
    assert pp.BONE_HU == 200.0 and pp.NEUTRAL_HU == 30.0 and pp.ICV_RANGE_ML == (500.0, 2600.0)
    assert baselines.hyperdense_level() == pytest.approx(62.0 / 80.0)


@pytest.fixture(scope="module")
def head():
    return anomaly_head.normal_head(3)


def test_head_sample_grid_and_mask(head):
    s = pp.head_ct_sample(head.image)
    assert s.x.shape == (2, 32, 44, 36) and s.mask.shape == (32, 44, 36)
    assert np.allclose(s.grid.GetSpacing(), 5.0 * np.asarray(s.info["scale_xyz"]))    # the canonical head's grid
    assert 0.0 <= s.x.min() and s.x.max() <= 1.0
    assert 900 < s.info["icv_ml"] < 2200
    assert s.stacked().shape == (3, 32, 44, 36)


def test_subdural_blood_stays_inside_the_mask(head):
    img, m = anomaly_head.insert_anomaly(head, "sdh", 7.0, 25.0, seed=1)
    s = pp.head_ct_sample(img)
    lesion = pp.resample_to_grid(m, s.grid, True)
    assert lesion.sum() > 20
    assert (lesion & s.mask).sum() / lesion.sum() > 0.9          # a tight brain strip would drop it
    before = pp.head_ct_sample(head.image)
    assert s.x[0][lesion].mean() > before.x[0][lesion].mean() + 0.15


def test_anomalies_change_the_image_where_their_mask_is(head):
    hu0 = sitk.GetArrayFromImage(head.image)
    for kind, size, contrast, sign in (("ich", 14.0, 25.0, 1), ("infarct", 25.0, 8.0, -1)):
        img, m = anomaly_head.insert_anomaly(head, kind, size, contrast, seed=2)
        les = sitk.GetArrayFromImage(m) > 0
        diff = sitk.GetArrayFromImage(img) - hu0
        assert les.sum() > 10 and sign * diff[les].mean() > contrast * 0.6
        assert np.abs(diff[~ndimage.binary_dilation(les, iterations=2)]).max() == 0
    with pytest.raises(InputError, match="unknown anomaly"):
        anomaly_head.insert_anomaly(head, "tumour", 10, 10, 0)


def test_real_head_ct_slice_hu_and_inner_table():
    img, _ = load_volume([get_testdata_file("693_UNCR.dcm", download=False)])
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    pp.check_hu(hu)
    mask = pp.intracranial_mask(hu, img.GetSpacing()[::-1])[0]
    area_cm2 = mask.sum() * np.prod(img.GetSpacing()[:2]) / 100
    assert 50 < area_cm2 < 250
    bone = hu[0] >= pp.BONE_HU
    edge = mask & ~ndimage.binary_erosion(mask)
    touching = edge & ndimage.binary_dilation(bone, iterations=2)
    assert touching.sum() / edge.sum() > 0.8                     # the mask reaches the inner table
    with pytest.raises(InputError, match="at least 8 slices"):
        pp.head_ct_sample(img)


def test_non_ct_and_out_of_range_inputs_refused(head):
    mr = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 1000, (20, 30, 30)).astype(np.float32))
    with pytest.raises(InputError, match="Hounsfield"):
        pp.head_ct_sample(mr)
    coarse = sitk.Image(head.image)
    coarse.SetSpacing((2.5, 2.5, 12.0))
    with pytest.raises(InputError, match="coarser"):
        pp.head_ct_sample(coarse)
    small = sitk.Image(head.image)
    small.SetSpacing((1.2, 1.2, 1.2))                             # a head half the size: ICV far too small
    with pytest.raises(InputError, match="intracranial volume"):
        pp.head_ct_sample(small)


def test_real_monochrome1_chest_radiograph():
    img, _ = load_volume([get_testdata_file("RG1_UNCI.dcm", download=False)])
    s = cxr.cxr_sample(img)
    assert s.x.shape == (1, *cxr.CXR_SIZE)
    assert abs(s.info["rotation_deg"]) < 5                       # a well-positioned frontal film
    assert s.info["lung_median"] < s.info["soft_median"]          # MONOCHROME1 inverted: lungs dark
    assert s.mask.mean() > 0.8
    with pytest.raises(InputError, match="one 2D image"):
        cxr.cxr_sample(sitk.Image([64, 64, 3], sitk.sitkFloat32))


def test_cxr_phantom_and_anomalies():
    ph = anomaly_cxr.normal_cxr(1)
    base = cxr.cxr_sample(ph.image)
    for kind in anomaly_cxr.ANOMALY_TYPES:
        size = anomaly_cxr.SWEEP[kind]["size_mm"][1]
        contrast = anomaly_cxr.SWEEP[kind]["contrast"][2]
        img, m = anomaly_cxr.insert_anomaly(ph, kind, size, contrast, seed=3)
        s = cxr.cxr_sample(img)
        les = pp.resample_to_grid(m, s.grid, True)
        assert les.sum() > 0
        delta = s.x[0][les].mean() - base.x[0][les].mean()
        assert (delta < 0) if kind == "pneumothorax" else (delta > 0), kind
    flat = sitk.GetImageFromArray(np.full((80, 80), 5.0, np.float32))
    with pytest.raises(InputError, match="constant"):
        cxr.cxr_sample(flat)


def test_adult_population_has_atrophy_and_calcification_at_stated_rates():
    assert anomaly_head.AGE_RANGE == (18.0, 90.0)
    pops = [anomaly_head.population(s) for s in range(400)]
    ages, atrophy = np.array([p["age"] for p in pops]), np.array([p["atrophy"] for p in pops])
    assert (atrophy[ages <= 55] == 0).all() and (atrophy[ages > 70] > 0.2).all() and atrophy.max() <= 1.0
    pineal = np.array(["pineal" in p["calcifications"] for p in pops])
    old = ages > 78
    assert pineal[old].mean() == pytest.approx(0.65, abs=0.15) and pineal[ages < 30].mean() < 0.35
    rv = [rv for p in pops for rv in p["calcifications"].values()]
    assert all(1.5 <= r <= 3.0 and 90 <= v <= 200 for r, v in rv)
    assert (anomaly_head.ATROPHY_TAIL_AGE, anomaly_head.ATROPHY_TAIL_DRAW) == ((82.0, 90.0), 0.92)
    tails = [anomaly_head.population(s, "atrophy") for s in range(40)]
    a_tail = np.array([p["atrophy"] for p in tails])
    assert all(82 <= p["age"] <= 90 for p in tails) and 0.7 < a_tail.min() and a_tail.max() <= 1.0
    big = np.array([anomaly_head.population(s)["atrophy"] for s in range(4000)])
    assert 0.03 < (big >= a_tail.min()).mean() < 0.08       # the variant is the population's top ~5 %, not beyond it
    tail_old = np.array([len(p["calcifications"]) for p in tails]).mean()
    assert tail_old > np.array([len(p["calcifications"]) for p in pops]).mean() + 0.3   # calcified as old heads are
    tail = tails[5], anomaly_head.population(5, "calcification")
    assert len(tail[1]["calcifications"]) == 3
    assert all(v >= 150 for _, v in tail[1]["calcifications"].values())


def _full_smoothing(image, icm, out_sp):
    """The former area average: the whole volume, no block means (the reference)."""
    hu = sitk.GetArrayFromImage(image)
    work = sitk.GetImageFromArray(np.where(icm, hu, np.float32(pp.NEUTRAL_HU)).astype(np.float32))
    work.CopyInformation(image)
    sigma = [max(0.0, (out_sp / 2) ** 2 - (s / 2) ** 2) ** 0.5 for s in image.GetSpacing()]
    return sitk.SmoothingRecursiveGaussian(work, sigma)


def test_area_average_on_the_mask_box_equals_the_whole_volume_and_block_means_stay_close(head):
    ref = sitk.Image([36, 44, 32], sitk.sitkUInt8)
    ref.SetSpacing([5.0] * 3)
    ref.SetOrigin([-87.5, -107.5, -77.5])
    hu = sitk.GetArrayFromImage(head.image)
    icm = pp.intracranial_mask(hu, head.image.GetSpacing()[::-1])
    on_grid = lambda img: sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear,  # noqa
                                                               pp.NEUTRAL_HU, sitk.sitkFloat32))
    cropped = on_grid(pp._area_averaged(head.image, hu, icm, 5.0))
    assert np.abs(cropped - on_grid(_full_smoothing(head.image, icm, 5.0))).max() < 1e-3    # 2.5 mm: no blocks
    fine = sitk.Resample(head.image, [144, 176, 64], sitk.Transform(), sitk.sitkLinear, head.image.GetOrigin(),
                         (1.25, 1.25, 2.5), head.image.GetDirection(), -1000.0, sitk.sitkFloat32)
    hu_f = sitk.GetArrayFromImage(fine)
    icm_f = pp.intracranial_mask(hu_f, fine.GetSpacing()[::-1])
    blocks = pp._area_averaged(fine, hu_f, icm_f, 5.0)
    assert blocks.GetSpacing() == (2.5, 2.5, 2.5)                                   # 2 x 2 x 1 block means
    diff = np.abs(on_grid(blocks) - on_grid(_full_smoothing(fine, icm_f, 5.0)))
    assert np.median(diff) < 0.5 and np.percentile(diff, 99) < 3.0                  # HU


def test_a_5_mm_axial_head_ct_gives_the_sample_of_the_fine_one(head):
    sp = (1.25, 1.25, 5.0)
    size = [int(round(n * 2.5 / s)) for n, s in zip(head.image.GetSize(), sp)]
    thick = sitk.Resample(head.image, size, sitk.Transform(), sitk.sitkLinear, head.image.GetOrigin(), sp,
                          head.image.GetDirection(), -1000.0, sitk.sitkFloat32)
    a, b = pp.head_ct_sample(head.image), pp.head_ct_sample(thick)           # z needs no smoothing at 5 mm
    both = a.mask & b.mask
    assert both.sum() > 0.9 * a.mask.sum() and np.abs(a.x[0] - b.x[0])[both].mean() < 0.05


def test_ventricle_asymmetry_variant_doubles_one_lateral_ventricle():
    assert anomaly_head.VENTRICLE_ASYMMETRY_VOLUME == 2.0
    plain, grown = anomaly_head.normal_head(21), anomaly_head.normal_head(21, "ventricle_asymmetry")
    changed = np.abs(sitk.GetArrayFromImage(grown.image) - sitk.GetArrayFromImage(plain.image)) > 1.0
    vs = plain.params["ventricle_scale"]
    one_ventricle_mm3 = 4 / 3 * np.pi * 7 * 28 * 9 * vs ** 3        # the phantom's lateral ventricle ellipsoid
    added = changed.sum() * anomaly_head.PHANTOM_SPACING_MM ** 3
    assert added / one_ventricle_mm3 == pytest.approx(1.0, abs=0.25)   # x2 in volume: one more ventricle's worth
