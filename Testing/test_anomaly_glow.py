"""AnomalyCT Glow (2D and 3D): invertibility, log-det against a brute-force Jacobian, the exact per-voxel
decomposition of log p, and the pinned score definitions (quantisation, dequantisation, bits/dim, background
kept out of the likelihood, complexity variant)."""
import math

import numpy as np
import pytest
import torch

from slicercad.anomaly import scoring
from slicercad.anomaly.glow import Glow, squeeze, unsqueeze
from slicercad.errors import InputError


def _glow(dims, levels, shape, seed=0):
    torch.manual_seed(seed)
    g = Glow(1, dims, levels=levels, steps=2, hidden=8, seed=seed)
    x = torch.rand(*shape)
    g.initialise(x)
    with torch.no_grad():
        for p in g.parameters():          # zero-initialised couplings would make the test trivial
            p.add_(0.05 * torch.randn_like(p))
    return g.eval(), x


CASES = [(2, 2, (3, 1, 8, 8)), (3, 1, (2, 1, 4, 4, 4)), (3, 2, (2, 1, 8, 4, 8))]


@pytest.mark.parametrize("dims,levels,shape", CASES)
def test_invertible_to_1e4_float32(dims, levels, shape):
    g, x = _glow(dims, levels, shape)
    with torch.no_grad():
        zs, _, _ = g.encode(x)
        back = g.decode(zs)
    assert x.dtype == back.dtype == torch.float32
    assert float((back - x).abs().max()) < 1e-4


@pytest.mark.parametrize("dims,levels,shape", [(2, 2, (2, 1, 4, 4)), (3, 1, (2, 1, 4, 4, 4))])
def test_logdet_equals_bruteforce_jacobian(dims, levels, shape):
    g, x = _glow(dims, levels, shape)
    g = g.double()
    x1 = x[:1].double()
    jac = torch.autograd.functional.jacobian(lambda v: g.flat_z(v.reshape(x1.shape)).flatten(), x1.flatten(),
                                           vectorize=True)
    assert jac.shape[0] == jac.shape[1] == x1.numel()
    with torch.no_grad():
        logdet = float(g.total_logdet(x1))
    assert float(torch.linalg.slogdet(jac)[1]) == pytest.approx(logdet, abs=1e-6)


@pytest.mark.parametrize("dims,levels,shape", CASES)
def test_voxel_decomposition_sums_to_log_likelihood(dims, levels, shape):
    g, x = _glow(dims, levels, shape)
    v = g.voxel_log_density(x)
    assert v.shape == (shape[0],) + shape[2:]
    assert torch.allclose(v.flatten(1).sum(1), g(x), atol=1e-3)


def test_positional_prior_is_per_position_and_pinned_to_its_grid():
    g = Glow(1, 3, levels=2, steps=1, hidden=4, grid=(8, 4, 8))
    assert g.top_prior.shape[2:] == (2, 1, 2)
    x = torch.rand(2, 1, 8, 4, 8)
    g.initialise(x)
    with torch.no_grad():
        g.top_prior[:, :, 1] += 2.0                           # a different mean at one top-level position only
        v = g.voxel_log_density(x)
        assert torch.allclose(v.flatten(1).sum(1), g(x), atol=1e-3)
        flat = Glow(1, 3, levels=2, steps=1, hidden=4)
        flat.load_state_dict({k: (w[:, :, :1, :1, :1] if k == "top_prior" else w) for k, w in g.state_dict().items()})
        same = (g.voxel_log_density(x) - flat.voxel_log_density(x)).abs() < 1e-5
    assert same[:, :4].all() and not same[:, 4:].all()         # only the shifted position's voxels differ
    with pytest.raises(InputError, match="positional prior"):
        g.encode(torch.zeros(1, 1, 8, 8, 8))


def test_squeeze_roundtrip_and_input_errors():
    x = torch.arange(2 * 3 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 3, 4, 6, 8)
    assert torch.equal(unsqueeze(squeeze(x, 3), 3), x)
    g = Glow(1, 3, levels=2, steps=1, hidden=4)
    with pytest.raises(InputError, match="divisible"):
        g.encode(torch.zeros(1, 1, 6, 8, 8))
    with pytest.raises(InputError, match="3D Glow"):
        g.encode(torch.zeros(1, 1, 8, 8))
    with pytest.raises(InputError, match="channel"):
        g.encode(torch.zeros(1, 2, 8, 8, 8))


def test_quantisation_and_bits_per_dim_formula():
    assert scoring.N_BINS == 256
    q = scoring.quantise(torch.tensor([0.0, 0.5, 0.99999, 1.0, 1.7, -0.2]))
    assert q.tolist() == [0.0, 0.5, 255 / 256, 255 / 256, 255 / 256, 0.0]
    # bpd = -(sum_M l - |M| C log K) / (|M| C ln 2): a density of 1 everywhere (l = 0) -> log2(256) = 8 bits
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    assert float(scoring.bits_per_dim(torch.zeros(1, 4, 4), mask, 2)) == pytest.approx(8.0)
    vl = torch.full((1, 4, 4), -2 * math.log(2.0))        # 2 channels, 1 bit each per voxel -> 9 bits/dim
    assert float(scoring.bits_per_dim(vl, mask, 2)) == pytest.approx(9.0)
    half = mask.clone()
    half[0, :2] = False
    vl2 = vl.clone()
    vl2[0, :2] = -1000.0                                    # voxels outside the mask do not count
    assert float(scoring.bits_per_dim(vl2, half, 2)) == pytest.approx(9.0)


def test_dequantisation_and_background_fill():
    ch = torch.full((1, 1, 8, 8), 0.5)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    x = torch.cat([ch, mask], 1)
    y, m = scoring.prepare(x, torch.Generator().manual_seed(0))
    inside = y[0, 0][m[0]]
    assert float(inside.min()) >= 0.5 and float(inside.max()) < 0.5 + 1 / 256    # within the quantisation bin
    outside = y[0, 0][~m[0]]
    assert float(outside.std()) > 0.2                                               # U(0, 1) noise fill


def test_score_reads_only_the_masked_content():
    """Voxels outside the likelihood mask (background, and clipped voxels, which preprocessing leaves out of the
    mask: test_anomaly_fixes) get no per-voxel score, and the in-mask content does move the score."""
    model = scoring.AnomalyGlow(1, 2, (8, 8), levels=2, steps=1, hidden=4).eval()
    x = torch.rand(1, 2, 8, 8)
    x[:, 1] = 0
    x[:, 1, 2:6, 2:6] = 1
    inside = x.clone()
    inside[:, 0, 2:6, 2:6] = 1.0 - inside[:, 0, 2:6, 2:6]       # change only voxels inside the mask
    a, b = model.score(x), model.score(inside)
    assert abs(float(a["bpd"]) - float(b["bpd"])) > 1e-4
    assert torch.isnan(a["voxel_bpd"][0][x[0, 1] < 0.5]).all()
    assert not torch.isnan(a["voxel_bpd"][0][x[0, 1] > 0.5]).any()


def test_complexity_variant_definition():
    rng = np.random.default_rng(0)
    mask = np.ones((1, 16, 16), np.float32)
    flat = np.concatenate([np.full((1, 16, 16), 0.4, np.float32), mask])
    noisy = np.concatenate([rng.random((1, 16, 16)).astype(np.float32), mask])
    assert scoring.complexity_bpd(flat) < 1.0 < scoring.complexity_bpd(noisy) <= 9.0


def test_percentile_among_reference():
    ref = np.linspace(1.0, 2.0, scoring.N_REF)
    assert scoring.percentile_among(0.5, ref) == 0.0
    assert scoring.percentile_among(1.5, ref) == pytest.approx(50.0)
    assert scoring.percentile_among(3.0, ref) == 100.0
