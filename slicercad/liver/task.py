"""The ``liver_lesion`` engine task: samples from a manifest or the SYNTHETIC phantom, network, spec.

Samples are [P + 1, H, W]: the 8 normalised phase ROIs and the lesion's Gaussian map (from the
mask when the manifest gives one, else centre + diameter). Without a manifest the task trains on
the phantom (``n_lesions`` from ``data_seed``), and the model card says synthetic.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from ..engine.tasks import SampleSet, TaskSpec, classification_loss, register_task
from ..errors import ImageIOError
from .dataset import NORMALISATION, build_dataset, lesion_sample
from .classes import preset_classes
from .model import ATTENTION_CHANNEL, GRADCAM_LAYER, LiverLesionNet
from .phases import PHASES, check_phases
from .roi import Lesion, RoiSpec

TASK_NAME = "liver_lesion"
DEFAULT_CONFIG = {"classes": "report", "alpha": 0.1, "channels": [16, 32, 64], "dropout": 0.2, "roi_px": 64,
                  "n_lesions": 300, "data_seed": 0, "split": "train", "use_masks": True,
                  "reader_offsets": True}
VALID_RANGES = {"field_strength_t": [1.5, 3.0], "b_value": [500.0, 1000.0], "in_plane_spacing_mm": [0.5, 4.0],
                "diameter_mm": [3.0, 40.0]}


def build_model(cfg: dict) -> LiverLesionNet:
    return LiverLesionNet(len(PHASES), len(preset_classes(cfg["classes"])), tuple(cfg["channels"]),
                          cfg["alpha"], cfg["dropout"])


def _read(path, src):
    try:
        return sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot read image ({exc})", src) from exc


def _from_manifest(cfg, manifest, classes, spec):
    xs, groups, ids, labels = [], [], [], []
    for case in manifest.cases:
        check_phases(case.images, PHASES, case.case_id)
        images = {p: _read(case.images[p], f"{case.case_id}:{p}") for p in PHASES}
        for les in case.lesions:
            lesion = Lesion(les.lesion_id, tuple(les.center), les.diameter_mm, les.coordinate_system)
            mask = _read(les.mask, les.lesion_id) if (les.mask and cfg["use_masks"]) else None
            x, G, _, _ = lesion_sample(images, lesion, PHASES, spec, mask)
            xs.append(np.concatenate([x, G[None]]))
            labels.append(classes.index(les.label))
            groups.append(case.patient)
            ids.append(les.lesion_id)
    return np.stack(xs), np.asarray(labels), groups, ids


def make_dataset(cfg: dict, manifest=None) -> SampleSet:
    """SampleSet of [P+1, H, W] samples (see module doc); groups are patients."""
    classes = preset_classes(cfg["classes"])
    spec = RoiSpec(size_px=int(cfg["roi_px"]))
    if manifest is not None:
        x, y, groups, ids = _from_manifest(cfg, manifest, list(classes), spec)
    else:
        from ..synth.liver_lesions_phantom import generate_lesions

        items = generate_lesions(int(cfg["n_lesions"]), int(cfg["data_seed"]), cfg["split"], classes)
        ds = build_dataset(items, classes, PHASES, spec, cfg["use_masks"], cfg["reader_offsets"], cfg["data_seed"])
        x = np.concatenate([ds.x, ds.attention[:, None]], axis=1)
        y, groups, ids = ds.labels, ds.patient_ids, ds.lesion_ids
    return SampleSet(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(np.asarray(y, np.int64)), groups, ids)


def input_spec(cfg: dict) -> dict:
    n = int(cfg["roi_px"])
    return {"phases": list(PHASES) + [ATTENTION_CHANNEL], "roi_px": [n, n],
            "spacing_mm": "field of view max(3 x diameter, 48 mm) over roi_px pixels",
            "normalisation": NORMALISATION, "alpha": cfg["alpha"], "gradcam_layer": GRADCAM_LAYER,
            "reference_phase": "hepatobiliary", "valid_ranges": VALID_RANGES}


def _register(name: str, preset: str, description: str) -> TaskSpec:
    """Register the liver task for one class preset (same network, data and input spec)."""
    return register_task(TaskSpec(
        name=name, kind="classification", build_model=build_model, make_dataset=make_dataset,
        make_loss=classification_loss, input_spec=input_spec, classes=preset_classes(preset),
        default_config={**DEFAULT_CONFIG, "classes": preset}, needs_manifest=False, description=description))


LIVER_LESION = _register(TASK_NAME, "report",
                         "liver lesion cyst/hemangioma/metastasis on 8-phase EOB-MRI ROIs with Gaussian attention "
                         "(trains on the SYNTHETIC phantom without a manifest)")
LIVER_LESION_EXTENDED = _register(TASK_NAME + "_extended", "extended",
                                  "liver lesion cyst/hemangioma/metastasis/HCC/FNH (extended preset; SYNTHETIC "
                                  "phantom by default)")


def model_card(cfg: dict, temperature: float, name: str, metrics: dict, synthetic: bool = True,
               training: dict | None = None) -> dict:
    """A model card for a ``LiverLesionNet`` built with ``cfg`` (for ``engine.registry.save_model``)."""
    full = LIVER_LESION.config({k: v for k, v in cfg.items() if k != "classes"}) | {"classes": cfg.get("classes", "report")}
    task = LIVER_LESION if full["classes"] == "report" else LIVER_LESION_EXTENDED
    return {"name": name, "task": task.name, "kind": task.kind, "model_config": full,
            "input_spec": input_spec(full), "classes": list(preset_classes(full["classes"])),
            "training_data": {"synthetic": bool(synthetic), **(training or {})}, "metrics": metrics,
            "temperature": float(temperature)}
