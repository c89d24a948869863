"""Fitting the liver lesion network with the task's recipe: network input of a dataset, augmentation
(translation, intensity, breath-hold shifts), training with validation-based selection, temperature
calibration, deterministic torch settings."""
from __future__ import annotations

import numpy as np
import torch

from ..engine.calibration import apply_temperature, fit_temperature
from ..engine.splits import train_val_test_split
from ..engine.tasks import classification_loss
from .dataset import QUANTITATIVE
from .model import LiverLesionNet, model_input



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
