"""The ``weak_lesion`` engine task: a MONAI 3D U-Net on the canonical crop (``crop``), trained on the
SYNTHETIC lesion phantom (or a manifest with masks) with black/white inversion and gamma augmentation.

Samples: [3, N, N, N] (image, +clicks, -clicks) and the true mask on the crop [1, N, N, N]. Each lesion
gives ``crops_per_lesion`` crops with the rough label a report gives: centre moved by up to
``max_offset`` x the diameter, diameter scaled by up to +-``size_jitter``. A ``click_fraction`` of the
crops carries simulated correction clicks (positive inside, negative just outside the lesion).
Augmentation on the fly (training and validation alike): gamma, inversion (``invert``), flips.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from scipy import ndimage
from torch.utils.data import Dataset

from ..engine.tasks import TaskSpec, register_task
from ..errors import ImageIOError, InputError
from .crop import (CHANNELS, MAX_OFFSET, SIZE_JITTER, CropSpec, NORMALISATION, assemble, augment_intensity,
                   canonical_crop, resample_onto)

TASK_NAME = "weak_lesion"
DEFAULT_CONFIG = {"channels": [16, 32, 64], "strides": [2, 2], "num_res_units": 0, "crop_px": 32,
                  "fov_factor": 2.5, "types": ["lung_ct", "liver_mri"], "n_lesions": 100, "data_seed": 1,
                  "crops_per_lesion": 2, "invert": True, "click_fraction": 0.3, "max_offset": MAX_OFFSET,
                  "size_jitter": SIZE_JITTER, "init_weights": None}
HARD_LIMITS_MM = (3.0, 60.0)     # prompts the crop geometry handles at all (outside: refused)
_MEASURED: dict = {}             # config key -> training lesions' diameters (mm), set by make_dataset


def _config_key(cfg: dict) -> str:
    import json

    return json.dumps(cfg, sort_keys=True, default=str)


def trained_diameter_range(cfg: dict) -> list:
    """The prompt diameters (mm) a model of ``cfg`` was trained on: its training lesions' smallest and
    largest diameter (measured by ``make_dataset``; before that the phantom's nominal range) widened by
    the training size jitter, d x (1 -+ ``size_jitter``)."""
    from ..synth.weak_lesions import DIAMETER_RANGE_MM

    measured = _MEASURED.get(_config_key(cfg))
    lo, hi = (min(measured), max(measured)) if measured else DIAMETER_RANGE_MM
    j = float(cfg["size_jitter"])
    return [round(float(lo) * (1 - j), 2), round(float(hi) * (1 + j), 2)]


def build_model(cfg: dict) -> UNet:
    """The U-Net of ``cfg``; with ``init_weights`` ({"path", "sha256"}: fine-tuning) it starts from them."""
    model = UNet(spatial_dims=3, in_channels=len(CHANNELS), out_channels=1, channels=tuple(cfg["channels"]),
                 strides=tuple(cfg["strides"]), num_res_units=int(cfg["num_res_units"]))
    if cfg.get("init_weights"):
        load_init_weights(model, cfg["init_weights"])
    return model


def load_init_weights(model, init: dict) -> None:
    """Load the starting weights of a fine-tuning run (safetensors, checked against their sha256)."""
    from safetensors.torch import load_file

    from ..engine.registry import sha256_file
    from ..errors import ModelError

    if not isinstance(init, dict) or not init.get("path") or not init.get("sha256"):
        raise InputError(f"init_weights must be {{'path': ..., 'sha256': ...}}, got {init!r}", "init_weights")
    path = Path(init["path"])
    if not path.is_file():
        raise ModelError("the starting weights of this fine-tuned model are missing (they lie in its run "
                         "folder, beside model/); restore the run folder or fine-tune again", path)
    if sha256_file(path) != init["sha256"]:
        raise ModelError("sha256 of the starting weights does not match init_weights: the file was replaced", path)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise ModelError(f"the starting weights do not fit this U-Net ({exc}); fine-tune from a model with "
                         "the same channels", path) from exc


def spec_of(cfg: dict) -> CropSpec:
    return CropSpec(int(cfg["crop_px"]), float(cfg["fov_factor"]))


def jitter(rng, center, diameter, max_offset=MAX_OFFSET, size_jitter=SIZE_JITTER):
    """A report-like rough centre and size: offset uniform in a ball of max_offset x d, size x U(1 +- j)."""
    v = rng.normal(size=3)
    v /= np.linalg.norm(v)
    offset = v * diameter * max_offset * rng.random() ** (1 / 3)
    return np.asarray(center) + offset, float(diameter * (1 + rng.uniform(-size_jitter, size_jitter)))


def _clicks(rng, mask_crop: np.ndarray, grid: sitk.Image) -> tuple:
    """One positive click deep-ish inside the lesion and/or one negative click in a shell outside it."""
    pos, neg = [], []
    inner = ndimage.binary_erosion(mask_crop, iterations=1)
    outer = ndimage.binary_dilation(mask_crop, iterations=4) & ~ndimage.binary_dilation(mask_crop, iterations=1)
    for region, out in ((inner, pos), (outer, neg)):
        idx = np.argwhere(region)
        if len(idx) and rng.random() < 0.7:
            k, j, i = idx[rng.integers(len(idx))]
            out.append(grid.TransformContinuousIndexToPhysicalPoint([float(i), float(j), float(k)]))
    return pos, neg


def lesion_samples(image, mask, center, diameter, spec, rng, n_crops, click_fraction, max_offset, size_jitter):
    """Training crops of one lesion through :func:`canonical_crop` (the product's sample path)."""
    out = []
    for _ in range(n_crops):
        c, d = jitter(rng, center, diameter, max_offset, size_jitter)
        crop = canonical_crop(image, c, d, spec)
        y = (resample_onto(mask, crop.grid, True, 0.0) >= 0.5).astype(np.uint8)
        pos, neg = ([], [])
        if rng.random() < click_fraction:
            pos, neg = _clicks(rng, y, crop.grid)
        if pos or neg:
            crop = canonical_crop(image, c, d, spec, pos, neg)
        out.append((crop.x01, crop.x[1], crop.x[2], y))
    return out


class WeakSampleSet(Dataset):
    """Crops with on-the-fly gamma / inversion / flip augmentation (torch's seeded RNG drives it)."""

    def __init__(self, x01, pos, neg, y, groups, ids, invert=True, augment=True):
        self.x01, self.pos, self.neg, self.y = x01, pos, neg, y
        self.groups = [str(g) for g in groups]
        self.ids = [str(i) for i in ids]
        self.invert, self.augment = bool(invert), bool(augment)

    def __len__(self):
        return len(self.x01)

    def __getitem__(self, i):
        x01, pos, neg, y = self.x01[i], self.pos[i].astype(np.float32), self.neg[i].astype(np.float32), self.y[i]
        if self.augment:
            rng = np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (1,))))
            x01 = augment_intensity(x01, rng, self.invert)
            flips = tuple(a for a in range(3) if rng.random() < 0.5)
            if flips:
                x01, pos, neg, y = (np.flip(a, flips) for a in (x01, pos, neg, y))
        x = assemble(np.ascontiguousarray(x01), np.ascontiguousarray(pos), np.ascontiguousarray(neg))
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)[None])


@functools.lru_cache(maxsize=16)
def phantom_lesions(lesion_type: str, n: int, seed: int) -> tuple:
    from ..synth.weak_lesions import generate_weak_lesions

    return tuple(generate_weak_lesions(n, seed, lesion_type))


@functools.lru_cache(maxsize=16)
def _phantom_crops(lesion_type, n, seed, crop_px, fov, n_crops, click_fraction, max_offset, size_jitter):
    spec = CropSpec(crop_px, fov)
    rng = np.random.default_rng([seed, 7, crop_px])
    rows = []
    for les in phantom_lesions(lesion_type, n, seed):
        for s in lesion_samples(les.image, les.mask, les.center_lps, les.diameter_mm, spec, rng, n_crops,
                                click_fraction, max_offset, size_jitter):
            rows.append((s, les.patient_id, les.lesion_id))
    return tuple(rows)


def _read(path, src, pixel=sitk.sitkFloat32):
    try:
        return sitk.ReadImage(str(path), pixel)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot read image ({exc})", src) from exc


def _manifest_rows(cfg, manifest, spec):
    from ..geometry import to_lps

    rng = np.random.default_rng([cfg["data_seed"], 11])
    rows = []
    for case in manifest.cases:
        phase = next(iter(case.images))
        image = _read(case.images[phase], f"{case.case_id}:{phase}")
        for les in case.lesions:
            if not les.mask:
                raise InputError("the weak_lesion task trains on lesions with a mask", les.lesion_id)
            mask = _read(les.mask, les.lesion_id, sitk.sitkUInt8)
            center = to_lps(les.center, les.coordinate_system)
            for s in lesion_samples(image, mask, center, les.diameter_mm, spec, rng, cfg["crops_per_lesion"],
                                    cfg["click_fraction"], cfg["max_offset"], cfg["size_jitter"]):
                rows.append((s, case.patient, les.lesion_id))
    return rows


def make_dataset(cfg: dict, manifest=None) -> WeakSampleSet:
    spec = spec_of(cfg)
    if manifest is not None:
        rows = _manifest_rows(cfg, manifest, spec)
        diameters = [float(les.diameter_mm) for case in manifest.cases for les in case.lesions]
    else:
        from ..synth.weak_lesions import TYPES

        bad = [t for t in cfg["types"] if t not in TYPES]
        if bad:
            raise InputError(f"unknown lesion type(s) {bad}; known {list(TYPES)}", "types")
        rows = []
        diameters = [les.diameter_mm for t in cfg["types"]
                     for les in phantom_lesions(t, int(cfg["n_lesions"]), int(cfg["data_seed"]))]
        for t in cfg["types"]:
            rows += _phantom_crops(t, int(cfg["n_lesions"]), int(cfg["data_seed"]), spec.size_px, spec.fov_factor,
                                   int(cfg["crops_per_lesion"]), float(cfg["click_fraction"]),
                                   float(cfg["max_offset"]), float(cfg["size_jitter"]))
    if not rows:
        raise InputError("no training lesions", "weak_lesion")
    _MEASURED[_config_key(cfg)] = diameters
    x01, pos, neg, y = (np.stack([r[0][k] for r in rows]) for k in range(4))
    return WeakSampleSet(x01, pos.astype(np.float16), neg.astype(np.float16), y, [r[1] for r in rows],
                         [f"{r[2]}#{i}" for i, r in enumerate(rows)], invert=cfg["invert"])


def dice_bce_loss(class_weights=None):
    """Per-sample soft Dice + binary cross-entropy on the crop (``class_weights`` unused)."""
    def loss(logits, target):
        logits = logits.float()
        p = torch.sigmoid(logits).flatten(1)
        t = target.float().flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        return dice + F.binary_cross_entropy_with_logits(logits.flatten(1), t, reduction="none").mean(1)
    return loss


def input_spec(cfg: dict) -> dict:
    n = int(cfg["crop_px"])
    return {"phases": list(CHANNELS), "roi_px": [n, n, n], "fov_factor": float(cfg["fov_factor"]),
            "spacing_mm": f"isotropic, {cfg['fov_factor']} x diameter / {n}", "normalisation": NORMALISATION,
            "valid_ranges": {"diameter_mm": trained_diameter_range(cfg)}, "hard_limits_mm": list(HARD_LIMITS_MM),
            "threshold": 0.5}


WEAK_LESION = register_task(TaskSpec(
    name=TASK_NAME, kind="segmentation", build_model=build_model, make_dataset=make_dataset,
    make_loss=dice_bce_loss, input_spec=input_spec, classes=("background", "lesion"),
    default_config=DEFAULT_CONFIG, needs_manifest=False,
    description="semi-automatic lesion segmentation from a centre + diameter (3D U-Net on a lesion-sized "
                "canonical crop; trains on the SYNTHETIC phantom without a manifest)"))


def model_card(cfg: dict, name: str, metrics: dict, synthetic: bool = True, training: dict | None = None) -> dict:
    full = WEAK_LESION.config(cfg)
    return {"name": name, "task": TASK_NAME, "kind": "segmentation", "model_config": full,
            "input_spec": input_spec(full), "classes": list(WEAK_LESION.classes),
            "training_data": {"synthetic": bool(synthetic), **(training or {})}, "metrics": metrics,
            "temperature": 1.0}
