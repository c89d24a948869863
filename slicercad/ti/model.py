"""VGG-style CNN for frame -> TI-offset category, trained from scratch (no ImageNet weights here).

Blocks of two 3x3 conv + BN + ReLU and a 2x2 max-pool (VGG's pattern), global average pooling,
dropout, linear. Default (bundled) model: channels (8, 16, 32) at 64 px. The heavier VGG-style
variant (``VGG_VARIANT``: four blocks 32-64-128-256 at 128 px, VGG-11-like width profile) is timed in
benchmarks/bench_ti.py. A user's own weights (e.g. an ImageNet-initialised network fine-tuned
elsewhere) load from a local safetensors file with a card (``registry.load_model``); nothing is
downloaded. Grad-CAM layer: ``last_conv``.
"""
from __future__ import annotations

import torch
from torch import nn

GRADCAM_LAYER = "last_conv"
VGG_VARIANT = {"channels": [32, 64, 128, 256], "input_px": 128}


class TINet(nn.Module):
    def __init__(self, classes: int = 6, channels=(8, 16, 32), dropout: float = 0.2):
        super().__init__()
        blocks, c_in = [], 1
        for i, c in enumerate(channels):
            last = i == len(channels) - 1
            layers = [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=not last)]
            if not last:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.features = nn.Sequential(*blocks[:-1])
        self.last_conv = blocks[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x):
        return self.head(self.drop(torch.flatten(self.pool(self.last_conv(self.features(x))), 1)))
