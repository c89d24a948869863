"""Seed 000's questions, measured on the SYNTHETIC phantom: size-bin table, alpha study, Grad-CAM focus.

- Table 1: per size bin (<10, 10-20, >=20 mm) precision/recall per class, accuracy beside the
  majority baseline and balanced accuracy, bootstrap CIs (engine ``evaluate_classification``).
- Alpha study: no attention vs alpha in {0, 0.1, 0.5, 1.0}, several seeds, paired t-test of
  per-seed accuracy / balanced accuracy against alpha = 0.1.
- Focus score: CAM mass inside the lesion / lesion area fraction (1 = no preference; the
  normalisation matters because G*I + alpha*I dims the surroundings), for the trained network
  and for the same network with re-initialised (random) weights; occlusion: drop in the true
  class's probability when the lesion is replaced by parenchyma vs an equal area elsewhere.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from scipy.stats import ttest_rel

from ..engine.calibration import apply_temperature, fit_temperature
from ..engine.gradcam import grad_cam
from ..engine.metrics import evaluate_classification
from ..engine.splits import train_val_test_split
from ..engine.tasks import classification_loss
from .dataset import QUANTITATIVE
from .model import GRADCAM_LAYER, LiverLesionNet, model_input

ALPHAS = (None, 0.0, 0.1, 0.5, 1.0)


def dataset_tensor(ds) -> torch.Tensor:
    """[N, P+1, H, W] network input of a ``RoiDataset``."""
    return model_input(ds.x, ds.attention)


def _augment(x: torch.Tensor, gen: torch.Generator, n_phases: int, quantitative, gamma_sd: float = 0.15,
             noise_max: float = 0.05, shift_px: int = 1) -> torch.Tensor:
    """Training augmentation of a batch [N, P+1, H, W]: ``n_phases`` phase channels (indices in
    ``quantitative`` hold quantitative maps such as ADC), then the attention map.

    Geometry (all channels): a random flip and rotation by a multiple of 90 degrees within the slice.
    Per phase channel and sample: a random shift of up to ``shift_px`` pixels (residual breath-hold
    misregistration after the reader's nudge) and, for the non-quantitative phases, a gamma
    ``x ** exp(N(0, gamma_sd))`` on the parenchyma-normalised image -- a change of lesion-to-liver
    log-contrast such as field strength (T1 relaxation) or b-value (DWI contrast ~ exp(-b dADC)) brings;
    then Gaussian noise of a random sigma up to ``noise_max`` (parenchyma = 1), i.e. lower SNR.
    """
    if torch.rand(1, generator=gen) < 0.5:
        x = torch.flip(x, dims=[-1])
    x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=gen)), dims=[-2, -1]).clone()
    n, p = x.shape[0], n_phases
    shifts = torch.randint(-shift_px, shift_px + 1, (n, p, 2), generator=gen)
    for i in range(n):
        for k in range(p):
            x[i, k] = torch.roll(x[i, k], tuple(int(v) for v in shifts[i, k]), dims=(0, 1))
    qual = torch.tensor([k not in quantitative for k in range(p)])
    gamma = torch.exp(gamma_sd * torch.randn((n, p, 1, 1), generator=gen))
    phases = x[:, :p]
    phases = torch.where(qual[None, :, None, None], phases.clamp_min(0) ** gamma, phases)
    sigma = noise_max * torch.rand((n, 1, 1, 1), generator=gen)
    x[:, :p] = phases + sigma * torch.randn(phases.shape, generator=gen)
    return x


def _validation_score(model, x, y) -> dict:
    """Balanced accuracy and cross-entropy of ``model`` on a validation split."""
    from sklearn.metrics import balanced_accuracy_score

    model.eval()
    with torch.no_grad():
        logits = model(x)
    return {"balanced_accuracy": float(balanced_accuracy_score(y.numpy(), logits.argmax(1).numpy())),
            "nll": float(torch.nn.functional.cross_entropy(logits, y))}


def fit_network(ds, alpha=0.1, seed: int = 0, epochs: int = 15, channels=(16, 32, 64), batch_size: int = 32,
                lr: float = 2e-3, val_fraction: float = 0.2, weight_decay: float = 1e-4,
                intensity_augmentation: bool = True):
    """``train_network`` also returning {history: per-epoch validation balanced accuracy and loss,
    n_train, n_val}; ``intensity_augmentation=False`` keeps only the flips/rotations of ``_augment``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = dataset_tensor(ds), torch.as_tensor(ds.labels)
    parts = train_val_test_split(ds.patient_ids, val_fraction=val_fraction, seed=seed)
    tr, va = np.asarray(parts["train"]), np.asarray(parts["val"])
    counts = torch.bincount(y[tr], minlength=len(ds.classes)).float().clamp_min(1)
    loss_fn = classification_loss(counts.sum() / (len(counts) * counts))
    model = LiverLesionNet(len(ds.phases), len(ds.classes), tuple(channels), alpha)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, epochs * -(-len(tr) // batch_size)))
    aug = {"n_phases": model.n_phases, "quantitative": {k for k, p in enumerate(ds.phases) if p in QUANTITATIVE}}
    if not intensity_augmentation:
        aug.update(gamma_sd=0.0, noise_max=0.0, shift_px=0)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(model(_augment(x[idx], gen, **aug)), y[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if len(va):
            history.append({"epoch": epoch, **_validation_score(model, x[va], y[va])})
    model.eval()
    temperature = 1.0
    if len(va):
        with torch.no_grad():
            temperature = fit_temperature(model(x[va]), y[va])
    return model, temperature, {"history": history, "n_train": int(len(tr)), "n_val": int(len(va))}


def train_network(ds, alpha=0.1, seed: int = 0, epochs: int = 15, channels=(16, 32, 64), batch_size: int = 32,
                  lr: float = 2e-3, val_fraction: float = 0.2, **recipe):
    """Train ``LiverLesionNet`` on a ``RoiDataset`` (patient-level validation split, class-balanced
    loss, AdamW, one-cycle schedule, ``_augment``; ``recipe``: see ``fit_network``); returns (model
    in eval mode, temperature fitted on the validation split)."""
    model, temperature, _ = fit_network(ds, alpha, seed, epochs, channels, batch_size, lr, val_fraction, **recipe)
    return model, temperature


def predict_proba(model, temperature: float, ds) -> np.ndarray:
    """Calibrated class probabilities [N, classes]."""
    with torch.no_grad():
        return apply_temperature(model(dataset_tensor(ds)), temperature).numpy()


def size_bin_table(model, temperature, ds, n_boot: int = 1000, seed: int = 0) -> dict:
    """Engine classification metrics overall and per size bin (<10, 10-20, >=20 mm); synthetic."""
    proba = predict_proba(model, temperature, ds)
    out = evaluate_classification(ds.labels, proba, list(ds.classes), sizes_mm=ds.diameters_mm, n_boot=n_boot,
                                  seed=seed)
    out["synthetic"] = True
    return out


def _acc(proba, labels):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    pred = proba.argmax(1)
    return float(accuracy_score(labels, pred)), float(balanced_accuracy_score(labels, pred))


def alpha_study(train_ds, test_ds, alphas=ALPHAS, seeds=(0, 1, 2), reference=0.1, **train_kw) -> dict:
    """Accuracy and balanced accuracy per alpha and seed, with paired t-tests against ``reference``."""
    rows = {}
    for a in alphas:
        key = "none" if a is None else f"{a:g}"
        accs, baccs = [], []
        for s in seeds:
            model, t = train_network(train_ds, a, s, **train_kw)
            acc, bacc = _acc(predict_proba(model, t, test_ds), test_ds.labels)
            accs.append(acc)
            baccs.append(bacc)
        rows[key] = {"alpha": a, "accuracy": accs, "balanced_accuracy": baccs,
                     "accuracy_mean": float(np.mean(accs)), "balanced_accuracy_mean": float(np.mean(baccs))}
    ref = "none" if reference is None else f"{reference:g}"
    for key, row in rows.items():
        if key != ref and len(seeds) > 1:
            for metric in ("accuracy", "balanced_accuracy"):
                diff = np.subtract(row[metric], rows[ref][metric])
                p = float(ttest_rel(row[metric], rows[ref][metric]).pvalue) if np.any(diff) else 1.0
                row[f"{metric}_vs_{ref}"] = {"mean_difference": float(diff.mean()), "paired_t_p": p}
    return {"rows": rows, "seeds": list(seeds), "reference": ref, "n_test": int(len(test_ds.labels)),
            "synthetic": True}


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


def _occlude(x: torch.Tensor, region: np.ndarray, phases) -> torch.Tensor:
    out = x.clone()
    r = torch.as_tensor(region)
    for k, p in enumerate(phases):
        fill = float(torch.median(x[k][~r])) if p in QUANTITATIVE else 1.0   # normalised parenchyma is ~1
        out[k][r] = fill
    return out


def _elsewhere(mask: np.ndarray, rng) -> np.ndarray:
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    for _ in range(50):
        dr, dc = rng.integers(-h // 2, h // 2), rng.integers(-w // 2, w // 2)
        if rows.min() + dr < 0 or rows.max() + dr >= h or cols.min() + dc < 0 or cols.max() + dc >= w:
            continue
        moved = np.roll(mask, (dr, dc), axis=(0, 1))
        if not (moved & mask).any():
            return moved
    return np.zeros_like(mask)


def focus_study(model, temperature, ds, seed: int = 0, n_random: int = 3) -> dict:
    """Focus score of the trained network and of ``n_random`` re-initialised copies (mean), and the
    occlusion test, on ``ds``. CAMs are of each lesion's predicted class."""
    x, labels = dataset_tensor(ds), ds.labels
    trained = focus_scores(grad_cam(model, x, GRADCAM_LAYER), ds.masks)
    control = np.nanmean([focus_scores(grad_cam(randomised_copy(model, seed + k), x, GRADCAM_LAYER), ds.masks)
                          for k in range(n_random)], axis=0)
    rng = np.random.default_rng(seed)
    n_phases = x.shape[1] - 1
    lesion_x, other_x, kept = [], [], []
    for i in range(len(x)):
        other = _elsewhere(ds.masks[i], rng)
        if not other.any():
            continue
        lesion_x.append(torch.cat([_occlude(x[i, :n_phases], ds.masks[i], ds.phases), x[i, n_phases:]]))
        other_x.append(torch.cat([_occlude(x[i, :n_phases], other, ds.phases), x[i, n_phases:]]))
        kept.append(i)
    with torch.no_grad():
        p0 = apply_temperature(model(x[kept]), temperature).numpy()[np.arange(len(kept)), labels[kept]]
        pl = apply_temperature(model(torch.stack(lesion_x)), temperature).numpy()[np.arange(len(kept)), labels[kept]]
        po = apply_temperature(model(torch.stack(other_x)), temperature).numpy()[np.arange(len(kept)), labels[kept]]
    return {"cam_class": "predicted",
            "focus_trained_mean": float(np.nanmean(trained)), "focus_random_mean": float(np.nanmean(control)),
            "focus_trained": trained.tolist(), "focus_random": control.tolist(),
            "occlusion_drop_lesion_mean": float(np.mean(p0 - pl)),
            "occlusion_drop_surroundings_mean": float(np.mean(p0 - po)), "n_occluded": len(kept),
            "synthetic": True}
