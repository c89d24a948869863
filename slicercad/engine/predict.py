"""Inference API used by every module: batched, no gradients, calibrated probabilities,
timing and provenance per sample."""
from __future__ import annotations

import time

import torch

from .. import __version__ as SLICERCAD_VERSION
from ..errors import InputError
from .calibration import apply_temperature
from .registry import check_input
from .tasks import CLASS_KINDS


def stack_phases(batch, phases) -> torch.Tensor:
    """(N, C, ...) tensor from a tensor, or from ``{phase: (N, ...) tensor}`` in the card's phase order."""
    if torch.is_tensor(batch):
        return batch
    if not isinstance(batch, dict):
        raise InputError(f"batch must be a tensor or a dict of tensors by phase, got {type(batch).__name__}",
                         "batch")
    missing = [p for p in phases if p not in batch]
    if missing:
        raise InputError(f"missing phase(s) {missing}; the model needs {list(phases)}", "batch")
    arrays = [torch.as_tensor(batch[p]) for p in phases]
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"phases differ in shape: { {p: tuple(a.shape) for p, a in zip(phases, arrays)} }",
                         "batch")
    return torch.stack(arrays, dim=1)


def _check(x: torch.Tensor, spec: dict) -> None:
    phases, roi = spec.get("phases") or [], spec.get("roi_px")
    if x.ndim < 3:
        raise InputError(f"batch must be (N, C, ...), got shape {tuple(x.shape)}", "batch")
    if phases and x.shape[1] != len(phases):
        raise InputError(f"{x.shape[1]} channels given, the model takes {len(phases)} ({phases})", "batch")
    if roi and list(x.shape[2:]) != list(roi):
        raise InputError(f"image size {list(x.shape[2:])} px differs from the model's {list(roi)} px",
                         "batch")
    if not torch.isfinite(x).all():
        raise InputError("batch contains NaN or infinite values", "batch")


def result_provenance(card: dict, parameters: dict | None = None) -> dict:
    """What every result carries: model sha256, card name, task, temperature, parameters, synthetic flag."""
    return {"model_sha256": card.get("sha256"), "card": card.get("name"), "task": card.get("task"),
            "temperature": card["temperature"], "parameters": dict(parameters or {}),
            "synthetic_training_data": card.get("training_data", {}).get("synthetic"),
            "slicercad_version": SLICERCAD_VERSION}


def predict(model: torch.nn.Module, card: dict, batch, *, batch_size: int = 64, device="cpu",
            parameters: dict | None = None, input_spec: dict | None = None) -> list:
    """One result dict per sample.

    Classification-type tasks: ``probabilities`` {class: p} (temperature-scaled),
    ``predicted_class``, ``predicted_index``; regression: ``value``; other kinds:
    ``output`` (tensor). Every result has ``time_ms`` (its share of its chunk's time)
    and ``provenance`` (model sha256, card name, task, temperature, parameters).
    ``input_spec`` (e.g. ``{"field_strength_t": 1.5}``) is checked against the card.
    """
    spec = card.get("input_spec", {})
    check_input(card, input_spec, card.get("name", "model"))
    x = stack_phases(batch, spec.get("phases") or [])
    _check(x, spec)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}", "batch_size")
    kind, classes = card.get("kind", "classification"), card.get("classes", [])
    temperature = card["temperature"]
    provenance = result_provenance(card, parameters)
    model = model.to(device).eval()
    results = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            t0 = time.perf_counter()
            out = model(x[start:start + batch_size].to(device=device, dtype=torch.float32)).float()
            if kind in CLASS_KINDS:
                probs = apply_temperature(out, temperature).cpu()
            out = out.cpu()
            per_ms = (time.perf_counter() - t0) * 1000.0 / len(out)
            for i in range(len(out)):
                if kind in CLASS_KINDS:
                    k = int(probs[i].argmax())
                    item = {"probabilities": {str(c): float(p) for c, p in zip(classes, probs[i])},
                            "predicted_index": k, "predicted_class": str(classes[k])}
                elif kind == "regression":
                    value = out[i].flatten()
                    item = {"value": float(value[0]) if value.numel() == 1 else value.tolist()}
                else:
                    item = {"output": out[i]}
                item.update(time_ms=per_ms, provenance=provenance)
                results.append(item)
    return results
