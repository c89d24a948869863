"""Calibrated probabilities + Grad-CAM of one lesion in one forward and one head-only backward.

The straightforward path (``engine.predict`` then ``engine.gradcam.grad_cam``) runs the whole
``LiverLesionNet`` three times per lesion: a no-grad forward for the probabilities, then MONAI
GradCAM's forward and backward with hooks through every layer. Grad-CAM only needs the
activation ``z`` of ``last_conv`` and ``d logit_k / d z``, so here:

- the trunk (attention, ``features``, ``last_conv``) runs once under ``inference_mode``;
- a graph is built for the head only (``pool`` -> ``drop`` -> ``head``) on a detached copy of
  ``z``, and one ``autograd.grad`` gives the gradient for the explained class;
- the CAM is MONAI's: ``relu(sum_c mean_hw(grad_c) * z_c)``, bilinearly upsampled
  (``align_corners=False``) to the ROI and divided by its maximum, exactly as ``grad_cam``;
- the model is a private eval-mode copy in channels-last memory format (the caller's model is
  untouched), and the squared-distance grid of the Gaussian attention is computed once.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.calibration import apply_temperature
from ..errors import InputError, ModelError
from .attention import attend, sigma_from_diameter
from .model import GRADCAM_LAYER

_PARTS = ("features", "last_conv", "pool", "drop", "head")


class FastLiverCam:
    """Probabilities and Grad-CAM at ``last_conv`` for a ``LiverLesionNet`` (see module doc).

    ``model``: the network (copied; later changes to it are not seen); ``temperature``: the
    card's calibration temperature; ``roi_px``: the ROI side in pixels; ``layer``: the card's
    Grad-CAM layer, which must be ``last_conv``.
    """

    def __init__(self, model: torch.nn.Module, temperature: float, roi_px: int, layer: str = GRADCAM_LAYER,
                 device="cpu", channels_last: bool = True):
        if layer != GRADCAM_LAYER:
            raise ModelError(f"the fast Grad-CAM path explains layer {GRADCAM_LAYER!r}, the card asks for {layer!r}",
                             "gradcam_layer")
        missing = [p for p in _PARTS + ("alpha", "n_phases") if not hasattr(model, p)]
        if missing:
            raise ModelError(f"{type(model).__name__} lacks {missing}; the fast Grad-CAM path needs a "
                             "LiverLesionNet", "model")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise InputError(f"temperature must be > 0, got {temperature!r}", "temperature")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = copy.deepcopy(model).eval().to(self.device).to(memory_format=self.memory_format)
        self.temperature, self.roi_px = float(temperature), int(roi_px)
        r = torch.arange(self.roi_px, dtype=torch.float32, device=self.device) - (self.roi_px - 1) / 2.0
        self._r2 = r[:, None] ** 2 + r[None, :] ** 2          # squared pixel distance from the ROI centre

    def attention(self, diameter_mm: float, spacing_mm: float) -> torch.Tensor:
        """The ROI-centred Gaussian of ``attention.attention_from_diameter`` (sigma = lesion radius)."""
        sigma = sigma_from_diameter(diameter_mm, spacing_mm)
        return torch.exp(self._r2 * (-0.5 / sigma ** 2))

    def _images(self, stack, G) -> tuple:
        x = torch.as_tensor(stack, dtype=torch.float32, device=self.device)
        g = torch.as_tensor(G, dtype=torch.float32, device=self.device)
        want = (self.model.n_phases, self.roi_px, self.roi_px)
        if tuple(x.shape) != want:
            raise InputError(f"ROI stack must be (phases, rows, cols) = {want}, got {tuple(x.shape)}", "stack")
        if tuple(g.shape) != want[1:]:
            raise InputError(f"attention map must be {want[1:]}, got {tuple(g.shape)}", "attention")
        if not (torch.isfinite(x).all() and torch.isfinite(g).all()):
            raise InputError("ROI stack or attention map contains NaN or inf", "stack")
        return x[None].contiguous(memory_format=self.memory_format), g

    def __call__(self, stack, G, class_idx: int | None = None, with_cam: bool = True) -> tuple:
        """(probabilities float32 [K], CAM float32 [H, W] in [0, 1] or None) for one lesion.

        ``stack``: normalised, un-attended ROIs [P, H, W]; ``G``: its attention map [H, W];
        ``class_idx``: the class to explain (None: the predicted one).
        """
        m = self.model
        images, g = self._images(stack, G)
        with torch.inference_mode():
            att = images if m.alpha is None else attend(images, g, m.alpha)
            z = m.last_conv(m.features(att))
            if not with_cam:
                logits = m.head(m.drop(torch.flatten(m.pool(z), 1)))
                return apply_temperature(logits[0], self.temperature).cpu().numpy(), None
        z = z.clone().requires_grad_(True)                     # a normal tensor: the graph covers the head only
        logits = m.head(m.drop(torch.flatten(m.pool(z), 1)))
        k = self._target(logits, class_idx)
        (grad,) = torch.autograd.grad(logits[0, k], z)
        with torch.no_grad():
            cam = F.relu((grad.mean((2, 3), keepdim=True) * z).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            cam = (cam / cam.max().clamp_min(torch.finfo(cam.dtype).tiny)).clamp(0, 1)
            proba = apply_temperature(logits[0], self.temperature)
        return proba.cpu().numpy(), cam.cpu().numpy().astype(np.float32)

    @staticmethod
    def _target(logits: torch.Tensor, class_idx) -> int:
        n = logits.shape[1]
        if class_idx is None:
            return int(logits.argmax(1))
        if isinstance(class_idx, (int, np.integer)) and not isinstance(class_idx, bool) and 0 <= class_idx < n:
            return int(class_idx)
        raise InputError(f"class index must be an integer in [0, {n - 1}], got {class_idx!r}", "class_idx")

