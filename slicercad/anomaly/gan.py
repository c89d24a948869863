"""f-AnoGAN-style detector (Schlegl et al. 2019) in 2D or 3D: a generator G(z) and a discriminator D trained on
normal images, then an encoder E trained with G and D frozen (izi_f: image residual + discriminator-feature
residual). Score A(x) = mean_M (x - G(E(x)))^2 + KAPPA * mean (f(x) - f(G(E(x))))^2 (f: D's last conv
features), per-voxel map = the signed residual x - G(E(x)) per channel, standardised voxel-wise over held-out
normals, two-sided, max over channels (``scoring.standardised_map``: a region darker than the reconstruction,
e.g. a hypodense infarct, counts as much as a brighter one; the squared residual hid it).
Inputs: stacked (N, C + 1, *grid) tensors (channels, then the mask channel); in the background channels are 0.
GAN loss: non-saturating with spectral-normalised D (stabler on CPU-sized runs than WGAN-GP, same role).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .scoring import add_reference_buffers, background, split, standardised_map

KAPPA = 1.0


def _conv(dims):
    return nn.Conv2d if dims == 2 else nn.Conv3d


class _Down(nn.Module):
    def __init__(self, c_in, ch, dims, sn=False):
        super().__init__()
        conv = _conv(dims)
        wrap = spectral_norm if sn else (lambda m: m)
        self.features = nn.Sequential(wrap(conv(c_in, ch, 4, 2, 1)), nn.LeakyReLU(0.2),
                                      wrap(conv(ch, 2 * ch, 4, 2, 1)), nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.features(x)


class AnomalyGAN(nn.Module):
    def __init__(self, channels=2, dims=3, grid=(32, 44, 36), z_dim=64, ch=16):
        super().__init__()
        self.channels, self.dims, self.grid, self.z_dim = channels, dims, tuple(grid), z_dim
        self.low = tuple(s // 4 for s in grid)
        n_low = 2 * ch * int(torch.tensor(self.low).prod())
        conv = _conv(dims)
        self.g_fc = nn.Linear(z_dim, n_low)
        self.g_net = nn.Sequential(nn.ReLU(), nn.Upsample(scale_factor=2), conv(2 * ch, ch, 3, padding=1),
                                   nn.ReLU(), nn.Upsample(scale_factor=2), conv(ch, channels, 3, padding=1))
        self.d_feat = _Down(channels, ch, dims, sn=True)
        self.d_head = spectral_norm(nn.Linear(n_low, 1))
        self.e_feat = _Down(channels, ch, dims)
        self.e_head = nn.Linear(n_low, z_dim)
        self.ch = ch
        self.register_buffer("map_mean", torch.zeros((channels, *self.grid)))
        self.register_buffer("map_std", torch.ones((channels, *self.grid)))
        add_reference_buffers(self)

    def generate(self, z):
        h = self.g_fc(z).reshape(len(z), 2 * self.ch, *self.low)
        return torch.sigmoid(self.g_net(h))

    def discriminate(self, x):
        f = self.d_feat(x)
        return self.d_head(f.flatten(1)).squeeze(1), f

    def encode(self, x):
        return torch.tanh(self.e_head(self.e_feat(x).flatten(1)))

    @staticmethod
    def masked(x):
        """(channels, 0 in the background -- kept voxels keep their inpainted values -- ; scored mask)."""
        ch, mask = split(x)
        return ch * (~background(x))[:, None], mask

    def residuals(self, x):
        ch, mask = self.masked(x)
        rec = self.generate(self.encode(ch)) * (~background(x))[:, None]
        _, f_x = self.discriminate(ch)
        _, f_r = self.discriminate(rec)
        d = ch - rec
        m = mask.float()
        img = ((d ** 2).sum(1) * m).flatten(1).sum(1) / (m.flatten(1).sum(1).clamp_min(1) * self.channels)
        feat = ((f_x - f_r) ** 2).flatten(1).mean(1)
        return img + KAPPA * feat, d, mask

    def forward(self, x):
        return self.residuals(x)[0]

    @torch.no_grad()
    def score(self, x) -> dict:
        s, d, mask = self.residuals(x)
        return {"score": s, "map": standardised_map(d, self.map_mean, self.map_std, mask)}


def train_gan(model: AnomalyGAN, x: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int,
              report=None, encoder_epochs: int | None = None) -> list:
    """Adversarial training of G, D on the normals ``x`` (stacked), then izi_f training of E; returns history."""
    gen = torch.Generator().manual_seed(seed)
    g_params = list(model.g_fc.parameters()) + list(model.g_net.parameters())
    d_params = list(model.d_feat.parameters()) + list(model.d_head.parameters())
    opt_g = torch.optim.Adam(g_params, lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_params, lr=lr, betas=(0.5, 0.999))
    history = []
    n = len(x)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=gen)
        dl = gl = 0.0
        for s in range(0, n, batch_size):
            real, _ = model.masked(x[perm[s:s + batch_size]])
            z = torch.rand(len(real), model.z_dim, generator=gen) * 2 - 1
            fake = model.generate(z)
            d_real, _ = model.discriminate(real)
            d_fake, _ = model.discriminate(fake.detach())
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            d_fake, _ = model.discriminate(fake)
            loss_g = F.softplus(-d_fake).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            dl, gl = dl + loss_d.item(), gl + loss_g.item()
        history.append({"epoch": epoch, "stage": "gan", "loss_d": dl, "loss_g": gl})
        if report:
            report(epoch, loss=gl, stage="gan")
    e_params = list(model.e_feat.parameters()) + list(model.e_head.parameters())
    opt_e = torch.optim.Adam(e_params, lr=lr)
    for p in g_params + d_params:
        p.requires_grad_(False)
    for epoch in range(1, (encoder_epochs or epochs) + 1):
        perm = torch.randperm(n, generator=gen)
        el = 0.0
        for s in range(0, n, batch_size):
            loss = model(x[perm[s:s + batch_size]]).mean()
            opt_e.zero_grad()
            loss.backward()
            opt_e.step()
            el += loss.item()
        history.append({"epoch": epoch, "stage": "encoder", "loss": el})
    for p in g_params + d_params:
        p.requires_grad_(True)
    return history
