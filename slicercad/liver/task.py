"""The ``liver_lesion`` engine task: samples from a manifest or the SYNTHETIC phantom, network, spec.

Samples are [P + 1, H, W]: the 8 normalised phase ROIs and the lesion's Gaussian map, built by the
one sample path (``dataset.lesion_sample``): attention from centre + measured diameter, as the
product has it (``use_masks=True``: from the manifest's mask, the second mode). Without a manifest the task trains on
the phantom (``n_lesions`` from ``data_seed``), and the model card says synthetic. The engine trains
both tasks with the one recipe (``RECIPE`` / ``train_with_recipe``, through ``TaskSpec.recipe`` and
``TaskSpec.fit``), so ``slicercad train`` and the panel's job train as ``make liver-model`` does.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from ..engine.tasks import SampleSet, TaskSpec, classification_loss, register_task
from ..errors import ImageIOError
from .dataset import NORMALISATION, build_dataset, lesion_sample, max_in_plane_spacing, study_adc_scale
from .guard import CHANNEL_UNITS, channel_features, training_distribution
from .attention import DEFAULT_ALPHA
from .classes import preset_classes
from .model import ATTENTION_CHANNEL, GRADCAM_LAYER, LiverLesionNet
from .phases import PHASES, check_phases
from .roi import ROI_SPEC_KEYS, Lesion, RoiSpec, roi_spec_dict, roi_spec_from_config

TASK_NAME = "liver_lesion"
DEFAULT_CONFIG = {"classes": "report", "alpha": DEFAULT_ALPHA, "channels": [16, 32, 64], "dropout": 0.2,
                  "n_lesions": 400, "data_seed": 1, "split": "train", "use_masks": False,
                  "reader_offsets": True, "roi_px": RoiSpec().size_px,   # the ROI from RoiSpec's defaults, one source
                  **{key: getattr(RoiSpec(), key) for key in ROI_SPEC_KEYS}}
# the ROI field of view (``roi.RoiSpec``) is part of the config and of the card (``input_spec.roi``); training,
# evaluation, serving (``inference``) and the export crop all build their ``RoiSpec`` from it
MAX_DIAMETER_MM = 40.0   # the largest lesion the task supports (VALID_RANGES); the export crop covers its ROI
# Typed fallback for cards without a measured training distribution; cards written here carry the
# ranges measured from their training samples instead (``input_spec``).
VALID_RANGES = {"field_strength_t": [1.5, 3.0], "b_value": [500.0, 1000.0], "in_plane_spacing_mm": [0.5, 4.0],
                "diameter_mm": [3.0, 40.0]}
# acquisition values a manifest row may carry: case ``extra`` and, from the corrected-label export, lesion
# ``provenance.acquisition`` (DICOM-read field strength, DWI b-value, ADC units / Real World Value Mapping)
ACQUISITION_FIELDS = ("field_strength_t", "b_value", "adc_units", "adc_unit_factor", "adc_rwvm_slope",
                      "adc_rwvm_intercept", "adc_kind")
# config key (json) -> training distribution measured by the last ``make_dataset`` with that config, so
# a card written by the engine (``slicercad train``) declares what it was trained on (see input_spec)
_MEASURED: dict = {}


def _config_key(cfg: dict) -> str:
    import json

    return json.dumps({k: v for k, v in sorted(cfg.items())}, sort_keys=True, default=str)


def roi_spec(cfg: dict) -> RoiSpec:
    """The ``RoiSpec`` of a config (``roi_px``, ``fov_mm``, ``fov_factor``, ``min_fov_mm``, ``interpolator``)."""
    return roi_spec_from_config({**DEFAULT_CONFIG, **cfg})


def export_crop_mm(cfg: dict | None = None, diameter_mm: float = MAX_DIAMETER_MM) -> float:
    """Side (mm) of the corrected-label export's crop: the config's ROI field of view for a lesion of
    ``diameter_mm`` (default: the largest supported, 40 mm -> max(3 x 40, 48) = 120 mm)."""
    return roi_spec(cfg or {}).field_of_view(diameter_mm)


def attention_source(cfg: dict) -> str:
    """'mask' when the config asks for mask attention (the second mode), else 'diameter' (the product's)."""
    return "mask" if cfg.get("use_masks") else "diameter"


def build_model(cfg: dict) -> LiverLesionNet:
    return LiverLesionNet(len(PHASES), len(preset_classes(cfg["classes"])), tuple(cfg["channels"]),
                          cfg["alpha"], cfg["dropout"])


def _read(path, src):
    try:
        return sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot read image ({exc})", src) from exc


def _from_manifest(cfg, manifest, classes, spec):
    """Samples of an exported training set through the one sample path (``dataset.lesion_sample``)."""
    xs, groups, ids, labels, feats, acqs, diams, spacings, padded = [], [], [], [], [], [], [], [], []
    for case in manifest.cases:
        check_phases(case.images, PHASES, case.case_id)
        images = {p: _read(case.images[p], f"{case.case_id}:{p}") for p in PHASES}
        extra = case.extra or {}
        for les in case.lesions:
            provenance = les.provenance or {}
            offsets = provenance.get("offsets_mm") or extra.get("offsets_mm", {}).get(les.lesion_id, {})
            acq = {k: v for k, v in {**extra, **provenance.get("acquisition", {})}.items() if k in ACQUISITION_FIELDS}
            lesion = Lesion(les.lesion_id, tuple(les.center), les.diameter_mm, les.coordinate_system, dict(offsets))
            mask = _read(les.mask, les.lesion_id) if (les.mask and cfg["use_masks"]) else None
            x, G, _, rois = lesion_sample(images, lesion, PHASES, spec, mask, adc=study_adc_scale(images, acq))
            if rois.padded:
                padded.append(f"{les.lesion_id} ({', '.join(p for p, f in rois.outside_fraction.items() if f > 0)})")
            xs.append(np.concatenate([x, G[None]]))
            feats.append(channel_features(x))
            labels.append(classes.index(les.label))
            groups.append(case.patient)
            ids.append(les.lesion_id)
            acqs.append(acq)
            diams.append(les.diameter_mm)
            spacings.append(max_in_plane_spacing(images))
    if padded:   # the ROI ran off an exported crop: edge-extrapolated pixels the served ROI would not have
        import warnings

        warnings.warn(f"{len(padded)} training lesion ROI(s) run off their exported crop (padded by edge "
                      f"extrapolation; export with a larger crop, e.g. {export_crop_mm(cfg):g} mm): "
                      + "; ".join(padded[:10]) + (" ..." if len(padded) > 10 else ""), stacklevel=2)
    dist = training_distribution(np.stack(feats), PHASES, acqs, diams, spacings) if len(feats) > 1 else None
    return np.stack(xs), np.asarray(labels), groups, ids, dist


def phantom_dataset(cfg: dict):
    """The SYNTHETIC phantom ``RoiDataset`` a config trains on (``n_lesions`` from ``data_seed``)."""
    from ..synth.liver_lesions_phantom import generate_lesions

    classes = preset_classes(cfg["classes"])
    items = generate_lesions(int(cfg["n_lesions"]), int(cfg["data_seed"]), cfg["split"], classes)
    return build_dataset(items, classes, PHASES, roi_spec(cfg), attention_source(cfg),
                         cfg["reader_offsets"], cfg["data_seed"])


def make_dataset(cfg: dict, manifest=None) -> SampleSet:
    """SampleSet of [P+1, H, W] samples (see module doc); groups are patients. Records the measured
    training distribution for the card (``input_spec``)."""
    classes = preset_classes(cfg["classes"])
    spec = roi_spec(cfg)
    if manifest is not None:
        x, y, groups, ids, dist = _from_manifest(cfg, manifest, list(classes), spec)
    else:
        ds = phantom_dataset(cfg)
        x = np.concatenate([ds.x, ds.attention[:, None]], axis=1)
        y, groups, ids, dist = ds.labels, ds.patient_ids, ds.lesion_ids, ds.distribution()
    if dist is not None:
        _MEASURED[_config_key(cfg)] = dist
    return SampleSet(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(np.asarray(y, np.int64)), groups, ids)


def channel_spec() -> dict:
    """Each input channel's units and normalisation, as the card declares them."""
    return {p: CHANNEL_UNITS[p] for p in list(PHASES) + [ATTENTION_CHANNEL]}


def input_spec(cfg: dict, distribution: dict | None = None) -> dict:
    """The card's input spec; ``distribution``: the measured training distribution (default: the one
    the last ``make_dataset`` with this config measured, if any)."""
    n = int(cfg["roi_px"])
    dist = distribution if distribution is not None else _MEASURED.get(_config_key(cfg))
    ranges = dict(VALID_RANGES)
    if dist is not None:
        ranges = {k: dist[k] for k in ("in_plane_spacing_mm", "diameter_mm") if k in dist}
    roi = roi_spec({**cfg, "roi_px": n})
    out = {"phases": list(PHASES) + [ATTENTION_CHANNEL], "roi_px": [n, n], "roi": roi_spec_dict(roi),
           "spacing_mm": "field of view " + roi_spec_dict(roi)["field_of_view"],
           "normalisation": NORMALISATION, "channel_units": channel_spec(), "alpha": cfg["alpha"],
           "attention_source": attention_source(cfg), "gradcam_layer": GRADCAM_LAYER,
           "reference_phase": "hepatobiliary", "valid_ranges": ranges}
    if dist is not None:
        out["training_distribution"] = dist
    return out


# The one training recipe of the liver models (``fitting.fit_network``): flips / 90-degree rotations,
# per-phase +-1 px shifts, gamma on non-ADC phases, noise, and a breath-hold shift augmentation (with
# probability 0.5 per sample every non-reference phase -- DWI and ADC together -- moved in-plane by up to
# 10 mm, the phantom's breath-hold range; so a model served with zero per-phase offsets, i.e. without
# registration, has seen such inputs; through-plane shift is not simulated on the 2D ROI); class-weighted
# loss, AdamW with weight decay, one-cycle schedule, a fixed number of epochs (no early stopping),
# temperature fitted on a patient-level validation split that nothing else uses. ``make liver-model``
# trains with it (Scripts/build_liver_model.py), ``slicercad liver reproduce`` too; ``train_with_recipe``
# is the entry point for every other trainer (the panel's job included).
RECIPE = {"epochs": 30, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-4, "val_fraction": 0.2,
          "intensity_augmentation": True, "breath_hold_shift_mm": 10.0, "breath_hold_shift_p": 0.5,
          "early_stopping": False,
          "calibration": "temperature on the patient-level validation split (not used for anything else)"}
ENGINE_RECIPE = ("epochs", "batch_size", "lr", "weight_decay", "val_fraction")   # the engine's TrainConfig settings


def fit(data: SampleSet, cfg: dict, train_config, report=None):
    """``TaskSpec.fit``: ``train_with_recipe`` on engine samples [N, P+1, H, W], with the engine's resolved
    settings (the recipe's unless the caller set them) and per-epoch ``report``; on the CPU, as
    ``make liver-model`` trains."""
    from types import SimpleNamespace

    ds = SimpleNamespace(x=data.x[:, :-1], attention=data.x[:, -1], labels=data.y, patient_ids=data.groups,
                         roi_spacings_mm=getattr(data, "roi_spacings_mm", None),
                         classes=tuple(preset_classes(cfg["classes"])), phases=tuple(PHASES))
    settings = {k: getattr(train_config, k) for k in ENGINE_RECIPE}
    return train_with_recipe(ds, cfg, train_config.seed, on_epoch=report, **settings)


def _register(name: str, preset: str, description: str) -> TaskSpec:
    """Register the liver task for one class preset (same network, data, input spec and training recipe)."""
    return register_task(TaskSpec(
        name=name, kind="classification", build_model=build_model, make_dataset=make_dataset,
        make_loss=classification_loss, input_spec=input_spec, classes=preset_classes(preset),
        default_config={**DEFAULT_CONFIG, "classes": preset}, needs_manifest=False, description=description,
        recipe={k: RECIPE[k] for k in ENGINE_RECIPE}, fit=fit))


LIVER_LESION = _register(TASK_NAME, "report",
                         "liver lesion cyst/hemangioma/metastasis on 8-phase EOB-MRI ROIs with Gaussian attention "
                         "(trains on the SYNTHETIC phantom without a manifest)")
LIVER_LESION_EXTENDED = _register(TASK_NAME + "_extended", "extended",
                                  "liver lesion cyst/hemangioma/metastasis/HCC/FNH (extended preset; SYNTHETIC "
                                  "phantom by default)")


def model_card(cfg: dict, temperature: float, name: str, metrics: dict, synthetic: bool = True,
               training: dict | None = None, distribution: dict | None = None) -> dict:
    """A model card for a ``LiverLesionNet`` built with ``cfg`` (for ``engine.registry.save_model``);
    ``distribution``: the training distribution measured from the training samples."""
    full = LIVER_LESION.config({k: v for k, v in cfg.items() if k != "classes"}) | {"classes": cfg.get("classes", "report")}
    task = LIVER_LESION if full["classes"] == "report" else LIVER_LESION_EXTENDED
    return {"name": name, "task": task.name, "kind": task.kind, "model_config": full,
            "input_spec": input_spec(full, distribution), "classes": list(preset_classes(full["classes"])),
            "training_data": {"synthetic": bool(synthetic), **(training or {})}, "metrics": metrics,
            "temperature": float(temperature)}


def train_with_recipe(ds, cfg: dict, seed: int = 0, on_epoch=None, **overrides):
    """(model, temperature, info) of ``LiverLesionNet`` trained on ``ds`` (a ``RoiDataset``) with ``RECIPE``
    (``overrides`` change single recipe entries, e.g. ``epochs`` for a smoke run); ``info['recipe']`` is
    what was used, for the model card; ``on_epoch``: progress (``fitting.fit_network``)."""
    from .fitting import fit_network

    recipe = {**RECIPE, **overrides}
    kw = {k: recipe[k] for k in ("epochs", "batch_size", "lr", "val_fraction", "weight_decay",
                                 "intensity_augmentation", "breath_hold_shift_mm", "breath_hold_shift_p")}
    model, temperature, info = fit_network(ds, cfg["alpha"], seed, channels=tuple(cfg["channels"]),
                                           dropout=float(cfg["dropout"]), on_epoch=on_epoch, **kw)
    info["recipe"] = {**recipe, "seed": int(seed)}
    return model, temperature, info
