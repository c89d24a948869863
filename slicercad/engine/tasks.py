"""Task registry: each method (module) is a task the shared engine trains and serves.

A :class:`TaskSpec` says what kind of output a task has, how to build its network from a
config dict, how to make its samples from a manifest (or generate them), its loss and the
input it expects, and optionally its own training recipe (``recipe`` settings, a ``fit`` loop) that
``engine.train`` uses for every entry point. ``toy2d`` is a tiny generated task for the engine's own tests.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn
from torch.utils.data import Dataset

from ..errors import InputError
from .task_modules import TASK_MODULES
from .train_settings import TRAIN_DEFAULTS

KINDS = ("classification", "ordinal", "regression", "segmentation", "frame_classification",
         "likelihood")
CLASS_KINDS = ("classification", "ordinal", "frame_classification")
_TASKS: dict = {}


class SampleSet(Dataset):
    """In-memory samples: ``x`` (N, C, ...) float, ``y`` (N, ...), patient ``groups``, sample ``ids``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, groups, ids=None):
        if len(x) != len(y) or len(x) != len(groups):
            raise InputError(f"x, y and groups differ in length ({len(x)}, {len(y)}, {len(groups)})",
                             "SampleSet")
        self.x, self.y = x, y
        self.groups = [str(g) for g in groups]
        self.ids = [str(i) for i in (range(len(x)) if ids is None else ids)]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def subset(self, idx) -> "SampleSet":
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return SampleSet(self.x[idx], self.y[idx], [self.groups[i] for i in idx.tolist()],
                         [self.ids[i] for i in idx.tolist()])


@dataclass
class TaskSpec:
    """What the engine needs to train, save and serve one task.

    build_model(config) -> nn.Module; make_dataset(config, manifest | None) -> SampleSet
    (or any Dataset with ``groups``, ``ids`` and ``y``); make_loss(class_weights | None) ->
    fn(outputs, targets) giving per-sample losses; input_spec: phases, roi_px, spacing_mm,
    normalisation, valid_ranges {name: [lo, hi]} (a dict, or a function of the config giving
    one); default_config: model/data settings.

    The task's training recipe, used by ``engine.train`` whatever starts it (``slicercad train``, a
    panel's job, a script); settings the caller gives explicitly still win:
    recipe: {TRAIN_DEFAULTS key: value}, the task's values for those TrainConfig settings;
    fit: None (the engine's generic loop) or ``fit(data, config, train_config, report) -> (model,
    temperature, info)``: the task's own loop on ``data`` (a SampleSet of the training + validation
    patients; it splits off ``train_config.val_fraction`` of them with ``splits.train_val_test_split``
    and ``train_config.seed``, which gives the engine's validation patients), calibrating on that
    validation split; ``report(epoch, loss=..., **fields)`` after each epoch; ``info`` may hold
    ``history`` (per-epoch records) and ``recipe`` (what was used, for the model card).
    """
    name: str
    kind: str
    build_model: Callable
    make_dataset: Callable
    make_loss: Callable
    input_spec: dict | Callable
    classes: tuple = ()
    default_config: dict = field(default_factory=dict)
    needs_manifest: bool = True
    description: str = ""
    recipe: dict = field(default_factory=dict)
    fit: Callable | None = None

    def __post_init__(self):
        unknown = set(self.recipe) - set(TRAIN_DEFAULTS)
        if unknown:
            raise InputError(f"recipe key(s) {sorted(unknown)} are not training settings {list(TRAIN_DEFAULTS)}",
                             self.name)
        if self.kind not in KINDS:
            raise InputError(f"task kind must be one of {KINDS}, got {self.kind!r}", self.name)
        if self.kind in CLASS_KINDS and len(self.classes) < 2:
            raise InputError(f"a {self.kind} task needs at least 2 classes", self.name)

    def config(self, overrides: dict | None = None) -> dict:
        """The default config updated with ``overrides`` (unknown keys refused)."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(self.default_config)
        if unknown:
            raise InputError(f"unknown config key(s) {sorted(unknown)}; known {sorted(self.default_config)}",
                             f"task {self.name}")
        return {**self.default_config, **overrides}

    def spec_for(self, config: dict) -> dict:
        """The input spec of a model built with ``config``."""
        return dict(self.input_spec(config) if callable(self.input_spec) else self.input_spec)


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Register ``spec`` under its name; re-registering another spec needs ``replace=True``."""
    old = _TASKS.get(spec.name)
    if old is not None and old is not spec and not replace:
        raise InputError(f"task {spec.name!r} is already registered", "register_task")
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The registered task ``name`` (importing its module from TASK_MODULES if needed)."""
    if name not in _TASKS and name in TASK_MODULES:
        importlib.import_module(TASK_MODULES[name])
    if name not in _TASKS:
        raise InputError(f"unknown task {name!r}; known tasks: {task_names()}", "task")
    return _TASKS[name]


def task_names() -> list:
    return sorted(set(_TASKS) | set(TASK_MODULES))


def classification_loss(class_weights: torch.Tensor | None = None) -> Callable:
    """Per-sample cross-entropy, scaled by the weight of each sample's true class.

    The batch mean of these values is linear in the samples, so a DDP run (mean of the
    per-rank means) equals a single-process run with the same global batch.
    """
    def loss(logits, target):
        per = F.cross_entropy(logits.float(), target, reduction="none")
        return per if class_weights is None else per * class_weights.to(per.device)[target]
    return loss


class TinyCNN(nn.Module):
    """conv -> conv -> global average pool -> linear (MONAI blocks; Grad-CAM layer: ``features``)."""

    def __init__(self, spatial_dims=2, in_channels=1, classes=2, channels=(8, 16)):
        super().__init__()
        layers, c_in = [], in_channels
        for c in channels:
            layers.append(Convolution(spatial_dims, c_in, c, strides=2, kernel_size=3, act="relu",
                                      norm=None))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def toy2d_samples(config: dict, manifest=None) -> SampleSet:
    """Noisy images holding one bar: class 0 horizontal, class 1 vertical; 4 samples per patient."""
    rng = np.random.default_rng(config["data_seed"])
    n, size, length = config["n_samples"], config["size"], config["size"] // 2
    x = rng.normal(0.0, config["noise"], (n, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(2, size - length - 2, 2)
        w = rng.uniform(0.8, 1.2)
        if y[i] == 0:
            x[i, 0, r:r + 3, c:c + length] += w
        else:
            x[i, 0, r:r + length, c:c + 3] += w
    if config["permute_labels"]:
        y = np.random.default_rng(config["data_seed"] + 1).permutation(y)
    groups = [f"P{i // config['samples_per_patient']:04d}" for i in range(n)]
    return SampleSet(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), groups,
                     [f"S{i:05d}" for i in range(n)])


TOY2D = register_task(TaskSpec(
    name="toy2d",
    kind="classification",
    build_model=lambda cfg: TinyCNN(2, 1, 2, tuple(cfg["channels"])),
    make_dataset=toy2d_samples,
    make_loss=classification_loss,
    input_spec=lambda cfg: {"phases": ["image"], "roi_px": [cfg["size"], cfg["size"]],
                            "spacing_mm": [1.0, 1.0], "valid_ranges": {},
                            "normalisation": "none (generated, background mean 0)"},
    classes=("horizontal", "vertical"),
    default_config={"channels": [8, 16], "n_samples": 256, "size": 32, "noise": 0.3,
                    "data_seed": 0, "samples_per_patient": 4, "permute_labels": False},
    needs_manifest=False,
    description="generated 2D bars, horizontal vs vertical (engine self-test; synthetic)",
))
