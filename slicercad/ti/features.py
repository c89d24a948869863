"""The one sample path of a frame into the CNN (numpy + pillow only, no torch): the whole frame,
resized to CNN_INPUT_PX square (bilinear), divided by its CNN_NORM_PERCENTILE percentile, clipped to
[0, 1.5]. The same function serves training, evaluation, the panel, the CLI and the benchmark,
for DICOM frames and for photos alike."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .constants import CNN_INPUT_PX, CNN_NORM_PERCENTILE


def frame_input(frame, size: int = CNN_INPUT_PX) -> np.ndarray:
    a = np.asarray(frame, np.float32)
    if a.shape != (size, size):
        a = np.asarray(Image.fromarray(a, mode="F").resize((size, size), Image.BILINEAR), np.float32)
    top = float(np.percentile(a, CNN_NORM_PERCENTILE))
    return np.clip(a / (top if top > 0 else 1.0), 0.0, 1.5).astype(np.float32)


def frames_input(frames, size: int = CNN_INPUT_PX) -> np.ndarray:
    """[n, 1, size, size] float32 for a stack of frames."""
    return np.stack([frame_input(f, size) for f in frames])[:, None]
