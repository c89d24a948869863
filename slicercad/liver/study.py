"""Seed 000's questions, measured on the SYNTHETIC phantom: size-bin table, alpha study, Grad-CAM focus.

Every sample comes from ``dataset.lesion_sample`` with attention from the ROI centre + measured
diameter (the product's input); the mask mode is a separate table.

- Table 1: per size bin (<10, 10-20, >=20 mm) precision/recall per class, accuracy beside the
  majority baseline and balanced accuracy, bootstrap CIs over patients (engine
  ``evaluate_classification(groups=patients)``).
- Attention study (``alpha_study``): no attention vs alpha in {0, 0.1, 0.5, 1.0}, >= 5 training
  seeds. For EVERY arm (no attention included): balanced accuracy, Grad-CAM focus score and the
  occlusion test. Each arm is compared with alpha = 0.1 by a paired patient-cluster bootstrap
  (the same resampled test patients and training seeds for both arms) and the p-values are
  Holm-corrected over the comparisons of one measure.
- Focus score: CAM mass inside the lesion / lesion area fraction (1 = no preference; the
  normalisation matters because G*I + alpha*I dims the surroundings), also for the network with
  re-initialised (random) weights.
- Occlusion: the change of the prediction when the lesion's pixels are replaced by the median of
  the surroundings, against a control of the same magnitude elsewhere: the lesion's own pixels
  pasted at another position of the ROI (away from the lesion). ``occlusion_test`` on an oracle
  that reads only lesion pixels shows the control can come out either way (Testing).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

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
                intensity_augmentation: bool = True, dropout: float = 0.2, on_epoch=None):
    """``train_network`` also returning {history: per-epoch validation balanced accuracy and loss,
    n_train, n_val}; ``intensity_augmentation=False`` keeps only the flips/rotations of ``_augment``;
    ``on_epoch(epoch, loss=mean training loss, **validation scores)`` after each epoch (progress)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = dataset_tensor(ds), torch.as_tensor(ds.labels)
    parts = train_val_test_split(ds.patient_ids, val_fraction=val_fraction, seed=seed)
    tr, va = np.asarray(parts["train"]), np.asarray(parts["val"])
    counts = torch.bincount(y[tr], minlength=len(ds.classes)).float().clamp_min(1)
    loss_fn = classification_loss(counts.sum() / (len(counts) * counts))
    model = LiverLesionNet(len(ds.phases), len(ds.classes), tuple(channels), alpha, dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, epochs * -(-len(tr) // batch_size)))
    aug = {"n_phases": model.n_phases, "quantitative": {k for k, p in enumerate(ds.phases) if p in QUANTITATIVE}}
    if not intensity_augmentation:
        aug.update(gamma_sd=0.0, noise_max=0.0, shift_px=0)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        losses = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(model(_augment(x[idx], gen, **aug)), y[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if len(va):
            history.append({"epoch": epoch, **_validation_score(model, x[va], y[va])})
        if on_epoch is not None:
            on_epoch(epoch, loss=float(np.mean(losses)) if losses else None,
                     **{k: v for k, v in (history[-1] if len(va) else {}).items() if k != "epoch"})
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
                                  seed=seed, groups=ds.patient_ids)
    out["synthetic"] = True
    return out


def _acc(proba, labels):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    pred = proba.argmax(1)
    return float(accuracy_score(labels, pred)), float(balanced_accuracy_score(labels, pred))


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


def occlusion_test(model, temperature, x: torch.Tensor, labels, masks, seed: int = 0) -> dict:
    """Prediction change when each lesion is occluded vs the control (its pixels pasted elsewhere).

    ``x``: [N, P+1, H, W] model inputs (the attention channel is left as it is: it comes from the
    reader's marks, not from the image); ``masks``: [N, H, W] where each lesion is. Per lesion:
    ``drop`` = fall of the true class's probability, ``change`` = total-variation distance of the
    probability vectors (0..1). Lesions with no room elsewhere are skipped (``n_occluded`` counts).
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
    return {"lesion_ids_index": kept.tolist(),
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
    for key in ("drop_lesion", "drop_control", "change_lesion", "change_control"):
        out[f"occlusion_{key}_mean"] = float(np.mean(occ[key])) if occ["n_occluded"] else None
    out["occlusion"] = occ
    return out


# ----------------------------------------------------------------------------------- comparisons
def _weighted_balanced_accuracy(weights: np.ndarray, correct: np.ndarray, labels: np.ndarray, n_classes) -> np.ndarray:
    """Balanced accuracy under each row of case ``weights`` [B, N]."""
    recalls = []
    for c in range(n_classes):
        sel = labels == c
        if not sel.any():
            continue
        w = weights[:, sel]
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((w * correct[sel]).sum(1) / w.sum(1))
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.vstack(recalls), axis=0)


def _weighted_mean(weights, values) -> np.ndarray:
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights[:, ok] * v[ok]).sum(1) / weights[:, ok].sum(1)


def paired_cluster_bootstrap(arm: dict, ref: dict, labels, groups, n_classes: int, n_boot: int = 2000,
                             seed: int = 0) -> dict:
    """Arm minus reference, paired: the same resampled test patients (cluster bootstrap over
    ``groups``) and the same resampled training seeds for both arms.

    ``arm`` / ``ref``: {"pred": [S, N] predicted class per seed, "focus": [S, N], "change_lesion": [S, N],
    "change_control": [S, N]} (NaN where undefined). Returns per measure the observed mean
    difference, its 95 % percentile interval and a two-sided bootstrap p-value
    ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))`` (with +1 smoothing)."""
    from ..engine.metrics import bootstrap_weights, percentile_ci

    labels = np.asarray(labels)
    n_seeds = np.asarray(arm["pred"]).shape[0]
    rng = np.random.default_rng(seed)
    W = bootstrap_weights(len(labels), groups, n_boot, rng)                     # [B, N]
    seed_draw = rng.integers(0, n_seeds, size=(n_boot, n_seeds))                # [B, S]
    ones = np.ones((1, len(labels)))

    def values(block, measure):
        if measure == "occlusion_excess":     # lesion-occlusion change minus control change
            return np.asarray(block["change_lesion"], float) - np.asarray(block["change_control"], float)
        return np.asarray(block[measure], float)

    def per_seed(block, measure, weights):                                      # [B, S]
        if measure == "balanced_accuracy":
            pred = np.asarray(block["pred"])
            return np.stack([_weighted_balanced_accuracy(weights, pred[s] == labels, labels, n_classes)
                             for s in range(n_seeds)], 1)
        v = values(block, measure)
        return np.stack([_weighted_mean(weights, v[s]) for s in range(n_seeds)], 1)

    result = {}
    for measure in ("balanced_accuracy", "focus", "occlusion_excess"):
        need = ("pred",) if measure == "balanced_accuracy" else (
            ("focus",) if measure == "focus" else ("change_lesion", "change_control"))
        if not all(k in arm and k in ref for k in need):
            continue
        obs = float(np.mean(per_seed(arm, measure, ones) - per_seed(ref, measure, ones)))
        diff = np.take_along_axis(per_seed(arm, measure, W) - per_seed(ref, measure, W), seed_draw, axis=1).mean(1)
        diff = diff[np.isfinite(diff)]
        p = min(1.0, 2.0 * min((np.sum(diff <= 0) + 1) / (len(diff) + 1), (np.sum(diff >= 0) + 1) / (len(diff) + 1)))
        result[measure] = {"mean_difference": obs, "ci95": percentile_ci(diff), "p_bootstrap": float(p)}
    result.update(n_boot=int(n_boot), resampling="test patients (cluster) x training seeds, paired across arms")
    return result


def holm(pvalues: dict) -> dict:
    """Holm-Bonferroni adjusted p-values (step-down, monotone) of {name: p}."""
    names = sorted(pvalues, key=lambda k: pvalues[k])
    m, running, out = len(names), 0.0, {}
    for i, name in enumerate(names):
        running = max(running, min(1.0, (m - i) * pvalues[name]))
        out[name] = running
    return out


def alpha_study(train_ds, test_ds, alphas=ALPHAS, seeds=(0, 1, 2, 3, 4), reference=0.1, n_boot: int = 2000,
                with_focus: bool = True, **train_kw) -> dict:
    """Every arm (``alphas``; None = no attention) trained with every seed on ``train_ds`` and scored on
    ``test_ds``: accuracy, balanced accuracy, focus score and occlusion per seed; each arm against
    ``reference`` by ``paired_cluster_bootstrap``, Holm-corrected per measure over the arms."""
    rows, blocks = {}, {}
    x_test = dataset_tensor(test_ds)
    for a in alphas:
        key = "none" if a is None else f"{a:g}"
        accs, baccs, preds, foci, ch_l, ch_c = [], [], [], [], [], []
        for s in seeds:
            model, t = train_network(train_ds, a, s, **train_kw)
            proba = predict_proba(model, t, test_ds)
            acc, bacc = _acc(proba, test_ds.labels)
            accs.append(acc)
            baccs.append(bacc)
            preds.append(proba.argmax(1))
            if with_focus:
                foci.append(focus_scores(grad_cam(model, x_test, GRADCAM_LAYER), test_ds.masks))
                occ = occlusion_test(model, t, x_test, test_ds.labels, test_ds.masks, seed=0)
                cl, cc = np.full(len(x_test), np.nan), np.full(len(x_test), np.nan)
                if occ["n_occluded"]:
                    cl[occ["lesion_ids_index"]] = occ["change_lesion"]
                    cc[occ["lesion_ids_index"]] = occ["change_control"]
                ch_l.append(cl)
                ch_c.append(cc)
        row = {"alpha": a, "accuracy": accs, "balanced_accuracy": baccs,
               "accuracy_mean": float(np.mean(accs)), "balanced_accuracy_mean": float(np.mean(baccs))}
        block = {"pred": np.stack(preds)}
        if with_focus:
            block.update(focus=np.stack(foci), change_lesion=np.stack(ch_l), change_control=np.stack(ch_c))
            row.update(focus_mean=float(np.nanmean(block["focus"])),
                       occlusion_change_lesion_mean=float(np.nanmean(block["change_lesion"])),
                       occlusion_change_control_mean=float(np.nanmean(block["change_control"])))
        rows[key], blocks[key] = row, block
    ref = "none" if reference is None else f"{reference:g}"
    comparisons = {k: paired_cluster_bootstrap(blocks[k], blocks[ref], test_ds.labels, test_ds.patient_ids,
                                               len(test_ds.classes), n_boot, seed=0)
                   for k in rows if k != ref} if len(seeds) > 1 else {}
    measures = sorted({m for c in comparisons.values() for m in c if isinstance(c[m], dict)})
    for m in measures:
        adjusted = holm({k: c[m]["p_bootstrap"] for k, c in comparisons.items() if m in c})
        for k, p in adjusted.items():
            comparisons[k][m]["p_holm"] = p
    for k, c in comparisons.items():
        rows[k]["vs_" + ref] = c
    return {"rows": rows, "seeds": list(seeds), "reference": ref, "n_test": int(len(test_ds.labels)),
            "n_test_patients": int(len(set(test_ds.patient_ids))), "correction": "Holm, per measure over arms",
            "test": "paired patient-cluster bootstrap (test patients x training seeds)", "synthetic": True,
            "attention_source": getattr(test_ds, "attention_source", "diameter")}
