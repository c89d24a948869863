"""AnomalyCT engine tasks: detectors trained on normal images only, on the one sample path (``preprocess``).

Tasks (kind ``likelihood``: trained on normals, output = anomaly score per case, higher = more anomalous):
  anomaly_glow_head3d  3D Glow on head CT (2 windows, HEAD_GRID_SIZE at 5 mm)
  anomaly_glow_cxr2d   2D Glow on chest X-ray (1 channel, cxr.CXR_SIZE on the lung frame)
  anomaly_gan_head3d / anomaly_gan_cxr2d   f-AnoGAN on the same samples
Without a manifest they train on SYNTHETIC normal phantoms; with one, every case's first image is a normal
study (labels ignored). The task's ``fit`` splits off the engine's validation patients, trains, then
**calibrates on those held-out normals**: voxel-wise map mean / std, the case-score quantiles (for the
percentile the panel shows) of bits/dim, its complexity variant and the map score (top 1 % mean of the
standardised map, ``baselines.top_fraction_mean``), and the case-level map threshold (95th percentile of the
normals' map maxima);
the map-based references are leave-one-out (each normal standardised by the others). All kept in the
weights' buffers so any trained model carries them. Training budget: STEP_BUDGET optimiser steps
(``epochs_for_steps``) for the bundled models, the reproduction and ``slicercad anomaly train``.

Memory budget (3D head, CPU, batch 1 when scoring): the input volume float32 + the mask's working copies on the
tissue box (about 10 B per input voxel; see README for measured peaks), the model grid 2 x 32 x 44 x 36 = 101,376 dims; Glow activations
for one case < 100 MB; training batch 8 < 1 GB.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..engine.splits import train_val_test_split
from ..engine.tasks import SampleSet, TaskSpec, register_task
from ..errors import InputError
from . import cxr, preprocess as pp
from .gan import AnomalyGAN, train_gan
from .baselines import top_fraction_mean
from .reference import shrunk_std, standardise, voxel_stats
from .scoring import N_REF, AnomalyGlow, complexity_bpd

HEAD, CXR = "head_ct", "cxr"
GRID = {HEAD: tuple(pp.HEAD_GRID_SIZE[::-1]), CXR: tuple(cxr.CXR_SIZE)}      # (k j i) / (rows, cols)
CHANNELS = {HEAD: pp.HEAD_CHANNELS, CXR: cxr.CXR_CHANNELS}
DIMS = {HEAD: 3, CXR: 2}
RECIPE = {"epochs": 12, "batch_size": 8, "lr": 1e-3, "val_fraction": 0.25}
STEP_BUDGET = 400                    # optimiser steps: bundled models, the reproduction, `anomaly train`
GLOW_DEFAULT = {"levels": 2, "steps": 4, "hidden": 24, "positional_prior": 1, "n_normals": 96, "data_seed": 0,
                "model_seed": 0}
GAN_DEFAULT = {"z_dim": 16, "ch": 8, "n_normals": 96, "data_seed": 0, "model_seed": 0}
# the sample path's version on every card; a card of another version is refused
SAMPLE_PATH = {HEAD: "head_ct/3: template-registered 5 mm grid, clipped voxels inpainted, two-sided maps, "
                     "case-level map threshold",
               CXR: "cxr/3: lung-frame (similarity) 116 x 128 grid, outside air unscored, clipped pixels kept, "
                    "two-sided maps, case-level map threshold"}
MAP_THRESHOLD_PCT = 95.0       # of the held-out normals' map maxima (case-level)


def sample_of(image, kind: str, source="image") -> pp.Sample:
    """The product's one sample path for ``kind`` (head_ct or cxr)."""
    if kind == HEAD:
        return pp.head_ct_sample(image, source)
    if kind == CXR:
        return cxr.cxr_sample(image, source)
    raise InputError(f"unknown anomaly input kind {kind!r}; known {(HEAD, CXR)}", "kind")


def phantom(kind: str, seed: int, variant: str | None = None):
    """One SYNTHETIC normal phantom of ``kind`` (``image``, ``patient_id``, ...)."""
    if kind == HEAD:
        from ..synth.anomaly_head import normal_head
        return normal_head(seed, variant)
    from ..synth.anomaly_cxr import normal_cxr
    return normal_cxr(seed, variant)


@functools.lru_cache(maxsize=32)
def phantom_normal(kind: str, seed: int, variant: str | None = None):
    """(stacked sample, patient id) of one SYNTHETIC normal."""
    ph = phantom(kind, seed, variant)
    return sample_of(ph.image, kind, ph.patient_id).stacked(), ph.patient_id


def normals_dataset(kind: str, n: int, seed: int, offset: int = 0) -> SampleSet:
    rows = [phantom_normal(kind, seed * 100_000 + offset + i) for i in range(n)]
    x = torch.from_numpy(np.stack([r[0] for r in rows]))
    return SampleSet(x, torch.zeros(len(rows)), [r[1] for r in rows], [r[1] for r in rows])


def _manifest_dataset(kind, manifest) -> SampleSet:
    from ..imageio import read_image
    rows = []
    for case in manifest.cases:
        path = next(iter(case.images.values()))
        rows.append((sample_of(read_image(path), kind, f"{case.case_id}").stacked(), case.patient))
    if not rows:
        raise InputError("the manifest holds no case", "manifest")
    x = torch.from_numpy(np.stack([r[0] for r in rows]))
    return SampleSet(x, torch.zeros(len(rows)), [r[1] for r in rows])


def _seeded(make, seed: int):
    """``make()`` with torch's global RNG seeded by ``seed`` for the layers' default initialisation (torch seeds it
    from the OS at start-up: unseeded, the reproduction's Glow differed run to run), the caller's RNG state kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_glow(kind):
    def build(cfg):
        return _seeded(lambda: AnomalyGlow(len(CHANNELS[kind]), DIMS[kind], GRID[kind], int(cfg["levels"]),
                                           int(cfg["steps"]), int(cfg["hidden"]), int(cfg["model_seed"]),
                                           bool(cfg.get("positional_prior", 1))), int(cfg["model_seed"]))
    return build


def build_gan(kind):
    def build(cfg):
        return _seeded(lambda: AnomalyGAN(len(CHANNELS[kind]), DIMS[kind], GRID[kind], int(cfg["z_dim"]),
                                          int(cfg["ch"])), int(cfg["model_seed"]))
    return build


def per_sample_loss(class_weights=None):
    """The models' forward already gives the per-sample loss (bits/dim, or the f-AnoGAN score)."""
    return lambda out, target: out


def input_spec_of(kind):
    def spec(cfg):
        out = {"phases": list(CHANNELS[kind]), "roi_px": list(GRID[kind]), "kind": kind, "valid_ranges": {},
               "sample_path": SAMPLE_PATH[kind]}
        if kind == HEAD:
            out.update(spacing_mm=[pp.HEAD_SPACING_MM] * 3, grid_xyz=list(pp.HEAD_GRID_SIZE),
                       grid="on the canonical head: the intracranial mask registered to the template "
                            "(normalise.py); spacing in canonical mm",
                       normalisation=f"brain window L/W {pp.BRAIN_WINDOW}, subdural window {pp.SUBDURAL_WINDOW} HU "
                                     "-> [0, 1]; intracranial mask to the inner table; extracranial -> "
                                     f"{pp.NEUTRAL_HU} HU before resampling", units="HU",
                       valid_ranges={"icv_ml": list(pp.ICV_RANGE_ML), "max_spacing_mm": [0.0, pp.MAX_SPACING_MM]})
        else:
            out.update(spacing_mm=f"{cxr.CXR_SIZE[0]} x {cxr.CXR_SIZE[1]} px on the lung frame (u +-"
                       f"{cxr.GRID_HALF_WIDTH} D, v {cxr.GRID_V_RANGE} D; D = distance of the lungs' upper-half "
                       "centroids)", normalisation=f"lung-field median -> {cxr.LUNG_LEVEL}, soft tissue median -> "
                       f"{cxr.SOFT_LEVEL}", units="detector values, MONOCHROME2 convention",
                       valid_ranges={"rotation_deg": [-cxr.MAX_ROTATION_DEG, cxr.MAX_ROTATION_DEG],
                                     "lung_distance_mm": list(cxr.ADULT_LUNG_DISTANCE_MM)})
        return out
    return spec


# --------------------------------------------------------------------------- training + calibration
def epochs_for_steps(n: int, batch_size: int, steps: int) -> int:
    """Epochs giving at least ``steps`` optimiser steps on ``n`` cases (the recipe's budget is in steps: a few
    dozen normals at 8 a batch are only a handful of steps an epoch)."""
    return max(1, math.ceil(steps / max(1, math.ceil(n / batch_size))))


def train_glow(model: AnomalyGlow, x: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int,
               report=None) -> list:
    """Maximum likelihood (mean bits/dim) with fresh dequantisation / background noise each step."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.glow.initialise(model_input(x[:min(len(x), 32)], gen))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    steps = max(1, math.ceil(len(x) / batch_size)) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), batch_size):
            loss = model(x[perm[s:s + batch_size]], gen).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
            opt.step()
            sched.step()
            total += loss.item() * len(perm[s:s + batch_size])
        history.append({"epoch": epoch, "train_bpd": total / len(x)})
        if report:
            report(epoch, loss=total / len(x))
    model.eval()
    return history


def model_input(x, gen):
    from .scoring import prepare
    return prepare(x, gen)[0]


@torch.no_grad()
def raw_scores(model, x: torch.Tensor, batch_size: int = 8) -> dict:
    """{'score', 'variant', 'map_score', 'map' (standardised), 'raw_map' (N, C', *grid: Glow bits/dim C' = 1,
    GAN signed residual per channel)} per case, batched (numpy)."""
    model.eval()
    out = {"score": [], "variant": [], "map": [], "raw_map": []}
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        r = model.score(xb)
        if isinstance(model, AnomalyGlow):
            sc = r["bpd"].numpy()
            raw = torch.nan_to_num(r["voxel_bpd"], nan=0.0)[:, None].numpy()
            var = sc - np.array([complexity_bpd(v) for v in xb.numpy()])
        else:
            sc = r["score"].numpy()
            raw = model.residuals(xb)[1].numpy()
            var = sc
        out["score"].append(sc)
        out["variant"].append(var)
        out["map"].append(r["map"].numpy())
        out["raw_map"].append(raw)
    out = {k: np.concatenate(v) for k, v in out.items()}
    out["map_score"] = top_fraction_mean(out["map"], x[:, -1].numpy() > 0.5)
    return out


def leave_one_out_maps(raw: np.ndarray, floor: float, prior: dict) -> np.ndarray:
    """Each held-out normal's (N, C', *grid) raw map standardised by the *other* normals' voxel mean / std
    (shrunk as in ``reference.voxel_stats``, with its ``prior``), two-sided and smoothed like ``model.score``
    (``reference.standardise``): reference scores not biased low by a standardisation they took part in."""
    valid = ~np.isnan(raw)
    v = np.nan_to_num(raw)
    n, s1, s2 = valid.sum(0), v.sum(0), (v ** 2).sum(0)
    out = np.zeros((len(v),) + v.shape[2:], np.float32)
    for i in range(len(v)):
        c = n - valid[i]
        mean = np.where(c > 0, (s1 - v[i]) / np.maximum(c, 1), prior["mean"])
        var = np.where(c > 0, np.maximum((s2 - v[i] ** 2) / np.maximum(c, 1) - mean ** 2, 0.0), 0.0)
        std = np.maximum(np.where(c > 0, shrunk_std(var, c, prior["var"]), np.sqrt(prior["var"])), floor)
        out[i] = standardise(v[i:i + 1], mean, std, valid[i:i + 1, 0])[0]
    return out


@torch.no_grad()
def held_out_reference(model, x_val: torch.Tensor, set_stats: bool = True) -> dict:
    """Scores of held-out normals for reference quantiles / thresholds: 'score' and 'variant' as scored,
    'map_score' and 'map' leave-one-out (``leave_one_out_maps``). With ``set_stats`` the model's map mean /
    std buffers are set from ``x_val`` first (calibration)."""
    if len(x_val) < 2:
        raise InputError("calibration needs at least 2 held-out normal cases", "val_fraction")
    r = raw_scores(model, x_val)
    mask = x_val[:, -1].numpy() > 0.5
    raw = np.where(mask[:, None], r["raw_map"], np.nan)
    mean, std, floor, prior = voxel_stats(raw)
    if set_stats:
        model.map_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        model.map_std.copy_(torch.from_numpy(np.maximum(std, floor).astype(np.float32)))
    loo = leave_one_out_maps(raw, floor, prior)
    return {"score": r["score"], "variant": r["variant"], "map": loo, "mask": mask,
            "map_score": top_fraction_mean(loo, mask)}


@torch.no_grad()
def calibrate(model, x_val: torch.Tensor) -> dict:
    """Set the held-out-normal buffers (map mean/std, score quantiles, map threshold) from ``x_val``. The map
    threshold is case-level: the MAP_THRESHOLD_PCT percentile of the normals' (leave-one-out) map maxima, so
    that share of normal cases has no voxel above it (a voxel-level percentile flags ~1 % of every case)."""
    r = held_out_reference(model, x_val)
    levels = np.linspace(0, 100, N_REF)
    for buf, key in (("ref_scores", "score"), ("ref_variant", "variant"), ("ref_map", "map_score")):
        getattr(model, buf).copy_(torch.from_numpy(np.percentile(r[key], levels).astype(np.float32)))
    thr = float(np.percentile([m[k].max() for m, k in zip(r["map"], r["mask"])], MAP_THRESHOLD_PCT))
    model.map_threshold.fill_(thr)
    return {"n_val": int(len(x_val)), "map_threshold": thr, "val_score_median": float(np.median(r["score"]))}


def fit_detector(model, x_train, x_val, epochs, batch_size, lr, seed, report=None) -> dict:
    if isinstance(model, AnomalyGlow):
        history = train_glow(model, x_train, epochs, batch_size, lr, seed, report)
    else:
        torch.manual_seed(seed)
        history = train_gan(model, x_train, epochs, batch_size, lr * 0.5, seed, report)
    model.eval()
    return {"history": history, **calibrate(model, x_val)}


def _register(name, kind, family):
    default = dict(GLOW_DEFAULT if family == "glow" else GAN_DEFAULT)
    build = build_glow(kind) if family == "glow" else build_gan(kind)

    def make_dataset(cfg, manifest=None):
        if manifest is not None:
            return _manifest_dataset(kind, manifest)
        return normals_dataset(kind, int(cfg["n_normals"]), int(cfg["data_seed"]))

    def fit(data, cfg, train_config, report=None):
        parts = train_val_test_split(data.groups, train_config.val_fraction, 0.0, train_config.seed)
        model = build(cfg)
        info = fit_detector(model, data.x[torch.as_tensor(parts["train"])], data.x[torch.as_tensor(parts["val"])],
                            train_config.epochs, train_config.batch_size, train_config.lr, train_config.seed,
                            report)
        info["recipe"] = dict(RECIPE)
        return model, 1.0, info

    return register_task(TaskSpec(
        name=name, kind="likelihood", build_model=build, make_dataset=make_dataset, make_loss=per_sample_loss,
        input_spec=input_spec_of(kind), classes=("normal", "anomalous"), default_config=default,
        needs_manifest=False, recipe=dict(RECIPE), fit=fit,
        description=f"{family} anomaly detector on {kind} trained on normals only (SYNTHETIC phantom without a "
                    "manifest)"))


TASKS = {"anomaly_glow_head3d": (HEAD, "glow"), "anomaly_glow_cxr2d": (CXR, "glow"),
         "anomaly_gan_head3d": (HEAD, "gan"), "anomaly_gan_cxr2d": (CXR, "gan")}
for _name, (_kind, _family) in TASKS.items():
    _register(_name, _kind, _family)


def task_for(kind: str, family: str) -> str:
    for name, (k, f) in TASKS.items():
        if k == kind and f == family:
            return name
    raise InputError(f"no task for {kind} / {family}", "task")
