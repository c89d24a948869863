"""Small 2D DCNN on the Gaussian-attended multi-phase ROI stack (seed 000).

Input: [N, P + 1, H, W] = P normalised phase ROIs followed by the lesion's Gaussian map G. The
network applies ``G * I + alpha * I`` itself (``alpha=None``: no attention, G ignored), so the
attention setting travels with the weights and the model card, and Grad-CAM explains the whole
path. Grad-CAM layer: ``last_conv`` (the final convolution block, at 1/4 of the ROI size).
"""
from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ..errors import InputError
from .attention import attend, check_alpha
from .phases import PHASES

GRADCAM_LAYER = "last_conv"
ATTENTION_CHANNEL = "attention"


def parse_alpha(value):
    """None for no attention ('none', None), else alpha in [0, 1]."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off", "")):
        return None
    return check_alpha(value)


class LiverLesionNet(nn.Module):
    """Attention -> strided conv blocks -> ``last_conv`` -> global average pool -> dropout -> linear."""

    def __init__(self, n_phases: int = len(PHASES), n_classes: int = 3, channels=(16, 32, 64),
                 alpha=0.1, dropout: float = 0.2):
        super().__init__()
        self.n_phases = int(n_phases)
        self.alpha = parse_alpha(alpha)
        layers, c_in = [], self.n_phases
        for c in channels[:-1]:
            layers.append(Convolution(2, c_in, c, strides=2, kernel_size=3, act="relu", norm="batch"))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.last_conv = Convolution(2, c_in, channels[-1], strides=1, kernel_size=3, act="relu", norm="batch")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], n_classes)

    def attended(self, x: torch.Tensor) -> torch.Tensor:
        """The phase channels after attention (or unchanged when ``alpha`` is None)."""
        if x.shape[1] != self.n_phases + 1:
            raise InputError(f"expected {self.n_phases} phase channels + 1 attention channel, got {x.shape[1]}",
                             "input")
        images, G = x[:, :self.n_phases], x[:, self.n_phases:]
        return images if self.alpha is None else attend(images, G, self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.last_conv(self.features(self.attended(x)))
        return self.head(self.drop(torch.flatten(self.pool(z), 1)))


def model_input(stack, G) -> torch.Tensor:
    """[N, P+1, H, W] float32 tensor from stacks [N, P, H, W] (or [P, H, W]) and maps [N, H, W] (or [H, W])."""
    x = torch.as_tensor(stack, dtype=torch.float32)
    g = torch.as_tensor(G, dtype=torch.float32)
    if x.ndim == 3:
        x, g = x[None], g[None]
    return torch.cat([x, g[:, None]], dim=1)
