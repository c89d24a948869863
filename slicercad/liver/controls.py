"""Controls for what the liver network looks at: Grad-CAM focus score, randomised-weights copy, and the
occlusion test against a pasted control of the same magnitude (see ``study`` for how they are compared)."""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..engine.calibration import apply_temperature
from ..engine.gradcam import grad_cam
from .fitting import dataset_tensor
from .model import GRADCAM_LAYER


def focus_scores(cams, masks) -> np.ndarray:
    """(CAM mass inside the lesion / total CAM mass) / (lesion area / ROI area), per lesion; NaN for a zero CAM."""
    cams = np.asarray(cams, dtype=float)
    masks = np.asarray(masks, dtype=bool)
    total = cams.sum((-1, -2))
    inside = (cams * masks).sum((-1, -2))
    frac = masks.mean((-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0) / frac, np.nan)


def randomised_copy(model, seed: int = 0):
    """The same architecture with every layer re-initialised (the randomised-weights control)."""
    torch.manual_seed(seed)
    rand = copy.deepcopy(model)
    for m in rand.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return rand.eval()


def _surround_fill(x: torch.Tensor, region: np.ndarray) -> torch.Tensor:
    """[P] per-channel median outside ``region`` (the parenchyma around the lesion)."""
    r = torch.as_tensor(region)
    return torch.stack([torch.median(x[k][~r]) for k in range(x.shape[0])])


def _occlude(x: torch.Tensor, region: np.ndarray, phases=None) -> torch.Tensor:
    """Phase channels [P, H, W] with ``region`` replaced by each channel's median outside it."""
    out = x.clone()
    r = torch.as_tensor(region)
    fill = _surround_fill(x, region)
    for k in range(x.shape[0]):
        out[k][r] = fill[k]
    return out


def _paste(x: torch.Tensor, region: np.ndarray, shift) -> torch.Tensor:
    """Phase channels with the pixels of ``region`` copied to ``region`` moved by ``shift`` (rows, cols)."""
    out = x.clone()
    rows, cols = np.nonzero(region)
    out[:, rows + shift[0], cols + shift[1]] = x[:, rows, cols]
    return out


def _elsewhere(mask: np.ndarray, rng, margin: int = 2):
    """A (rows, cols) shift that moves ``mask`` inside the ROI, at least ``margin`` px clear of it; None if none."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    grown = mask.copy()
    for dr in range(-margin, margin + 1):
        for dc in range(-margin, margin + 1):
            grown |= np.roll(mask, (dr, dc), axis=(0, 1))
    for _ in range(100):
        dr, dc = int(rng.integers(-h + 1, h)), int(rng.integers(-w + 1, w))
        if rows.min() + dr < 0 or rows.max() + dr >= h or cols.min() + dc < 0 or cols.max() + dc >= w:
            continue
        if not (grown[rows + dr, cols + dc]).any():
            return (dr, dc)
    return None


def _proba(model, temperature, x, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([apply_temperature(model(x[i:i + batch]), temperature).numpy()
                               for i in range(0, len(x), batch)])


def _input_change(model, x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    """[N] size of a perturbation where the network sees it: mean absolute change of the phase channels
    after the model's own attention weighting ``(G + alpha) I`` (``model.attended``; unweighted without
    attention), summed over pixels and averaged over phases, i.e. in parenchyma-normalised units x pixels."""
    attended = getattr(model, "attended", None)
    with torch.no_grad():
        a0 = attended(x0) if attended else x0[:, :-1]
        a1 = attended(x1) if attended else x1[:, :-1]
    return (a1 - a0).abs().sum((-1, -2)).mean(1).numpy()


def occlusion_test(model, temperature, x: torch.Tensor, labels, masks, seed: int = 0) -> dict:
    """Prediction change when each lesion is occluded vs the control (its pixels pasted elsewhere).

    ``x``: [N, P+1, H, W] model inputs (the attention channel is left as it is: it comes from the
    reader's marks, not from the image); ``masks``: [N, H, W] where each lesion is. Per lesion:
    ``drop`` = fall of the true class's probability, ``change`` = total-variation distance of the
    probability vectors (0..1); ``input_change_lesion`` / ``_control``: each perturbation's size at the
    network input after the model's attention weighting (``_input_change``): an attention model sees the
    pasted control attenuated by (G + alpha) where G is small, so compare each arm with its own
    randomised-weights null, not raw across arms. Lesions with no room elsewhere are skipped
    (``n_occluded`` counts).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n_phases = x.shape[1] - 1
    les_x, ctl_x, kept = [], [], []
    for i in range(len(x)):
        m = np.asarray(masks[i], bool)
        shift = _elsewhere(m, rng) if m.any() else None
        if shift is None:
            continue
        att = x[i, n_phases:]
        les_x.append(torch.cat([_occlude(x[i, :n_phases], m), att]))
        ctl_x.append(torch.cat([_paste(x[i, :n_phases], m, shift), att]))
        kept.append(i)
    if not kept:
        return {"n_occluded": 0}
    kept = np.asarray(kept)
    p0 = _proba(model, temperature, x[kept])
    pl = _proba(model, temperature, torch.stack(les_x))
    pc = _proba(model, temperature, torch.stack(ctl_x))
    rows = np.arange(len(kept))
    mag_l, mag_c = _input_change(model, x[kept], torch.stack(les_x)), _input_change(model, x[kept], torch.stack(ctl_x))
    return {"lesion_ids_index": kept.tolist(),
            "input_change_lesion": mag_l.tolist(), "input_change_control": mag_c.tolist(),
            "drop_lesion": (p0[rows, labels[kept]] - pl[rows, labels[kept]]).tolist(),
            "drop_control": (p0[rows, labels[kept]] - pc[rows, labels[kept]]).tolist(),
            "change_lesion": (0.5 * np.abs(p0 - pl).sum(1)).tolist(),
            "change_control": (0.5 * np.abs(p0 - pc).sum(1)).tolist(),
            "n_occluded": int(len(kept))}


def focus_study(model, temperature, ds, seed: int = 0, n_random: int = 3) -> dict:
    """Focus score of the trained network and of ``n_random`` re-initialised copies (mean), and the
    occlusion test with its pasted-elsewhere control, on ``ds``. CAMs are of each lesion's predicted
    class; ``ds.masks`` says where each lesion is (phantom truth on the ROI plane)."""
    x, labels = dataset_tensor(ds), ds.labels
    trained = focus_scores(grad_cam(model, x, GRADCAM_LAYER), ds.masks)
    control = np.nanmean([focus_scores(grad_cam(randomised_copy(model, seed + k), x, GRADCAM_LAYER), ds.masks)
                          for k in range(n_random)], axis=0) if n_random else np.full(len(x), np.nan)
    occ = occlusion_test(model, temperature, x, labels, ds.masks, seed)
    out = {"cam_class": "predicted",
           "focus_trained_mean": float(np.nanmean(trained)), "focus_trained": trained.tolist(),
           "focus_random_mean": float(np.nanmean(control)) if n_random else None,
           "focus_random": control.tolist() if n_random else None, "n_occluded": occ["n_occluded"],
           "synthetic": True}
    for key in ("drop_lesion", "drop_control", "change_lesion", "change_control", "input_change_lesion",
                "input_change_control"):
        out[f"occlusion_{key}_mean"] = float(np.mean(occ[key])) if occ["n_occluded"] else None
    out["occlusion"] = occ
    return out
