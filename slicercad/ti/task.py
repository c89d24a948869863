"""Engine tasks ``ti_offset`` (six closed 20 ms bins, trained within ±60 ms of the null, as in the
report) and ``ti_offset_open`` (plus '<-60' and '>+60', trained on frames out to ±150 ms: a separate,
separately reported model). Without a manifest both train on the SYNTHETIC phantom through the one
sample path (``features.frame_input``). Display-style augmentation (window clipping, gamma, blur,
noise, shifts, left-right flips; config ``augment``) is off in the recipe: on held-out phantom frames it
cost accuracy (0.47 -> 0.43 at 200 patients) without a consistent gain on simulated monitor photos
(README "CardiacTICorrector")."""
from __future__ import annotations

import numpy as np
import torch

from ..engine.tasks import SampleSet, TaskSpec, classification_loss, register_task
from . import constants as C
from .features import frame_input
from .model import TINet
from .phantom import make_scout

DEFAULT_CONFIG = {"channels": [8, 16, 32], "dropout": 0.2, "input_px": C.CNN_INPUT_PX, "n_patients": 300,
                  "frames_per_patient": 8, "data_seed": 1, "augment": False, "open_bins": False}
# The one training recipe of both TI tasks (``TaskSpec.recipe``: ``slicercad train``, ``make ti-model`` and
# ``make reproduce-ti`` all train with it; the data size is DEFAULT_CONFIG's n_patients x frames_per_patient).
RECIPE = {"epochs": 14, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "val_fraction": 0.15, "patience": 14}
OPEN_RANGE_MS = (-150.0, 150.0)


def offset_class(offset_ms, open_bins: bool = False) -> np.ndarray:
    """Category index of each offset (frame TI - null): closed bins clip to the extreme classes."""
    off = np.asarray(offset_ms, float)
    inner = np.clip(np.digitize(off, C.OFFSET_BIN_EDGES_MS[1:-1]), 0, len(C.OFFSET_CLASSES) - 1)
    if not open_bins:
        return inner
    return np.where(off < C.TRAINED_RANGE_MS[0], 0, np.where(off > C.TRAINED_RANGE_MS[1], len(C.OPEN_CLASSES) - 1,
                                                             inner + 1))


def augment(x: np.ndarray, rng) -> np.ndarray:
    """Display/photo-like changes of a normalised [H, W] input."""
    from scipy import ndimage

    sat = rng.uniform(0.65, 1.05)
    x = np.minimum(x, sat) / sat
    x = np.clip(x, 0, None) ** rng.uniform(0.75, 1.35)
    if rng.random() < 0.6:
        x = ndimage.gaussian_filter(x, rng.uniform(0.3, 1.2))
    x = x * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.1) + rng.normal(0, rng.uniform(0, 0.04), x.shape)
    x = np.roll(x, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
    if rng.random() < 0.5:
        x = x[:, ::-1]
    return np.clip(x, 0, 1.5).astype(np.float32)


def phantom_samples(cfg: dict, manifest=None) -> SampleSet:
    rng = np.random.default_rng(cfg["data_seed"])
    lo, hi = OPEN_RANGE_MS if cfg["open_bins"] else C.TRAINED_RANGE_MS
    xs, ys, groups, ids = [], [], [], []
    for i in range(cfg["n_patients"]):
        seed = int(cfg["data_seed"]) * 1_000_003 + i
        offsets = rng.uniform(lo, hi, cfg["frames_per_patient"])
        ph = make_scout(seed, field_strength_t=float(rng.choice(C.FIELD_STRENGTHS_T)), ti_offsets_ms=offsets,
                        patient_id=f"T{cfg['data_seed']}-{i:05d}")
        for j, frame in enumerate(ph.frames):
            x = frame_input(frame, cfg["input_px"])
            xs.append(augment(x, rng) if cfg["augment"] else x)
            ys.append(int(offset_class(ph.ti_ms[j] - ph.myo_null_ms, cfg["open_bins"])))
            groups.append(ph.patient_id)
            ids.append(f"{ph.patient_id}-{j}")
    x = torch.from_numpy(np.stack(xs)[:, None].copy())
    return SampleSet(x, torch.tensor(ys, dtype=torch.int64), groups, ids)


def build_model(cfg: dict) -> TINet:
    n = len(C.OPEN_CLASSES if cfg["open_bins"] else C.OFFSET_CLASSES)
    return TINet(n, tuple(cfg["channels"]), cfg["dropout"])


def input_spec(cfg: dict) -> dict:
    return {"phases": ["ti_scout_frame"], "roi_px": [cfg["input_px"], cfg["input_px"]], "spacing_mm": None,
            "normalisation": f"central {C.CNN_CROP_FRACTION:g} of the frame (each direction) resized to "
                             f"{cfg['input_px']} px, / {C.CNN_NORM_PERCENTILE}th percentile, clipped to [0, 1.5] "
                             "(features.frame_input)",
            "crop_fraction": C.CNN_CROP_FRACTION,
            "valid_ranges": {"field_strength_t": [1.5, 3.0]},
            "vendors": ["SYNTHETIC phantom only"],
            "offset_bin_edges_ms": list(C.OFFSET_BIN_EDGES_MS),
            "trained_range_ms": list(OPEN_RANGE_MS if cfg["open_bins"] else C.TRAINED_RANGE_MS)}


TI_OFFSET = register_task(TaskSpec(
    name="ti_offset", kind="frame_classification", build_model=build_model, make_dataset=phantom_samples,
    make_loss=classification_loss, input_spec=input_spec, classes=C.OFFSET_CLASSES,
    default_config=DEFAULT_CONFIG, needs_manifest=False, recipe=RECIPE,
    description="TI-scout frame -> TI offset from the myocardial null, 6 bins of 20 ms within ±60 ms (SYNTHETIC)"))
TI_OFFSET_OPEN = register_task(TaskSpec(
    name="ti_offset_open", kind="frame_classification", build_model=build_model, make_dataset=phantom_samples,
    make_loss=classification_loss, input_spec=input_spec, classes=C.OPEN_CLASSES,
    default_config={**DEFAULT_CONFIG, "open_bins": True}, needs_manifest=False, recipe=RECIPE,
    description="TI offset with open-ended '<-60' / '>+60' bins, trained out to ±150 ms (SYNTHETIC)"))


def task_for(open_bins: bool) -> TaskSpec:
    return TI_OFFSET_OPEN if open_bins else TI_OFFSET
