"""The correction-click refinement loop, simulated as DeepEdit / nnInteractive evaluate it: after each
prediction a simulated reader clicks once at the deepest voxel of the largest error region -- a positive
click in missed lesion, a negative click in a false positive -- and the lesion is segmented again with every
click so far (the product path, ``segment.segment_lesion``). Dice after 0..n clicks, SYNTHETIC truth.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def error_click(pred: np.ndarray, truth: np.ndarray):
    """``(positive?, kji)`` of the next simulated click: the deepest voxel (distance transform) of the largest
    connected error region; None when the prediction is exact."""
    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    best = None
    for positive, error in ((True, truth & ~pred), (False, pred & ~truth)):
        lab, n = ndimage.label(error)
        if not n:
            continue
        sizes = ndimage.sum(error, lab, range(1, n + 1))
        k = int(np.argmax(sizes)) + 1
        if best is None or sizes[k - 1] > best[0]:
            region = lab == k
            depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1, 1:-1]
            best = (sizes[k - 1], positive, np.unravel_index(int(np.argmax(depth)), region.shape))
    return None if best is None else (best[1], np.array(best[2]))


def refined_masks(model, card, lesion, center, diameter, n_clicks: int, device: str = "cpu") -> list:
    """Masks of ``lesion`` (a phantom lesion: image, mask) after 0..``n_clicks`` simulated correction clicks."""
    import SimpleITK as sitk

    from .segment import segment_lesion

    truth = sitk.GetArrayViewFromImage(lesion.mask) > 0
    pos, neg, out = [], [], []
    for _ in range(n_clicks + 1):
        mask = segment_lesion(model, card, lesion.image, center, diameter, "LPS", pos or None, neg or None,
                              device).mask
        out.append(mask)
        click = error_click(mask, truth)
        if click is None:
            out += [mask] * (n_clicks + 1 - len(out))
            break
        k, j, i = (float(v) for v in click[1])
        (pos if click[0] else neg).append(lesion.image.TransformContinuousIndexToPhysicalPoint((i, j, k)))
    return out[:n_clicks + 1]
