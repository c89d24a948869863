"""The one sample path: canonical crop, normalisation, augmentation, clicks, and back to the image grid."""
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import oblique_direction
from slicercad.errors import GeometryError, InputError
from slicercad.weak import crop as C
from slicercad.weak.shapes import sphere_label


def test_method_constants_are_pinned():
    assert (C.CROP_PX, C.FOV_FACTOR, C.PERCENTILES, C.CLICK_SIGMA_PX) == (32, 2.5, (0.5, 99.5), 1.5)
    assert (C.INVERT_PROBABILITY, C.GAMMA_RANGE) == (0.5, (0.7, 1.5))
    assert C.CHANNELS == ("image", "positive_clicks", "negative_clicks")


def _scene(oblique=True):
    img = sitk.Image([70, 60, 24], sitk.sitkFloat32)
    img.SetSpacing((0.8, 0.8, 3.0))
    img.SetOrigin((-20.0, 4.0, 11.0))
    if oblique:
        img.SetDirection(oblique_direction().ravel().tolist())
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint((34.2, 29.7, 11.4)))
    lesion = sphere_label(img, centre, 16.0, partial_volume=True)
    arr = 100 + 300 * sitk.GetArrayFromImage(lesion)
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(img)
    return out, centre


def test_crop_scales_with_the_lesion_and_is_centred():
    image, centre = _scene()
    crop = C.canonical_crop(image, centre, 16.0)
    assert crop.x.shape == (3, 32, 32, 32) and crop.x.dtype == np.float32
    assert crop.grid.GetSpacing() == pytest.approx([2.5 * 16 / 32] * 3)
    mid = np.array(crop.grid.TransformContinuousIndexToPhysicalPoint([15.5] * 3))
    np.testing.assert_allclose(mid, centre, atol=1e-6)
    assert crop.x[0].min() >= -1 and crop.x[0].max() <= 1
    # the bright lesion spans 32 / 2.5 = 12.8 crop voxels across whatever the scan's spacing
    bright = crop.x01 > 0.5
    assert abs(bright.sum() - 4 / 3 * np.pi * 6.4 ** 3) < 0.15 * 4 / 3 * np.pi * 6.4 ** 3
    big = C.canonical_crop(image, centre, 32.0)
    assert (big.x01 > 0.5).sum() < bright.sum() / 4


def test_crop_to_image_round_trip_on_an_oblique_grid():
    image, centre = _scene()
    crop = C.canonical_crop(image, centre, 16.0)
    back = C.crop_to_image(crop.x01, crop.grid, image) > 0.5
    truth = sitk.GetArrayFromImage(image) > 250
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert dice > 0.9


def test_augmentation_inverts_and_gammas():
    x = np.linspace(0, 1, 1000, dtype=np.float32)
    inverted = [C.augment_intensity(x, np.random.default_rng(s))[-1] < 0.5 for s in range(400)]
    assert 0.4 < np.mean(inverted) < 0.6
    never = [C.augment_intensity(x, np.random.default_rng(s), invert=False)[-1] for s in range(50)]
    assert min(never) == pytest.approx(1.0)
    mids = [C.augment_intensity(x, np.random.default_rng(s), invert=False)[500] for s in range(200)]
    assert 0.5 ** 1.5 - 1e-3 <= min(mids) and max(mids) <= 0.5 ** 0.7 + 1e-3 and np.ptp(mids) > 0.1


def test_click_channel_peaks_at_the_click():
    image, centre = _scene()
    click = centre + np.array([3.0, -2.0, 1.0])
    crop = C.canonical_crop(image, centre, 16.0, positive_lps=[click])
    k, j, i = np.unravel_index(np.argmax(crop.x[1]), crop.x[1].shape)
    peak = np.array(crop.grid.TransformIndexToPhysicalPoint([int(i), int(j), int(k)]))
    assert np.linalg.norm(peak - click) <= crop.grid.GetSpacing()[0]
    assert crop.x[2].max() == 0.0


def test_bad_crops_are_refused():
    image, centre = _scene()
    with pytest.raises(InputError, match="diameter"):
        C.canonical_crop(image, centre, -1.0)
    with pytest.raises(GeometryError, match="outside"):
        C.canonical_crop(image, centre + 500, 10.0)
    with pytest.raises(InputError, match="multiple of 4"):
        C.CropSpec(30)
