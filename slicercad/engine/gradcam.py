"""Grad-CAM for 2D and 3D CNNs with ``monai.visualize.GradCAM``, and its resampling to the patient grid.

``grad_cam`` returns maps in input-array space (the array the network saw), scaled to [0, 1]
per sample by dividing by the sample's maximum (an all-zero map stays zero). Unlike MONAI's
default post-processing, which maps (min, max) to (1, 0), high values here mean "evidence
for the class". Hooks are removed after each call and the model's mode and ``inplace``
flags are restored, so the model is left exactly as it was.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from monai.visualize import GradCAM
from monai.visualize.class_activation_maps import ModelWithHooks

from ..errors import GeometryError, InputError, ModelError


class _HookedModel(ModelWithHooks):
    """MONAI's hook wrapper for one layer, keeping the hook handles so they can be removed."""

    def __init__(self, model: torch.nn.Module, layer: str):
        modules = dict(model.named_modules())
        if layer not in modules or layer == "":
            names = [n for n in modules if n][:30]
            raise ModelError(f"no layer named {layer!r}; layers include {names}", "target_layer")
        self.model = model
        self.target_layers = (layer,)
        self.gradients, self.activations = {}, {}
        self.score, self.class_idx = None, None
        self.register_forward = self.register_backward = True
        module = modules[layer]
        self.handles = [module.register_forward_hook(self.forward_hook(layer)),
                        module.register_full_backward_hook(self.backward_hook(layer))]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.gradients.clear()
        self.activations.clear()


def _as_batch(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim not in (4, 5):
        raise InputError(f"input must be (batch, channels, *spatial) with 2 or 3 spatial axes, got {tuple(t.shape)}",
                         "x")
    if not torch.isfinite(t).all():
        raise InputError("input contains NaN or inf", "x")
    return t.float()


def _scale(maps: torch.Tensor) -> np.ndarray:
    """(B, 1, *spatial) non-negative maps → (B, *spatial) float32 divided by each sample's maximum."""
    flat = maps.detach().reshape(maps.shape[0], -1)
    peak = flat.max(dim=1).values.clamp_min(torch.finfo(flat.dtype).tiny)
    scaled = (flat / peak[:, None]).clamp(0, 1)
    return scaled.reshape(maps.shape[0], *maps.shape[2:]).cpu().numpy().astype(np.float32)


def grad_cam(model: torch.nn.Module, x, target_layer: str, class_idx: int | None = None) -> np.ndarray:
    """Grad-CAM of ``model`` at ``target_layer`` (a name from ``model.named_modules()``).

    ``x`` is (B, C, H, W) or (B, C, D, H, W); ``class_idx`` None explains each sample's
    predicted class. Returns float32 (B, *spatial) maps in [0, 1], upsampled (bi/trilinear)
    to the input's spatial size.
    """
    device = next(model.parameters()).device
    x = _as_batch(x).to(device)
    was_training = model.training
    inplace = {m: m.inplace for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)}
    for m in inplace:  # full backward hooks refuse in-place ops downstream of the hooked layer
        m.inplace = False
    hooked = _HookedModel(model, target_layer)
    try:
        with torch.enable_grad():
            model.eval()
            with torch.no_grad():
                logits = model(x)
            n_classes = logits.shape[1]
            if class_idx is None:
                targets = logits.argmax(dim=1).tolist()
            elif isinstance(class_idx, (int, np.integer)) and 0 <= int(class_idx) < n_classes:
                targets = [int(class_idx)] * x.shape[0]
            else:
                raise InputError(f"class index must be an integer in [0, {n_classes - 1}], got {class_idx!r}",
                                 "class_idx")
            cam = GradCAM(nn_module=hooked, target_layers=target_layer, postprocessing=lambda m: m)
            out = torch.zeros((x.shape[0], 1, *x.shape[2:]), device=device)
            for c in sorted(set(targets)):
                rows = [i for i, t in enumerate(targets) if t == c]
                sample = x[rows].detach().clone().requires_grad_(True)  # gradients even for frozen weights
                out[rows] = cam(sample, class_idx=c).detach()
    finally:
        hooked.remove()
        for m, flag in inplace.items():
            m.inplace = flag
        model.train(was_training)
    return _scale(out)


def cam_to_patient_grid(cam, roi_image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Resample a CAM laid out like ``roi_image``'s array into ``reference``'s grid (linear, 0 outside).

    ``roi_image`` is the image the network input was cut from (its origin, spacing and
    direction place the CAM in patient space). A 2D map from a one-slice 3D ROI is accepted.
    """
    arr = np.asarray(cam, dtype=np.float32)
    roi_shape = tuple(reversed(roi_image.GetSize()))
    if arr.shape != roi_shape:
        if tuple(s for s in arr.shape if s != 1) != tuple(s for s in roi_shape if s != 1):
            raise GeometryError(f"CAM shape {arr.shape} does not match the ROI array shape {roi_shape}", "cam")
        arr = arr.reshape(roi_shape)
    if not np.isfinite(arr).all():
        raise InputError("CAM contains NaN or inf", "cam")
    if roi_image.GetDimension() != reference.GetDimension():
        raise GeometryError(f"ROI is {roi_image.GetDimension()}D but the reference is {reference.GetDimension()}D",
                            "roi_image")
    cam_img = sitk.GetImageFromArray(arr)
    cam_img.SetOrigin(roi_image.GetOrigin())
    cam_img.SetSpacing(roi_image.GetSpacing())
    cam_img.SetDirection(roi_image.GetDirection())
    return sitk.Resample(cam_img, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
