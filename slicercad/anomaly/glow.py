"""Glow (Kingma & Dhariwal 2018) in 2D and 3D: multi-scale, actnorm, invertible 1x1(x1) convolution with an LU
parametrisation, affine coupling, and a learned conditional Gaussian prior for each split.

Every layer returns its log-determinant **per spatial position** of its own level (actnorm and the 1x1 conv
are per-position constants, coupling gives ``sum_c log s`` at each position), so log p(x) decomposes exactly
into a sum over input voxels: a squeezed position's share is spread evenly over the 2^d input voxels it
holds (:meth:`Glow.voxel_log_density`). That decomposition gives both the masked case score (background and
clipped voxels left out) and the per-voxel anomaly map, and it sums to the model's log-likelihood exactly
(pinned by the tests).

Shapes: 2D x is (N, C, H, W), 3D x is (N, C, D, H, W); every spatial size must be divisible by 2^levels.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

LOG2PI = math.log(2 * math.pi)


def _conv(dims):
    return nn.Conv2d if dims == 2 else nn.Conv3d


def squeeze(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Space-to-depth by 2 on every spatial axis: C -> C * 2^dims (channel order: c, then offsets)."""
    n, c = x.shape[:2]
    sp = x.shape[2:]
    if any(s % 2 for s in sp):
        raise InputError(f"spatial size {tuple(sp)} must be even on every axis to squeeze", "glow")
    if dims == 2:
        h, w = sp
        x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(n, c * 4, h // 2, w // 2)
    d, h, w = sp
    x = x.reshape(n, c, d // 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(n, c * 8, d // 2, h // 2, w // 2)


def unsqueeze(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Inverse of :func:`squeeze`."""
    n, c = x.shape[:2]
    f = 2 ** dims
    if dims == 2:
        h, w = x.shape[2:]
        x = x.reshape(n, c // f, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(n, c // f, h * 2, w * 2)
    d, h, w = x.shape[2:]
    x = x.reshape(n, c // f, 2, 2, 2, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(n, c // f, d * 2, h * 2, w * 2)


def spread_to_input(per_pos: torch.Tensor, factor: int, dims: int) -> torch.Tensor:
    """A per-position map (N, *S) of a level squeezed ``factor`` times, spread evenly over the input voxels."""
    out = per_pos
    for _ in range(factor):
        out = out.repeat_interleave(2, -1).repeat_interleave(2, -2)
        if dims == 3:
            out = out.repeat_interleave(2, -3)
        out = out / 2 ** dims
    return out


class ActNorm(nn.Module):
    """Per-channel affine y = (x + b) * exp(logs), initialised from the first batch (zero mean, unit variance)."""

    def __init__(self, channels: int, dims: int):
        super().__init__()
        shape = (1, channels) + (1,) * dims
        self.bias = nn.Parameter(torch.zeros(shape))
        self.logs = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x):
        if not bool(self.initialized) and self.training:
            with torch.no_grad():
                axes = [0] + list(range(2, x.dim()))
                mean = x.mean(axes, keepdim=True)
                std = x.std(axes, keepdim=True) + 1e-6
                self.bias.data.copy_(-mean)
                self.logs.data.copy_(torch.log(1.0 / std))
                self.initialized.fill_(1)
        y = (x + self.bias) * torch.exp(self.logs)
        ld = self.logs.sum().expand(x.shape[0], *x.shape[2:])
        return y, ld

    def reverse(self, y):
        return y * torch.exp(-self.logs) - self.bias


class InvConvLU(nn.Module):
    """Invertible 1x1(x1) convolution W = P L (U + diag(sign * exp(log_s))); log|det| = sum(log_s) per position."""

    def __init__(self, channels: int, dims: int, seed: int = 0):
        super().__init__()
        self.dims = dims
        rng = np.random.default_rng(seed)
        w = scipy.linalg.qr(rng.normal(size=(channels, channels)))[0]
        p, lower, upper = scipy.linalg.lu(w)
        s = np.diag(upper)
        self.register_buffer("p", torch.tensor(p, dtype=torch.float32))
        self.register_buffer("sign_s", torch.tensor(np.sign(s), dtype=torch.float32))
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(torch.tensor(lower, dtype=torch.float32))
        self.upper = nn.Parameter(torch.tensor(np.triu(upper, 1), dtype=torch.float32))
        self.log_s = nn.Parameter(torch.tensor(np.log(np.abs(s)), dtype=torch.float32))

    def weight(self):
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def _conv1(self, x, w):
        return (F.conv2d if self.dims == 2 else F.conv3d)(x, w.reshape(*w.shape, *([1] * self.dims)))

    def forward(self, x):
        ld = self.log_s.sum().expand(x.shape[0], *x.shape[2:])
        return self._conv1(x, self.weight()), ld

    def reverse(self, y):
        w = self.weight()
        return self._conv1(y, torch.inverse(w.double()).to(w.dtype))


class ZeroConv(nn.Module):
    """3x3(x3) convolution initialised to zero with a learned log-scale (Glow's last layer of each NN)."""

    def __init__(self, c_in, c_out, dims):
        super().__init__()
        self.conv = _conv(dims)(c_in, c_out, 3, padding=1)
        self.conv.weight.data.zero_()
        self.conv.bias.data.zero_()
        self.logs = nn.Parameter(torch.zeros((1, c_out) + (1,) * dims))

    def forward(self, x):
        return self.conv(x) * torch.exp(self.logs * 3.0)


class AffineCoupling(nn.Module):
    """x = [xa, xb]; yb = (xb + t(xa)) * s(xa), s = sigmoid(raw + 2); log|det| = sum_c log s per position."""

    def __init__(self, channels: int, hidden: int, dims: int):
        super().__init__()
        if channels < 2:
            raise InputError("affine coupling needs at least 2 channels", "glow")
        self.ca = channels // 2
        conv = _conv(dims)
        self.nn = nn.Sequential(conv(self.ca, hidden, 3, padding=1), nn.ReLU(),
                                conv(hidden, hidden, 1), nn.ReLU(),
                                ZeroConv(hidden, 2 * (channels - self.ca), dims))

    def _st(self, xa):
        h = self.nn(xa)
        shift, raw = h[:, 0::2], h[:, 1::2]
        return shift, torch.sigmoid(raw + 2.0) + 1e-6

    def forward(self, x):
        xa, xb = x[:, :self.ca], x[:, self.ca:]
        shift, s = self._st(xa)
        yb = (xb + shift) * s
        return torch.cat([xa, yb], 1), torch.log(s).sum(1)

    def reverse(self, y):
        ya, yb = y[:, :self.ca], y[:, self.ca:]
        shift, s = self._st(ya)
        return torch.cat([ya, yb / s - shift], 1)


class FlowStep(nn.Module):
    def __init__(self, channels, hidden, dims, seed):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels, dims), InvConvLU(channels, dims, seed),
                                     AffineCoupling(channels, hidden, dims)])

    def forward(self, x):
        total = 0.0
        for layer in self.layers:
            x, ld = layer(x)
            total = total + ld
        return x, total

    def reverse(self, y):
        for layer in reversed(self.layers):
            y = layer.reverse(y)
        return y


def gaussian_logp(z, mean, logs):
    """Per-element log N(z; mean, exp(logs)^2)."""
    return -0.5 * (LOG2PI + 2.0 * logs + (z - mean) ** 2 * torch.exp(-2.0 * logs))


class Glow(nn.Module):
    """Multi-scale Glow: for each level squeeze, ``steps`` flow steps, then (except the last) split half of the
    channels off as z with a Gaussian prior conditioned on the kept half; the top gets a learned prior (one per
    top-level position when ``grid`` is given)."""

    def __init__(self, in_channels=1, dims=2, levels=3, steps=4, hidden=32, seed=0, grid=None):
        super().__init__()
        if dims not in (2, 3):
            raise InputError(f"Glow is 2D or 3D, got dims={dims}", "dims")
        if levels < 1 or steps < 1:
            raise InputError("levels and steps must be >= 1", "glow")
        self.dims, self.levels, self.in_channels = dims, levels, in_channels
        self.blocks = nn.ModuleList()
        self.priors = nn.ModuleList()
        c = in_channels
        for lvl in range(levels):
            c *= 2 ** dims
            self.blocks.append(nn.ModuleList([FlowStep(c, hidden, dims, seed * 1000 + lvl * 100 + k)
                                              for k in range(steps)]))
            if lvl < levels - 1:
                self.priors.append(ZeroConv(c - c // 2, 2 * (c // 2), dims))
                c = c - c // 2
            else:
                self.top_c = c
                self.priors.append(None)
        # positional prior: with ``grid`` (a fixed, aligned input grid) the top level's Gaussian has its own mean /
        # log-scale at every top-level position, so the flow knows which coarse intensity belongs where
        self.grid = tuple(int(s) for s in grid) if grid is not None else None
        top = [s // 2 ** levels for s in self.grid] if self.grid else [1] * dims
        self.top_prior = nn.Parameter(torch.zeros(1, 2 * c, *top))

    def check_input(self, x):
        if x.dim() != self.dims + 2:
            raise InputError(f"a {self.dims}D Glow takes (N, C, {'D, ' if self.dims == 3 else ''}H, W) tensors, "
                             f"got shape {tuple(x.shape)}", "input")
        if x.shape[1] != self.in_channels:
            raise InputError(f"expected {self.in_channels} channel(s), got {x.shape[1]}", "input")
        f = 2 ** self.levels
        if self.grid is not None and tuple(x.shape[2:]) != self.grid:
            raise InputError(f"this Glow has a positional prior for the grid {self.grid}, got {tuple(x.shape[2:])}",
                             "input")
        if any(s % f for s in x.shape[2:]):
            raise InputError(f"spatial size {tuple(x.shape[2:])} must be divisible by 2^levels = {f}", "input")

    def encode(self, x):
        """(list of z per level, log-det map per level (N, *S_l), log-prior map per level (N, *S_l))."""
        self.check_input(x)
        zs, lds, lps = [], [], []
        h = x
        for lvl, steps in enumerate(self.blocks):
            h = squeeze(h, self.dims)
            ld = 0.0
            for step in steps:
                h, d = step(h)
                ld = ld + d
            lds.append(ld)
            if lvl < self.levels - 1:
                keep, z = h[:, :h.shape[1] - h.shape[1] // 2], h[:, h.shape[1] - h.shape[1] // 2:]
                p = self.priors[lvl](keep)
                mean, logs = p[:, 0::2], p[:, 1::2]
                lps.append(gaussian_logp(z, mean, logs).sum(1))
                zs.append(z)
                h = keep
            else:
                p = self.top_prior.expand(h.shape[0], -1, *h.shape[2:])
                lps.append(gaussian_logp(h, p[:, 0::2], p[:, 1::2]).sum(1))
                zs.append(h)
        return zs, lds, lps

    def forward(self, x):
        """log p(x) per sample (nats, continuous density of the input tensor)."""
        _, lds, lps = self.encode(x)
        return sum((ld + lp).flatten(1).sum(1) for ld, lp in zip(lds, lps))

    def voxel_log_density(self, x):
        """(N, *spatial) per-voxel share of log p(x); sums exactly to :meth:`forward` over the voxels."""
        _, lds, lps = self.encode(x)
        out = 0.0
        for lvl, (ld, lp) in enumerate(zip(lds, lps)):
            term = ld + lp
            if not torch.is_tensor(term) or term.dim() == 1:
                term = torch.as_tensor(term).reshape(-1, *([1] * self.dims)).expand(x.shape[0], *[
                    s // 2 ** (lvl + 1) for s in x.shape[2:]])
            out = out + spread_to_input(term, lvl + 1, self.dims)
        return out

    def decode(self, zs):
        """Inverse of :meth:`encode`'s z list (the prior is not needed)."""
        h = zs[-1]
        for lvl in range(self.levels - 1, -1, -1):
            if lvl < self.levels - 1:
                h = torch.cat([h, zs[lvl]], 1)
            for step in reversed(self.blocks[lvl]):
                h = step.reverse(h)
            h = unsqueeze(h, self.dims)
        return h

    def flat_z(self, x):
        return torch.cat([z.flatten(1) for z in self.encode(x)[0]], 1)

    def total_logdet(self, x):
        _, lds, _ = self.encode(x)
        return sum(ld.flatten(1).sum(1) for ld in lds)

    def initialise(self, x):
        """Data-dependent actnorm initialisation on a batch (call once before training)."""
        was = self.training
        self.train()
        with torch.no_grad():
            self.encode(x)
        self.train(was)
        return self
