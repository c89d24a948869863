"""Renal mass CNNs on ROI slices (seed 004).

- ``RenalSliceNet`` (default, from scratch): 3 strided conv blocks (MONAI) -> ``last_conv`` -> global average
  pool -> dropout -> linear (2 logits: benign, malignant). ``in_channels`` = 1 for a per-phase model
  (one phase's windowed slice), 4 for the multi-phase model (the 4 phases at one slice offset).
  Grad-CAM layer: ``last_conv``.
- ``inception_v3(weights_path, in_channels)``: the report's Inception-v3, from torchvision (not a dependency:
  install it yourself) with ImageNet weights read from a **local** file only (safetensors, or a torch file
  read with ``weights_only=True``); no download. Slices are resized to 299 x 299 and the grey channel is
  repeated to RGB by the wrapper; with ImageNet weights the [0, 1] input is normalised with ImageNet's channel
  mean / std (``IMAGENET_MEAN``, ``IMAGENET_STD``), as those weights were trained. Grad-CAM layer: ``net.Mixed_7c``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ..errors import InputError, ModelError

GRADCAM_LAYER = "last_conv"
INCEPTION_GRADCAM_LAYER = "net.Mixed_7c"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RenalSliceNet(nn.Module):
    def __init__(self, in_channels: int = 1, channels=(16, 32, 64), dropout: float = 0.2):
        super().__init__()
        layers, c_in = [], int(in_channels)
        for c in channels[:-1]:
            layers.append(Convolution(2, c_in, c, strides=2, kernel_size=3, act="relu", norm="batch"))
            c_in = c
        self.in_channels = int(in_channels)
        self.features = nn.Sequential(*layers)
        self.last_conv = Convolution(2, c_in, channels[-1], strides=2, kernel_size=3, act="relu", norm="batch")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], 2)

    def forward(self, x):
        if x.shape[1] != self.in_channels:
            raise InputError(f"expected {self.in_channels} input channel(s), got {x.shape[1]}", "input")
        z = self.last_conv(self.features(x))
        return self.head(self.drop(torch.flatten(self.pool(z), 1)))


class _InceptionWrapper(nn.Module):
    def __init__(self, net, in_channels, imagenet_normalise: bool = False):
        super().__init__()
        self.net, self.in_channels, self.imagenet_normalise = net, int(in_channels), bool(imagenet_normalise)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        import torch.nn.functional as F

        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if self.in_channels == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.imagenet_normalise:
            x = (x - self.mean) / self.std
        out = self.net(x)
        return out.logits if hasattr(out, "logits") else out


def _read_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ModelError(f"cannot read ImageNet weights ({exc}); give a safetensors or torch state-dict file",
                         path) from exc


def inception_v3(weights_path=None, in_channels: int = 1) -> nn.Module:
    """Inception-v3 with a 2-class head; ImageNet weights from ``weights_path`` (local file) when given."""
    try:
        from torchvision.models import inception_v3 as tv_inception
    except ImportError as exc:
        raise ModelError("the Inception-v3 option needs torchvision (pip install torchvision matching your torch); "
                         "the default RenalSliceNet needs nothing more", "--arch inception_v3") from exc
    if in_channels not in (1, 3):
        raise InputError("Inception-v3 takes 1 (grey, repeated to RGB) or 3 channels", "in_channels")
    net = tv_inception(weights=None, aux_logits=True, init_weights=weights_path is None)
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise ModelError("ImageNet weights file not found (nothing is downloaded: pass the local "
                             "inception_v3 ImageNet state dict)", path)
        state = _read_state(path)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if len(missing) > 10 or unexpected:
            raise ModelError(f"not Inception-v3 ImageNet weights ({len(missing)} missing, {len(unexpected)} "
                             "unexpected keys)", path)
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Linear(net.fc.in_features, 2)
    return _InceptionWrapper(net, in_channels, imagenet_normalise=weights_path is not None)
