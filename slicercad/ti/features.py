"""The one sample path of a frame into the CNN (numpy + pillow only, no torch): the central
CNN_CROP_FRACTION of the frame in each direction (``crop_box``), resized to CNN_INPUT_PX square
(bilinear), divided by its CNN_NORM_PERCENTILE percentile, clipped to [0, 1.5]. The same function
serves training, evaluation, the panel, the CLI and the benchmark, for DICOM frames and for photos
alike. ``resize`` (pillow bilinear, pixel-centre aligned) and ``crop_box`` also map a map on the input
grid (Grad-CAM) back onto the frame's grid (``input_map_to_frame``)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .constants import CNN_CROP_FRACTION, CNN_INPUT_PX, CNN_NORM_PERCENTILE


def resize(a, shape) -> np.ndarray:
    """``a`` [rows, cols] resampled bilinearly to ``shape`` (rows, cols), float32."""
    a = np.asarray(a, np.float32)
    if a.shape == tuple(shape):
        return a
    return np.asarray(Image.fromarray(np.ascontiguousarray(a), mode="F").resize((int(shape[1]), int(shape[0])),
                                                                                Image.BILINEAR), np.float32)


def crop_box(shape, fraction: float = CNN_CROP_FRACTION) -> tuple:
    """(row slice, col slice) of the central ``fraction`` of a [rows, cols] frame."""
    out = []
    for n in shape[:2]:
        k = max(1, int(round(n * fraction)))
        out.append(slice((n - k) // 2, (n - k) // 2 + k))
    return tuple(out)


def frame_input(frame, size: int = CNN_INPUT_PX) -> np.ndarray:
    a = np.asarray(frame, np.float32)
    a = resize(a[crop_box(a.shape)], (size, size))
    top = float(np.percentile(a, CNN_NORM_PERCENTILE))
    return np.clip(a / (top if top > 0 else 1.0), 0.0, 1.5).astype(np.float32)


def frames_input(frames, size: int = CNN_INPUT_PX) -> np.ndarray:
    """[n, 1, size, size] float32 for a stack of frames."""
    return np.stack([frame_input(f, size) for f in frames])[:, None]


def input_map_to_frame(values, frame_shape) -> np.ndarray:
    """A map on the CNN input grid placed on the frame's grid: resized onto the crop, 0 outside it."""
    box = crop_box(frame_shape)
    out = np.zeros(tuple(frame_shape[:2]), np.float32)
    out[box] = resize(values, (box[0].stop - box[0].start, box[1].stop - box[1].start))
    return out
