"""Spatial normalisation of the head CT sample path: pinned template and limits, a phantom's known size and
yaw recovered, the same head in another pose (pitch + roll) giving the same sample where centroid alignment
alone does not (the control; a head with distinct axes -- where two are near-equal the mask cannot tell the
rotation between them and it stays as acquired), and a shape the template cannot match refused."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.anomaly import normalise as nz
from slicercad.anomaly import preprocess as pp
from slicercad.errors import InputError
from slicercad.synth.anomaly_head import normal_head


def test_pinned_template_and_limits():
    assert nz.TEMPLATE_SEMI_AXES_MM == (68.0, 84.0, 62.0) and nz.REGISTRATION_SPACING_MM == 6.0
    assert nz.COARSE_SPACING_MM == 12.0 and nz.ITERATIONS == 150
    assert nz.SCALE_RANGE == (0.75, 1.35) and nz.MAX_ROTATION_DEG == 60.0 and nz.MIN_DICE == 0.80
    assert nz.FLIP_MM == 10.0


def test_the_template_itself_is_the_identity():
    m = sitk.Cast(nz.template(2.0, smooth=False) > 0.5, sitk.sitkUInt8)
    n = nz.normalising_transform(m, sitk.GetArrayFromImage(m).astype(bool))
    assert np.allclose(n["scale"], 1.0, atol=0.01) and n["rotation_deg"] < 0.5 and n["fit_dice"] > 0.97
    assert np.allclose(n["translation"], 0.0, atol=0.5)


def test_yaw_is_recovered_on_training_phantoms():
    from slicercad.anomaly.experiment import rotation_error_deg

    for seed in range(1000, 1006):
        ph = normal_head(seed)
        s = pp.head_ct_sample(ph.image)
        info = s.info
        assert rotation_error_deg(s.grid.GetDirection(), ph.params["rotation_deg"]) < 2.0
        assert rotation_error_deg(s.grid.GetDirection(), -ph.params["rotation_deg"]) > 2.0    # the sign counts
        assert info["fit_dice"] > 0.95 and not info["upside_down_checked"]    # a phantom has no face or neck


@pytest.mark.parametrize("seed,variant", [(3, "large"), (4, "asymmetric")])
def test_phantom_size_and_yaw_are_recovered(seed, variant):
    ph = normal_head(seed, variant)
    s = pp.head_ct_sample(ph.image)
    assert np.allclose(s.info["scale_xyz"], ph.params["scale"], rtol=0.03)
    assert s.info["rotation_deg"] == pytest.approx(abs(ph.params["rotation_deg"]), abs=4.0)
    assert np.allclose(s.grid.GetSpacing(), pp.HEAD_SPACING_MM * np.asarray(s.info["scale_xyz"]))


def _posed(image, pitch_deg, roll_deg, shift):
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()])
    tr = sitk.Euler3DTransform(centre, np.deg2rad(pitch_deg), np.deg2rad(roll_deg), 0.0, shift)
    return sitk.Resample(image, image, tr, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)


def _centroid_only(mask_img, icm, source="image"):
    """The former alignment: axis-aligned, unscaled, centred on the mask centroid (the control)."""
    centre = mask_img.TransformContinuousIndexToPhysicalPoint([float(v) for v in np.argwhere(icm).mean(0)[::-1]])
    return {"translation": np.asarray(centre), "rotation": np.eye(3), "scale": np.ones(3), "rotation_deg": 0.0,
            "fit_dice": 1.0}


def _dice(head, posed):
    """Dice of the two samples' masks on the model grid, and the mean |brain-window difference| in both."""
    a, b = pp.head_ct_sample(head), pp.head_ct_sample(posed)
    both = a.mask & b.mask
    return 2 * both.sum() / (a.mask.sum() + b.mask.sum()), np.abs(a.x[0] - b.x[0])[both].mean()


def test_another_pose_gives_the_same_sample_and_centroid_alignment_does_not(monkeypatch):
    ph = normal_head(9)                       # distinct axes: the mask alone decides its pose (module doc)
    axes = np.asarray(nz.TEMPLATE_SEMI_AXES_MM) * ph.params["scale"]
    assert axes[1] / axes[0] > 1.2 and axes[0] / axes[2] > 1.1
    posed = _posed(ph.image, 14.0, -10.0, (3.0, -4.0, 2.0))
    dice, err = _dice(ph.image, posed)
    monkeypatch.setattr(pp, "normalising_transform", _centroid_only)
    control_dice, control_err = _dice(ph.image, posed)
    assert dice > 0.97 and control_dice < dice - 0.03 and err < control_err


def test_a_shape_the_template_cannot_match_is_refused():
    img = sitk.Image([60, 60, 60], sitk.sitkUInt8)
    img.SetSpacing([4.0, 4.0, 4.0])
    k, j, i = np.indices((60, 60, 60))
    rod = ((i - 30) / 10.0) ** 2 + ((j - 30) / 10.0) ** 2 + ((k - 30) / 28.0) ** 2 <= 1   # 80 x 80 x 224 mm
    m = sitk.GetImageFromArray(rod.astype(np.uint8))
    m.CopyInformation(img)
    with pytest.raises(InputError, match="did not match the template"):
        nz.normalising_transform(m, rod)


def test_a_head_cut_by_the_field_of_view_is_reported():
    ph = normal_head(5)
    whole = pp.head_ct_sample(ph.image).info
    cut = pp.head_ct_sample(ph.image[:, :, :52]).info                       # top ~30 mm of the head removed
    assert whole["truncated_mm2"] == 0 and cut["truncated_mm2"] > 2000
