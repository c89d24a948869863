"""Train the TI-offset CNN with the shared engine (``engine.train``: patient-level split, class
weights, temperature scaling) on the SYNTHETIC phantom, with the task's recipe (``task.RECIPE`` on the
TaskSpec); card metadata from this module."""
from __future__ import annotations

import tempfile
from pathlib import Path

from . import constants as C


def train_ti_model(n_patients: int | None = None, epochs: int | None = None, seed: int = 0, data_seed: int = 1,
                   open_bins: bool = False, channels=(8, 16, 32), out=None, callback=None):
    """(model in eval mode, engine card dict, training result). None: the recipe's value."""
    import torch

    from ..engine.registry import load_model
    from ..engine.train import TrainConfig, train
    from .task import DEFAULT_CONFIG, task_for

    task = task_for(open_bins)
    work = Path(out) if out else Path(tempfile.mkdtemp(prefix="ti-train-"))
    n_patients = DEFAULT_CONFIG["n_patients"] if n_patients is None else int(n_patients)
    cfg = TrainConfig(task=task.name, out=work, epochs=epochs, seed=seed, device="cpu", synthetic=True,
                      name=f"{task.name}-seed{seed}",
                      task_config={"n_patients": n_patients, "data_seed": data_seed, "channels": list(channels),
                                   "open_bins": open_bins})
    torch.manual_seed(seed)
    result = train(cfg, callback=callback)
    model, card = load_model(result["card_path"], task=task.name)
    return model, card, result


def card_for(engine_card: dict, name: str, metrics: dict) -> dict:
    """A bundled-model card from an engine card: no timestamps (rebuilds are byte-identical)."""
    card = {k: v for k, v in engine_card.items() if k not in ("created", "card_path", "sha256", "weights",
                                                               "schema", "training")}
    card.update(name=name, metrics=metrics)
    card["training_data"] = dict(card["training_data"], synthetic=True,
                                 description="SYNTHETIC Look-Locker TI-scout phantom (slicercad.ti.phantom), "
                                             "1.5 T and 3 T; no patient data")
    card["method"] = {"offset_bin_edges_ms": list(C.OFFSET_BIN_EDGES_MS), "optimal_range_ms": list(C.OPTIMAL_RANGE_MS),
                      "recommend_margin_ms": C.RECOMMEND_MARGIN_MS}
    return card
