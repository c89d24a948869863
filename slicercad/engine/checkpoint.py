"""Training checkpoints without pickle: one safetensors file holds the model and optimizer
tensors and the torch RNG states; everything else (epoch, history, optimizer settings,
numpy/Python RNG states) is JSON in its metadata. Written atomically, so a kill mid-write
leaves the previous checkpoint intact."""
from __future__ import annotations

import json
import random

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import ModelError


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().clone()


def rng_state() -> tuple:
    """(tensors, json) capturing torch (CPU and CUDA), numpy and Python RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
                     "python": [version, list(py_state), py_gauss]}


def set_rng_state(tensors: dict, state: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))


def save_checkpoint(path, model, optimizer, state: dict, scaler=None) -> None:
    """Write model + optimizer + RNG + ``state`` (JSON-able) to ``path`` atomically."""
    tensors = {f"model.{k}": _plain(v) for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars = {}
    for idx, per in opt["state"].items():
        for name, value in per.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = _plain(value)
            else:
                scalars.setdefault(str(idx), {})[name] = value
    rng_tensors, rng_json = rng_state()
    tensors.update({k: _plain(v) for k, v in rng_tensors.items()})
    meta = {"state": state, "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
            "rng": rng_json, "scaler": None if scaler is None else scaler.state_dict()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"slicercad.checkpoint": json.dumps(meta)})


def load_checkpoint(path) -> tuple:
    """(tensors, metadata) of a checkpoint; refuses anything that is not a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["slicercad.checkpoint"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise ModelError(f"not a SlicerCAD safetensors checkpoint ({exc}); delete it and train "
                         "again without --resume", path) from exc
    return tensors, meta


def restore(tensors: dict, meta: dict, model, optimizer, scaler=None) -> dict:
    """Load a checkpoint into ``model``/``optimizer``/RNGs; returns the saved ``state``."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    per = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            per.setdefault(int(idx), {})[name] = value
    for idx, values in meta["optimizer"]["scalars"].items():
        per.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": per, "param_groups": meta["optimizer"]["param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    set_rng_state(tensors, meta["rng"])
    return meta["state"]
