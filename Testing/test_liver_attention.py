"""Gaussian attention: sigma rule, alpha, and centring in patient space."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from slicercad.errors import InputError
from slicercad.liver.attention import (attend, attention_from_diameter, attention_from_mask, gaussian_map,
                                       sigma_from_diameter)
from slicercad.liver.roi import Lesion, RoiSpec, extract_rois, roi_to_patient
from test_liver_roi import P, blob_image, rotation


def test_sigma_grows_with_lesion_size_and_mask_matches_diameter():
    sigmas = [sigma_from_diameter(d, 1.0) for d in (3, 10, 25, 40)]
    assert all(a < b for a, b in zip(sigmas, sigmas[1:]))
    rr, cc = np.mgrid[0:64, 0:64]
    widths = []
    for radius in (4, 8, 16):
        mask = (rr - 31.5) ** 2 + (cc - 31.5) ** 2 <= radius ** 2
        widths.append((attention_from_mask(mask, 0.5) > 0.5).sum())
        ref = attention_from_diameter((64, 64), 2 * radius * 0.5, 0.5)
        assert np.abs(attention_from_mask(mask, 0.5) - ref).max() < 0.05
    assert widths[0] < widths[1] < widths[2]


def test_alpha_zero_is_hadamard_product_and_alpha_is_validated():
    rng = np.random.default_rng(0)
    stack = rng.random((8, 16, 16)).astype(np.float32)
    G = gaussian_map((16, 16), (7.5, 7.5), 3.0)
    assert np.allclose(attend(stack, G, 0.0), G[None] * stack)
    assert np.allclose(attend(stack, G, 1.0), (G[None] + 1.0) * stack)
    t = attend(torch.from_numpy(stack), G, 0.1)
    assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), G * stack + 0.1 * stack, atol=1e-6)
    for bad in (-0.1, 1.5, "x", None):
        with pytest.raises(InputError, match="alpha"):
            attend(stack, G, bad)
    with pytest.raises(InputError, match="shape"):
        attend(stack, G[:8], 0.1)


def test_gaussian_peak_is_at_fiducial_in_patient_space_on_oblique_anisotropic_grid():
    rot, spacing = rotation([1, -2, 4], 25), np.array([0.7, 1.3, 3.5])
    origin = P - rot @ (spacing * [30.2, 22.7, 6.6])  # fiducial between voxels in every axis
    img = blob_image(P, 5.0, (64, 48, 14), tuple(spacing), rot, tuple(origin))
    rois = extract_rois({"hepatobiliary": img}, Lesion("L", P, 10.0), spec=RoiSpec(size_px=48))
    geom = rois.geometries["hepatobiliary"]
    G = attention_from_diameter((48, 48), 10.0, rois.spacing_mm)
    peak_rc = np.unravel_index(np.argmax(G), G.shape)
    assert G[peak_rc] > 0.99
    # continuous peak from the map itself (weighted centroid of the top of the Gaussian)
    w = np.where(G > 0.5, G, 0.0)
    r, c = np.mgrid[0:48, 0:48]
    peak = ((w * c).sum() / w.sum(), (w * r).sum() / w.sum())
    peak_lps = np.array(geom.TransformContinuousIndexToPhysicalPoint((peak[0], peak[1], 0.0)))
    assert np.linalg.norm(peak_lps - P) < 0.5 * min(img.GetSpacing())
    # and after mapping back onto the patient grid: in-plane centroid of the slab within one voxel
    back = sitk.GetArrayFromImage(roi_to_patient(G, geom, img))
    kk, jj, ii = np.nonzero(back > 1e-3)
    pts = np.array([img.TransformIndexToPhysicalPoint((int(i), int(j), int(k))) for i, j, k in zip(ii, jj, kk)])
    wts = back[kk, jj, ii]
    normal = np.array(geom.GetDirection()).reshape(3, 3)[:, 2]
    d = (pts * wts[:, None]).sum(0) / wts.sum() - P
    in_plane = d - normal * (d @ normal)
    assert np.linalg.norm(in_plane) < 0.5 * min(img.GetSpacing())
