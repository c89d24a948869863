"""Grad-CAM of one TI-scout frame on the frame's own pixel grid (torch + monai, imported on use).

The frame goes through the one sample path (``features.frame_input``), ``engine.gradcam.grad_cam``
explains the class the model predicts for it at ``model.GRADCAM_LAYER``, and the [0, 1] map is
put back on the frame (``features.input_map_to_frame``: resized onto the input's central crop with
the same pixel alignment, 0 outside the crop, which the CNN never sees).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .features import frames_input, input_map_to_frame


def frame_cam(model, card, frame, class_idx: int | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """(Grad-CAM [rows, cols] in [0, 1], the class explained, calibrated probabilities) of ``frame``.
    ``class_idx`` None explains the predicted class."""
    import torch

    from ..engine.gradcam import grad_cam
    from .correct import check_input_spec
    from .model import GRADCAM_LAYER

    frame = np.asarray(frame, np.float32)
    if frame.ndim != 2:
        raise InputError(f"a frame is [rows, cols], got shape {frame.shape}", "frame")
    if not np.all(np.isfinite(frame)):
        raise InputError("the frame holds NaN or infinite pixels", "frame")
    check_input_spec(card)
    size = int(card["input_spec"]["roi_px"][0])
    x = torch.from_numpy(frames_input(frame[None], size))
    with torch.inference_mode():
        logits = model.eval()(x).float() / float(card.get("temperature", 1.0))
    proba = torch.softmax(logits, 1)[0].numpy()
    cls = int(np.argmax(proba)) if class_idx is None else int(class_idx)
    cam = grad_cam(model, x, GRADCAM_LAYER, class_idx=cls)[0]
    return np.clip(input_map_to_frame(cam, frame.shape), 0.0, 1.0), cls, proba
