"""Seed 000's questions, measured on the SYNTHETIC phantom: size-bin table, alpha study, Grad-CAM focus.

Every sample comes from ``dataset.lesion_sample`` with attention from the ROI centre + measured
diameter (the product's input); the mask mode is a separate table.

- Table 1: per size bin (<10, 10-20, >=20 mm) precision/recall per class, accuracy beside the
  majority baseline and balanced accuracy, bootstrap CIs over patients (engine
  ``evaluate_classification(groups=patients)``).
- Attention study (``alpha_study``): no attention vs alpha in {0, 0.1, 0.5, 1.0}, >= 5 training
  seeds, each trained with the task's recipe (``recipe_trainer``). For EVERY arm (no attention
  included): balanced accuracy, Grad-CAM focus score and the occlusion test, each also for the
  arm's OWN randomised-weights null (the same model, attention included, re-initialised). Raw
  focus and occlusion are confounded by the attention itself (G*I + alpha*I dims the surroundings,
  which concentrates any CAM on the lesion, and attenuates a control pasted where G is small), so
  arms are compared on the excess over their own null. Each arm is compared with alpha = 0.1 by a
  paired patient-cluster bootstrap (the same resampled test patients and training seeds for both
  arms); p-values Holm-corrected per measure over the arms, and over all arms x measures.
- Focus score: CAM mass inside the lesion / lesion area fraction (1 = no preference). The area
  normalisation does NOT remove attention's dimming (a dimmed surround carries less CAM mass
  whatever the weights): hence the randomised-weights null per arm.
- Occlusion: the change of the prediction when the lesion's pixels are replaced by the median of
  the surroundings, against a control of the same magnitude in the image: the lesion's own pixels
  pasted at another position of the ROI (away from the lesion). The control's size where the
  network sees it, after the (G + alpha) weighting, is reported per arm (``input_change_*``): an
  attention arm sees it attenuated. ``occlusion_test`` on an oracle that reads only lesion pixels
  shows the control can come out either way (Testing).
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


def _translate(img: torch.Tensor, dr: int, dc: int) -> torch.Tensor:
    """[H, W] moved by (dr, dc) pixels, edges replicated (no wrap-around)."""
    if dr == 0 and dc == 0:
        return img
    h, w = img.shape
    pad = max(abs(dr), abs(dc))
    big = torch.nn.functional.pad(img[None, None], (pad, pad, pad, pad), mode="replicate")[0, 0]
    return big[pad - dr:pad - dr + h, pad - dc:pad - dc + w]


def _augment(x: torch.Tensor, gen: torch.Generator, n_phases: int, quantitative, gamma_sd: float = 0.15,
             noise_max: float = 0.05, shift_px: int = 1, breath_hold_px=None, breath_hold_p: float = 0.0,
             shift_groups=()) -> torch.Tensor:
    """Training augmentation of a batch [N, P+1, H, W]: ``n_phases`` phase channels (indices in
    ``quantitative`` hold quantitative maps such as ADC), then the attention map.

    Geometry (all channels): a random flip and rotation by a multiple of 90 degrees within the slice.
    Breath-hold shift (``breath_hold_p`` > 0): with that probability per sample, each group of phase
    channels in ``shift_groups`` (one acquisition each: DWI and ADC together; the reference phase in
    none, it is where the lesion is marked) is translated in-plane by a random direction and a
    magnitude uniform in [0, ``breath_hold_px[i]``] pixels (sample i's maximum breath-hold shift in
    its ROI pixels), edges replicated: what a phase looks like when the reader gives no per-phase
    offset (zero-offset serving). The attention map is not moved (it comes from the mark).
    Per phase channel and sample: a random shift of up to ``shift_px`` pixels (residual breath-hold
    misregistration after the reader's nudge) and, for the non-quantitative phases, a gamma
    ``x ** exp(N(0, gamma_sd))`` on the parenchyma-normalised image -- a change of lesion-to-liver
    log-contrast such as field strength (T1 relaxation) or b-value (DWI contrast ~ exp(-b dADC)) brings;
    then Gaussian noise of a random sigma up to ``noise_max`` (parenchyma = 1), i.e. lower SNR.
    """
    n, p = x.shape[0], n_phases
    x = x.clone()
    if breath_hold_p > 0 and breath_hold_px is not None and len(shift_groups):
        use = torch.rand(n, generator=gen) < breath_hold_p
        for i in range(n):
            if not use[i]:
                continue
            for group in shift_groups:
                r = float(breath_hold_px[i]) * float(torch.rand(1, generator=gen))
                phi = 2 * np.pi * float(torch.rand(1, generator=gen))
                dr, dc = int(round(r * np.sin(phi))), int(round(r * np.cos(phi)))
                for k in group:
                    x[i, k] = _translate(x[i, k], dr, dc)
    if torch.rand(1, generator=gen) < 0.5:
        x = torch.flip(x, dims=[-1])
    x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=gen)), dims=[-2, -1]).clone()
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


def shift_groups(phases) -> list:
    """Channel groups that share one breath-hold shift: every phase on its own, DWI with ADC (one
    acquisition), the reference (hepatobiliary) phase in none."""
    from .phases import REFERENCE_PHASE

    groups, done = [], set()
    for k, ph in enumerate(phases):
        if ph == REFERENCE_PHASE or k in done:
            continue
        group = [k] + ([phases.index("ADC")] if ph == "DWI" and "ADC" in phases else [])
        if ph == "ADC" and "DWI" in phases:
            continue
        groups.append(group)
        done.update(group)
    return groups


def roi_mm_per_px(ds, spec=None) -> np.ndarray:
    """[N] ROI pixel size (mm) of each sample: stored by ``build_dataset`` (``roi_spacings_mm``), else
    from the diameters and ``spec``, else the finest the default spec gives (min_fov / size_px)."""
    from .roi import RoiSpec

    stored = getattr(ds, "roi_spacings_mm", None)
    if stored is not None:
        return np.asarray(stored, float)
    spec = spec or RoiSpec(size_px=int(np.asarray(ds.x).shape[-1]))
    d = getattr(ds, "diameters_mm", None)
    if d is not None:
        return np.array([spec.field_of_view(v) / spec.size_px for v in d], float)
    return np.full(len(ds.labels), spec.field_of_view(0.0) / spec.size_px)


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
                intensity_augmentation: bool = True, dropout: float = 0.2, on_epoch=None,
                breath_hold_shift_mm: float = 0.0, breath_hold_shift_p: float = 0.0):
    """``train_network`` also returning {history: per-epoch validation balanced accuracy and loss,
    n_train, n_val}; ``intensity_augmentation=False`` keeps only the flips/rotations of ``_augment``;
    ``on_epoch(epoch, loss=mean training loss, **validation scores)`` after each epoch (progress);
    ``breath_hold_shift_mm`` / ``_p``: the breath-hold shift augmentation of ``_augment`` (maximum in-plane
    shift in mm, probability per sample; 0 = off)."""
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
    if breath_hold_shift_p > 0 and breath_hold_shift_mm > 0:
        aug.update(breath_hold_px=breath_hold_shift_mm / roi_mm_per_px(ds), breath_hold_p=float(breath_hold_shift_p),
                   shift_groups=shift_groups(list(ds.phases)))
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        losses = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            a = dict(aug, breath_hold_px=aug["breath_hold_px"][idx]) if "breath_hold_px" in aug else aug
            loss = loss_fn(model(_augment(x[idx], gen, **a)), y[idx]).mean()
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


def deterministic_torch(threads: int = 1) -> None:
    """``threads`` intra-op threads (threadpoolctl caps BLAS pools already started) and deterministic
    algorithms: bit-identical trainings on every machine (as ``make liver-model``)."""
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))
    except ImportError:   # optional: torch's own setting above is what the trainings use
        pass


def recipe_trainer(channels=(16, 32, 64), dropout: float = 0.2, **overrides):
    """``trainer(ds, alpha, seed) -> (model, temperature)`` training with the task's recipe
    (``task.train_with_recipe``: ``RECIPE``; ``overrides`` e.g. ``epochs`` for a short run)."""
    from .task import LIVER_LESION, train_with_recipe

    def trainer(ds, alpha, seed):
        cfg = LIVER_LESION.config({"alpha": alpha, "channels": list(channels), "dropout": float(dropout)})
        model, temperature, _ = train_with_recipe(ds, cfg, seed, **overrides)
        return model, temperature

    return trainer


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
                             seed: int = 0, measures=("balanced_accuracy", "focus", "occlusion_excess",
                                                      "focus_over_null", "occlusion_over_null")) -> dict:
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

    def needs(measure):
        if measure == "balanced_accuracy":
            return ("pred",)
        return ("change_lesion", "change_control") if measure == "occlusion_excess" else (measure,)

    def per_seed(block, measure, weights):                                      # [B, S]
        if measure == "balanced_accuracy":
            pred = np.asarray(block["pred"])
            return np.stack([_weighted_balanced_accuracy(weights, pred[s] == labels, labels, n_classes)
                             for s in range(n_seeds)], 1)
        v = values(block, measure)
        return np.stack([_weighted_mean(weights, v[s]) for s in range(n_seeds)], 1)

    result = {}
    for measure in measures:
        need = needs(measure)
        if not all(k in arm and k in ref for k in need):
            continue
        seeds = per_seed(arm, measure, ones) - per_seed(ref, measure, ones)      # NaN: a seed with no defined value
        obs = float(np.nanmean(seeds)) if np.isfinite(seeds).any() else float("nan")
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


def _arm_scores(model, t, x_test, test_ds, null_seed: int) -> dict:
    """Per-lesion focus and occlusion of one trained model and of its own randomised-weights null (same
    architecture and attention setting, re-initialised weights)."""
    n = len(x_test)
    out = {}
    for tag, m in (("", model), ("_null", randomised_copy(model, null_seed))):
        out["focus" + tag] = focus_scores(grad_cam(m, x_test, GRADCAM_LAYER), test_ds.masks)
        occ = occlusion_test(m, t, x_test, test_ds.labels, test_ds.masks, seed=0)
        for key in ("change_lesion", "change_control", "input_change_lesion", "input_change_control"):
            v = np.full(n, np.nan)
            if occ["n_occluded"]:
                v[occ["lesion_ids_index"]] = occ[key]
            out[key + tag] = v
    out["focus_over_null"] = out["focus"] - out["focus_null"]
    out["occlusion_over_null"] = ((out["change_lesion"] - out["change_control"])
                                  - (out["change_lesion_null"] - out["change_control_null"]))
    return out


MEASURES = ("balanced_accuracy", "focus_over_null", "occlusion_over_null")


def alpha_study(train_ds, test_ds, alphas=ALPHAS, seeds=(0, 1, 2, 3, 4), reference=0.1, n_boot: int = 2000,
                with_focus: bool = True, trainer=None, progress=None, models: dict | None = None,
                **train_kw) -> dict:
    """Every arm (``alphas``; None = no attention) trained with every seed on ``train_ds`` and scored on
    ``test_ds``: accuracy, balanced accuracy, focus score and occlusion per seed, each also for the
    arm's OWN randomised-weights null (the same model re-initialised: attention arms attenuate the
    pasted control and dim the surroundings by design, so raw focus / occlusion are not comparable
    across arms; the excess over the own null is). Between arms (each against ``reference``, by
    ``paired_cluster_bootstrap``): balanced accuracy, focus excess over null, occlusion excess over
    null; Holm-corrected per measure over the arms (``p_holm``) and over all arms x measures
    (``p_holm_all``). ``trainer(ds, alpha, seed) -> (model, temperature)`` (default ``train_network``
    with ``train_kw``; ``recipe_trainer()`` trains with the task's recipe); ``progress(text)`` after
    each training; ``models``: filled with {(arm, seed): (model, temperature)}."""
    import time

    if trainer is None:
        trainer = lambda ds, a, s: train_network(ds, a, s, **train_kw)   # noqa: E731
    rows, blocks = {}, {}
    x_test = dataset_tensor(test_ds)
    t_start = time.time()
    score_keys = ("focus", "focus_null", "focus_over_null", "change_lesion", "change_control", "change_lesion_null",
                  "change_control_null", "occlusion_over_null", "input_change_lesion", "input_change_control")
    for a in alphas:
        key = "none" if a is None else f"{a:g}"
        accs, baccs, preds = [], [], []
        scores = {k: [] for k in score_keys}
        for s in seeds:
            t0 = time.time()
            model, t = trainer(train_ds, a, s)
            if models is not None:
                models[(key, s)] = (model, t)
            proba = predict_proba(model, t, test_ds)
            acc, bacc = _acc(proba, test_ds.labels)
            accs.append(acc)
            baccs.append(bacc)
            preds.append(proba.argmax(1))
            if with_focus:
                arm = _arm_scores(model, t, x_test, test_ds, null_seed=1000 + int(s))
                for k in score_keys:
                    scores[k].append(arm[k])
            if progress is not None:
                progress(f"arm {'no attention' if a is None else 'alpha=' + key} seed {s}: trained and scored in "
                         f"{time.time() - t0:.0f} s (elapsed {time.time() - t_start:.0f} s); balanced acc {bacc:.3f}")
        row = {"alpha": a, "accuracy": accs, "balanced_accuracy": baccs,
               "accuracy_mean": float(np.mean(accs)), "balanced_accuracy_mean": float(np.mean(baccs))}
        block = {"pred": np.stack(preds)}
        if with_focus:
            block.update({k: np.stack(v) for k, v in scores.items()})
            row.update(focus_mean=float(np.nanmean(block["focus"])),
                       focus_null_mean=float(np.nanmean(block["focus_null"])),
                       focus_over_null_mean=float(np.nanmean(block["focus_over_null"])),
                       occlusion_change_lesion_mean=float(np.nanmean(block["change_lesion"])),
                       occlusion_change_control_mean=float(np.nanmean(block["change_control"])),
                       occlusion_null_change_lesion_mean=float(np.nanmean(block["change_lesion_null"])),
                       occlusion_null_change_control_mean=float(np.nanmean(block["change_control_null"])),
                       occlusion_over_null_mean=float(np.nanmean(block["occlusion_over_null"])),
                       input_change_lesion_mean=float(np.nanmean(block["input_change_lesion"])),
                       input_change_control_mean=float(np.nanmean(block["input_change_control"])))
        rows[key], blocks[key] = row, block
    ref = "none" if reference is None else f"{reference:g}"
    comparisons = {k: paired_cluster_bootstrap(blocks[k], blocks[ref], test_ds.labels, test_ds.patient_ids,
                                               len(test_ds.classes), n_boot, seed=0, measures=MEASURES)
                   for k in rows if k != ref} if len(seeds) > 1 else {}
    measures = [m for m in MEASURES if any(m in c for c in comparisons.values())]
    for m in measures:
        adjusted = holm({k: c[m]["p_bootstrap"] for k, c in comparisons.items() if m in c})
        for k, p in adjusted.items():
            comparisons[k][m]["p_holm"] = p
    every = holm({(k, m): c[m]["p_bootstrap"] for k, c in comparisons.items() for m in measures if m in c})
    for (k, m), p in every.items():
        comparisons[k][m]["p_holm_all"] = p
    for k, c in comparisons.items():
        rows[k]["vs_" + ref] = c
    return {"rows": rows, "seeds": list(seeds), "reference": ref, "n_test": int(len(test_ds.labels)),
            "n_test_patients": int(len(set(test_ds.patient_ids))), "measures": measures,
            "correction": "Holm per measure over the arms (p_holm); Holm over all arms x measures in p_holm_all",
            "null": "each arm's own randomised-weights copy (same architecture and attention, re-initialised)",
            "test": "paired patient-cluster bootstrap (test patients x training seeds)", "synthetic": True,
            "attention_source": getattr(test_ds, "attention_source", "diameter")}
