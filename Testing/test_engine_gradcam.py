"""Grad-CAM: exact CAM formula, Captum's LayerGradCam, localisation on two-object images, patient grid.

Tolerance for the reference comparisons: maps scaled to [0, 1] agree within 1e-5 (float32).
"""
import copy

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from scipy.ndimage import distance_transform_edt

from slicercad.engine.gradcam import cam_to_patient_grid, grad_cam
from slicercad.errors import GeometryError, InputError, ModelError

TOL = 1e-5
torch.set_num_threads(1)


def _gap_net(dims, n_classes=3, seed=0):
    """conv → ReLU → pool → conv → ReLU → global average pool → linear; CAM target is layer '4'."""
    torch.manual_seed(seed)
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.MaxPool3d)
    return nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), pool(2), conv(4, 6, 3, padding=1), nn.ReLU(),
                         (nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d)(1), nn.Flatten(),
                         nn.Linear(6, n_classes))


def _scaled(maps):
    flat = maps.reshape(maps.shape[0], -1)
    return (flat / flat.max(dim=1, keepdim=True).values.clamp_min(1e-30)).reshape(maps.shape[0], *maps.shape[2:])


def _exact_cam(model, x, c):
    """CAM of a GAP → linear head: ReLU(Σ_k w_ck A_k), upsampled (bi/trilinear) and scaled."""
    with torch.no_grad():
        acts = model[:5](x)
        cam = F.relu(torch.einsum("k,bk...->b...", model[7].weight[c], acts))[:, None]
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        return _scaled(F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)).numpy()


@pytest.mark.parametrize("shape", [(3, 1, 16, 20), (2, 1, 8, 12, 10)])
def test_matches_exact_cam_formula(shape):
    model = _gap_net(len(shape) - 2)
    x = torch.rand(shape)
    for c in range(3):
        cam = grad_cam(model, x, "4", c)
        assert cam.shape == (shape[0], *shape[2:]) and cam.dtype == np.float32
        assert cam.min() >= 0 and cam.max() <= 1
        np.testing.assert_allclose(cam, _exact_cam(model, x, c), atol=TOL)


@pytest.mark.parametrize("shape,layer", [((2, 1, 24, 24), "3"), ((2, 1, 8, 16, 16), "1")])
def test_matches_captum_layer_gradcam(shape, layer):
    model = _gap_net(len(shape) - 2, seed=1).eval()
    x = torch.rand(shape)
    mode = "bilinear" if len(shape) == 4 else "trilinear"
    for c in range(3):
        attr = LayerGradCam(model, model[int(layer)]).attribute(x, target=c, relu_attributions=True)
        reference = _scaled(LayerAttribution.interpolate(attr.detach(), shape[2:], interpolate_mode=mode)).numpy()
        np.testing.assert_allclose(grad_cam(model, x, layer, c), reference, atol=TOL)


def test_default_class_is_prediction_and_model_left_unchanged():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1),
                          nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    for p in model.parameters():
        p.requires_grad_(False)  # frozen inference weights
    model.train()
    x = torch.rand(6, 1, 12, 12)
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1).tolist()
    model.train()
    auto = grad_cam(model, x, "2", None)
    for i, c in enumerate(predicted):
        np.testing.assert_allclose(auto[i], grad_cam(model, x[i:i + 1], "2", c)[0], atol=TOL)
    assert model.training and model[1].inplace and model[3].inplace
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_bad_arguments_are_typed_errors():
    model = _gap_net(2)
    with pytest.raises(ModelError, match="no layer named 'head'"):
        grad_cam(model, torch.rand(1, 1, 8, 8), "head", 0)
    with pytest.raises(InputError, match="class index"):
        grad_cam(model, torch.rand(1, 1, 8, 8), "4", 3)
    with pytest.raises(InputError, match="batch, channels"):
        grad_cam(model, torch.rand(8, 8), "4", 0)
    with pytest.raises(InputError, match="NaN"):
        grad_cam(model, torch.full((1, 1, 8, 8), float("nan")), "4", 0)


# --- localisation: square = class 0, disc = class 1, equally bright, random positions -------------
SIZE = 32
_YY, _XX = np.mgrid[:SIZE, :SIZE]


def _objects(rng):
    while True:
        centres = rng.integers(6, SIZE - 6, size=(2, 2))
        if np.abs(centres[0] - centres[1]).max() >= 12:
            break
    (sy, sx), (dy, dx) = centres
    square = (np.abs(_YY - sy) <= 4) & (np.abs(_XX - sx) <= 4)  # 81 px
    disc = (_YY - dy) ** 2 + (_XX - dx) ** 2 <= 4.5 ** 2         # 69 px
    return square, disc


def _dataset(rng, n, both):
    """Images with a square and/or a disc (intensity 1) in noise; multi-label presence targets."""
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    y = np.zeros((n, 2), np.float32)
    masks = []
    for i in range(n):
        square, disc = _objects(rng)
        present = (1, 1) if both else tuple(rng.integers(0, 2, 2))
        x[i, 0] = rng.normal(0, 0.1, (SIZE, SIZE)) + present[0] * square + present[1] * disc
        y[i] = present
        masks.append((square, disc))
    return torch.from_numpy(x), torch.from_numpy(y), masks


def _cnn():
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(1, 8), *block(8, 8), nn.MaxPool2d(2), *block(8, 16), *block(16, 16),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))


def _hit_rate(model, x, masks):
    """Fraction of images where CAM(square)'s peak is nearer the square than the disc, and vice versa."""
    cams = [grad_cam(model, x, "12", c) for c in (0, 1)]
    hits = 0
    for i, (square, disc) in enumerate(masks):
        dist = [distance_transform_edt(~square), distance_transform_edt(~disc)]
        ok = True
        for c in (0, 1):
            peak = np.unravel_index(cams[c][i].argmax(), cams[c][i].shape)
            ok &= dist[c][peak] < dist[1 - c][peak]
        hits += ok
    return hits / len(masks)


def test_cam_localises_each_class_and_random_weights_do_not():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    x, y, _ = _dataset(rng, 768, both=False)
    x_test, _, masks = _dataset(rng, 100, both=True)
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        assert ((model(x_test) > 0).float() == 1).float().mean() > 0.95  # both objects recognised
    trained = _hit_rate(model, x_test, masks)
    assert trained >= 0.9
    random_rates = []
    for seed in range(4):  # the same test after re-initialising every weight
        torch.manual_seed(100 + seed)
        randomised = copy.deepcopy(model)
        for m in randomised.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        random_rates.append(_hit_rate(randomised.eval(), x_test, masks))
    assert np.mean(random_rates) < 0.5 and trained - max(random_rates) > 0.25


# --- patient grid ------------------------------------------------------------------------------
def _reference():
    ref = sitk.Image(40, 36, 20, sitk.sitkInt16)
    ref.SetSpacing((0.8, 0.8, 2.5))
    ref.SetOrigin((-20.0, 10.0, 35.0))
    ref.SetDirection(sitk.VersorTransform((0.1, 0.2, 1.0), 0.4).GetMatrix())
    return ref


def test_cam_lands_on_the_same_physical_point():
    ref = _reference()
    roi = sitk.RegionOfInterest(ref, (16, 12, 6), (10, 14, 8))  # size, index; keeps physical geometry
    roi = sitk.Resample(roi, [32, 32, 12], sitk.Transform(), sitk.sitkLinear, roi.GetOrigin(),
                        [s * n / m for s, n, m in zip(roi.GetSpacing(), roi.GetSize(), (32, 32, 12))],
                        roi.GetDirection())
    cam = np.zeros((12, 32, 32), np.float32)
    kji = (5, 20, 11)
    zz, yy, xx = np.mgrid[:12, :32, :32]
    cam[:] = np.exp(-((zz - kji[0]) ** 2 / 8 + (yy - kji[1]) ** 2 / 8 + (xx - kji[2]) ** 2 / 8))
    out = cam_to_patient_grid(cam, roi, ref)
    assert out.GetSize() == ref.GetSize() and out.GetOrigin() == ref.GetOrigin()
    assert out.GetDirection() == ref.GetDirection()
    arr = sitk.GetArrayFromImage(out)
    peak = np.unravel_index(arr.argmax(), arr.shape)
    expected = np.array(roi.TransformIndexToPhysicalPoint(tuple(int(v) for v in reversed(kji))))
    got = np.array(ref.TransformIndexToPhysicalPoint(tuple(int(v) for v in reversed(peak))))
    assert np.linalg.norm(got - expected) <= np.linalg.norm(ref.GetSpacing())  # within one voxel diagonal
    outside = np.ones(arr.shape, bool)
    outside[7:15, 13:27, 9:27] = False  # the ROI (z 8-13, y 14-25, x 10-25) plus one voxel
    assert arr[outside].max() < 1e-6 and arr.max() > 0.5


def test_2d_cam_from_one_slice_roi_and_shape_errors():
    ref = _reference()
    roi = sitk.RegionOfInterest(ref, (20, 20, 1), (5, 5, 7))
    cam2d = np.ones((20, 20), np.float32)
    arr = sitk.GetArrayFromImage(cam_to_patient_grid(cam2d, roi, ref))
    assert arr[7, 5:25, 5:25].min() > 0.99 and arr[[6, 8]].max() < 1e-6
    with pytest.raises(GeometryError, match="does not match"):
        cam_to_patient_grid(np.ones((20, 21)), roi, ref)
    with pytest.raises(GeometryError, match="2D"):
        cam_to_patient_grid(cam2d, sitk.Image(20, 20, sitk.sitkFloat32), ref)
