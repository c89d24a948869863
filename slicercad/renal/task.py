"""Engine tasks of RenalMassCAD (registered on import; names in ``engine/task_modules.py``).

- ``renal_mass_phase``: one per-phase CNN (``RenalSliceNet``, 1 channel) on ROI slices of the config's ``phase``;
- ``renal_mass_multiphase``: the multi-phase CNN (4 channels, the phases at one slice offset);
- ``renal_mass_bundle``: what the product serves -- the 4 per-phase CNNs and the multi-phase CNN in one
  safetensors file (``RenalModelSet``); the card holds the combined logistic model, the image-only logistic
  model (used when age or sex is missing) and each model's Youden cut-off.
Samples of the first two come from the SYNTHETIC phantom through ``dataset.mass_sample`` (every slice of a mass
is a sample, grouped by patient); the engine trains them with the recipe of ``study.train_slices``'s defaults.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..engine.tasks import SampleSet, TaskSpec, classification_loss, register_task
from .constants import CLASSES, HU_WINDOW, PHASES, SIZE_LIMIT_MM
from .dataset import N_SLICES, ROI_SPEC, SLICE_STEP
from .model import GRADCAM_LAYER, RenalSliceNet
from .study import MODELS, RECIPE, model_input

DEFAULT_CONFIG = {"phase": "corticomedullary", "channels": [16, 32, 64], "dropout": 0.2, "n_patients": 120,
                  "data_seed": 1}


class RenalModelSet(nn.Module):
    """The 4 per-phase CNNs and the multi-phase CNN (keys: phase names and 'multiphase')."""

    def __init__(self, channels=(16, 32, 64), dropout=0.2):
        super().__init__()
        self.nets = nn.ModuleDict({m: RenalSliceNet(4 if m == "multiphase" else 1, tuple(channels), dropout)
                                   for m in MODELS})

    def forward(self, x):  # x: [N, 4, H, W] -> multi-phase logits (the per-phase nets are called by name)
        return self.nets["multiphase"](x)


def input_spec(cfg=None) -> dict:
    return {"phases": list(PHASES), "roi_px": [ROI_SPEC.size_px, ROI_SPEC.size_px],
            "spacing_mm": f"field of view max({ROI_SPEC.fov_factor:g} x diameter, {ROI_SPEC.min_fov_mm:g} mm) over "
                          f"{ROI_SPEC.size_px} px", "n_slices": N_SLICES, "slice_step_diameters": SLICE_STEP,
            "normalisation": f"HU clipped to {list(HU_WINDOW)} and mapped to [0, 1]", "gradcam_layer": GRADCAM_LAYER,
            "valid_ranges": {"diameter_mm": [5.0, SIZE_LIMIT_MM]}}


def _phantom_samples(cfg, which) -> SampleSet:
    from .dataset import build_dataset
    from .phantom import generate_cases

    ds = build_dataset(generate_cases(int(cfg["n_patients"]), int(cfg["data_seed"])))
    x = model_input(ds.x, which)
    s = ds.x.shape[2]
    groups = np.repeat(ds.patient_ids, s).tolist()
    ids = [f"{m}_s{k}" for m in ds.mass_ids for k in range(s)]
    return SampleSet(torch.from_numpy(x), torch.from_numpy(np.repeat(ds.labels, s).astype(np.int64)), groups, ids)


_ENGINE_RECIPE = {k: RECIPE[k] for k in ("epochs", "batch_size", "lr", "weight_decay")}

RENAL_MASS_PHASE = register_task(TaskSpec(
    name="renal_mass_phase", kind="classification",
    build_model=lambda cfg: RenalSliceNet(1, tuple(cfg["channels"]), float(cfg["dropout"])),
    make_dataset=lambda cfg, manifest=None: _phantom_samples(cfg, cfg["phase"]), make_loss=classification_loss,
    input_spec=lambda cfg: {**input_spec(cfg), "phases": [cfg["phase"]]}, classes=CLASSES,
    default_config=DEFAULT_CONFIG, needs_manifest=False, recipe=_ENGINE_RECIPE,
    description="renal mass benign/malignant, one CT phase's ROI slices (SYNTHETIC phantom by default)"))
RENAL_MASS_MULTIPHASE = register_task(TaskSpec(
    name="renal_mass_multiphase", kind="classification",
    build_model=lambda cfg: RenalSliceNet(4, tuple(cfg["channels"]), float(cfg["dropout"])),
    make_dataset=lambda cfg, manifest=None: _phantom_samples(cfg, "multiphase"), make_loss=classification_loss,
    input_spec=input_spec, classes=CLASSES, default_config=DEFAULT_CONFIG, needs_manifest=False,
    recipe=_ENGINE_RECIPE,
    description="renal mass benign/malignant, 4-phase ROI slices in one CNN (SYNTHETIC phantom by default)"))
RENAL_MASS_BUNDLE = register_task(TaskSpec(
    name="renal_mass_bundle", kind="classification",
    build_model=lambda cfg: RenalModelSet(tuple(cfg["channels"]), float(cfg["dropout"])),
    make_dataset=lambda cfg, manifest=None: _phantom_samples(cfg, "multiphase"), make_loss=classification_loss,
    input_spec=input_spec, classes=CLASSES, default_config=DEFAULT_CONFIG, needs_manifest=False,
    description="renal mass product bundle: 4 per-phase CNNs + multi-phase CNN; logistic models on the card "
                "(build with slicercad.renal.bundle.build_bundle)"))
