"""Likelihood scores of a Glow on the AnomalyCT samples: dequantisation, background/clipped voxels kept out of
the likelihood, bits/dim, the complexity-corrected variant and the per-voxel map.

Inputs are (N, C + 1, *grid) tensors: C channels in [0, 1] and the likelihood mask (``Sample.stacked``).
* Quantisation: K = N_BINS = 256 levels, q = floor(clip(x) * K) / K (a [0, 1] channel holds 8 bits).
* Dequantisation: y = q + u / K, u ~ U(0, 1) i.i.d. (training: fresh noise each step; scoring: a fixed-seed
  draw, so a score is deterministic), the standard bound log P(q) >= log p(y) - D log K.
* In the background (mask channel 0: point masses a flow would exploit) every channel is replaced by i.i.d.
  U(0, 1) noise -- incompressible, so no likelihood can be gained there; kept voxels (clipped inside the
  anatomy, inpainted by the sample path) stay as they are; both are left out of the score: the score uses the exact per-voxel decomposition of log p(y)
  (``Glow.voxel_log_density``) summed over mask voxels only.
* bits/dim over the mask M: bpd = -(sum_{v in M} l(v) - |M| C log K) / (|M| C ln 2).
* Variant (Serra et al., ICLR 2020, input complexity): S = bpd - L, with L the complexity of the quantised
  input in bits/dim: 8 x zlib(level 9) length of the row-differenced (PNG "Sub" filter, mod 256) uint8 channels,
  background set to 0, divided by |M| C. Likelihoods favour simple inputs; subtracting the complexity removes
  that bias (a smooth, simple normal no longer looks "more normal" than a textured one).
* Per-voxel map: -l(v) / (C ln 2) + log2 K (bits/dim at the voxel), then standardised voxel-wise by the mean
  and standard deviation over held-out normals (``map_mean``, ``map_std`` buffers), two-sided and smoothed in the
  mask (``reference.standardise``: a region the flow finds unusually likely, e.g. a smooth hypodense infarct, is
  atypical too).
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn

from .glow import Glow
from .reference import standardise

N_BINS = 256
SCORE_SEED = 12345                   # the fixed dequantisation / background-fill draw used when scoring


def split(x: torch.Tensor):
    """(channels, mask bool) of a stacked (N, C + 1, ...) tensor."""
    return x[:, :-1], x[:, -1] > 0.5


def background(x: torch.Tensor) -> torch.Tensor:
    """Background voxels of a stacked tensor (mask channel 0; kept voxels, ``preprocess.KEPT``, are not)."""
    return x[:, -1] < 0.25


def quantise(ch: torch.Tensor, bins: int = N_BINS) -> torch.Tensor:
    return torch.clamp(torch.floor(torch.clamp(ch, 0, 1) * bins), 0, bins - 1) / bins


def prepare(x: torch.Tensor, generator: torch.Generator | None = None, bins: int = N_BINS) -> tuple:
    """(dequantised channels with the background noise-filled, mask): the flow's input."""
    ch, mask = split(x)
    u = torch.rand(ch.shape, generator=generator, dtype=ch.dtype, device="cpu").to(ch.device)
    fill = torch.rand(ch.shape, generator=generator, dtype=ch.dtype, device="cpu").to(ch.device)
    y = quantise(ch, bins) + u / bins
    y = torch.where(background(x)[:, None], fill, y)
    return y, mask


def bits_per_dim(voxel_logp: torch.Tensor, mask: torch.Tensor, channels: int, bins: int = N_BINS) -> torch.Tensor:
    """bpd over the mask from the per-voxel log densities (nats) -- the formula in the module doc."""
    m = mask.to(voxel_logp.dtype)
    n = m.flatten(1).sum(1).clamp_min(1.0) * channels
    ll = (voxel_logp * m).flatten(1).sum(1)
    return -(ll - n * math.log(bins)) / (n * math.log(2.0))


def standardised_map(raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``reference.standardise`` on tensors: the two-sided map of (N, C', *S) raw maps against the normal voxel-wise
    statistics (shape (C', *S)), smoothed in the mask."""
    out = standardise(raw.cpu().numpy(), mean.cpu().numpy(), std.cpu().numpy(), mask.cpu().numpy())
    return torch.from_numpy(out).to(raw.device)


def complexity_bpd(x: np.ndarray, bins: int = N_BINS) -> float:
    """L(x): zlib bits/dim of one stacked sample (C + 1, ...) over its mask (see module doc)."""
    ch, mask = x[:-1], x[-1] > 0.5
    q = (np.clip(np.floor(np.clip(ch, 0, 1) * bins), 0, bins - 1)).astype(np.int16) * mask[None]
    diff = np.diff(q, axis=-1, prepend=0) % 256
    n_bits = 8 * len(zlib.compress(diff.astype(np.uint8).tobytes(), 9))
    return float(n_bits / max(1, int(mask.sum()) * ch.shape[0]))


N_REF = 41   # held-out normal score quantiles kept with the weights (0, 2.5, ..., 100 %)


def add_reference_buffers(module: nn.Module, n_ref: int = N_REF) -> None:
    """Held-out normal reference kept in the weights: case-score quantiles (``ref_scores``; the variant's in
    ``ref_variant``, the map score's in ``ref_map``) and the case-level map threshold (``map_threshold``: the
    MAP_THRESHOLD_PCT percentile of the held-out normals' map maxima, so that share of normals shows no
    flagged voxel)."""
    module.register_buffer("ref_scores", torch.zeros(n_ref))
    module.register_buffer("ref_variant", torch.zeros(n_ref))
    module.register_buffer("ref_map", torch.zeros(n_ref))
    module.register_buffer("map_threshold", torch.tensor(3.0))


def percentile_among(value: float, ref_quantiles) -> float:
    """Percentile (0-100) of ``value`` among the held-out normals (linear between the stored quantiles)."""
    q = np.asarray(ref_quantiles, dtype=float)
    levels = np.linspace(0.0, 100.0, len(q))
    if value <= q[0]:
        return 0.0
    if value >= q[-1]:
        return 100.0
    return float(np.interp(value, q, levels))


class AnomalyGlow(nn.Module):
    """A Glow on (C + 1)-channel stacked samples; ``forward`` gives bits/dim per sample (the training loss)."""

    def __init__(self, channels=2, dims=3, grid=(32, 44, 36), levels=2, steps=4, hidden=32, seed=0,
                 positional_prior=True):
        super().__init__()
        self.channels, self.dims = channels, dims
        self.glow = Glow(channels, dims, levels, steps, hidden, seed, tuple(grid) if positional_prior else None)
        self.register_buffer("map_mean", torch.zeros((1, *grid)))
        self.register_buffer("map_std", torch.ones((1, *grid)))
        add_reference_buffers(self)

    def forward(self, x, generator=None):
        y, mask = prepare(x, generator)
        return bits_per_dim(self.glow.voxel_log_density(y), mask, self.channels)

    @torch.no_grad()
    def score(self, x, seed: int = SCORE_SEED) -> dict:
        """{'bpd', 'voxel_bpd' (N, *grid; NaN outside the mask), 'map' (standardised)} with a fixed-seed draw."""
        g = torch.Generator().manual_seed(seed)
        y, mask = prepare(x, g)
        vl = self.glow.voxel_log_density(y)
        bpd = bits_per_dim(vl, mask, self.channels)
        voxel = -vl / (self.channels * math.log(2.0)) + math.log2(N_BINS)
        return {"bpd": bpd, "voxel_bpd": torch.where(mask, voxel, torch.nan),
                "map": standardised_map(voxel[:, None], self.map_mean, self.map_std, mask)}
