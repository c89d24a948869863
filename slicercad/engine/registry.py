"""Model registry: safetensors weights + a JSON model card, checked before anything runs.

Card fields: name, task, kind, model_config, input_spec (phases, roi_px, spacing_mm,
normalisation, valid_ranges {name: [lo, hi]}), classes, training_data (with
``synthetic``), metrics, temperature, weights (file name beside the card), sha256.
Bundled models live in ``Resources/Models``; user models in ``$SLICERCAD_MODELS`` or
``~/.slicercad/models``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_json
from ..errors import InputError, ModelError
from .tasks import get_task

CARD_SCHEMA = "slicercad.model-card/1"
REQUIRED = ("name", "task", "input_spec", "classes", "training_data", "metrics", "temperature")
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")   # pickle protocol >= 2, torch.save zip archive


def user_model_dir() -> Path:
    return Path(os.environ.get("SLICERCAD_MODELS") or Path.home() / ".slicercad" / "models")


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_card(card: dict, src) -> None:
    if not isinstance(card, dict):
        raise ModelError("a model card must be a JSON object", src)
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ModelError(f"model card lacks field(s) {missing}", src)
    if not isinstance(card["training_data"], dict) or not isinstance(
            card["training_data"].get("synthetic"), bool):
        raise ModelError("training_data.synthetic must be true or false (say whether the model saw "
                         "only generated data)", src)
    t = card["temperature"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        raise ModelError(f"temperature must be a positive number, got {t!r}", src)


def save_model(model: torch.nn.Module, card: dict, directory) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (with sha256) atomically; returns the card path."""
    card = dict(card, schema=CARD_SCHEMA)
    _check_card(dict(card, sha256="", weights=""), card.get("name", "card"))
    get_task(card["task"])
    name = str(card["name"])
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise InputError(f"model name must be a plain file stem, got {name!r}", "card.name")
    directory = Path(directory)
    weights = directory / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        # one metadata key: safetensors writes a multi-key map in hash order, so the sha256 would vary run to run
        save_file(state, str(tmp), metadata={"slicercad.model": json.dumps({"task": str(card["task"]), "name": name})})
    card.update(weights=weights.name, sha256=sha256_file(weights))
    return write_json(directory / f"{name}.json", card)


def _read_card(card_path: Path) -> dict:
    if not card_path.is_file():
        raise ModelError("model card not found; train one with `slicercad train <task> ...` or copy "
                         f"the model's .json and .safetensors into {user_model_dir()}", card_path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model card is not valid JSON ({exc})", card_path) from exc
    _check_card(card, card_path)
    for key in ("weights", "sha256"):
        if not isinstance(card.get(key), str) or not card[key]:
            raise ModelError(f"model card lacks '{key}'", card_path)
    return card


def check_input(card: dict, input_spec: dict | None, src="input") -> None:
    """Refuse an input outside the card's valid ranges, lacking a phase, or of another ROI size."""
    if not input_spec:
        return
    spec = card["input_spec"]
    missing = [p for p in spec.get("phases", []) if "phases" in input_spec and p not in input_spec["phases"]]
    if missing:
        raise ModelError(f"the model needs phase(s) {missing}; the input has {list(input_spec['phases'])}: "
                         "load the missing phase(s) or pick a model trained on these phases", src)
    if "roi_px" in input_spec and spec.get("roi_px") and list(input_spec["roi_px"]) != list(spec["roi_px"]):
        raise ModelError(f"ROI {list(input_spec['roi_px'])} px differs from the model's {spec['roi_px']} px: "
                         "crop at the model's ROI size or pick a model trained at this size", src)
    for key, (lo, hi) in spec.get("valid_ranges", {}).items():
        if key in input_spec:
            value = input_spec[key]
            if not (isinstance(value, (int, float)) and lo <= value <= hi):
                raise ModelError(f"{key}={value!r} is outside the range the model was trained for "
                                 f"[{lo}, {hi}]; results would be unreliable: pick or train a model "
                                 "that covers this input", src)


def load_model(card_path, task: str | None = None, input_spec: dict | None = None) -> tuple:
    """(model in eval mode, card) after checking task, sha256, file format and input ranges."""
    card_path = Path(card_path)
    card = _read_card(card_path)
    if task is not None and card["task"] != task:
        raise ModelError(f"model is for task {card['task']!r}, not {task!r}: pick a {task} model "
                         f"(list_models) or train one with `slicercad train {task}`", card_path)
    try:
        spec = get_task(card["task"])
    except InputError as exc:
        raise ModelError(f"unknown task {card['task']!r}: install or update SlicerCAD so the task is "
                         "registered", card_path) from exc
    check_input(card, input_spec, card_path)
    weights = card_path.parent / card["weights"]
    if not weights.is_file():
        raise ModelError(f"weights file {weights.name} not found beside the card; retrain with "
                         f"`slicercad train {card['task']}` or restore the file", card_path)
    with open(weights, "rb") as fh:
        head = fh.read(9)
    # a safetensors file starts with its 8-byte little-endian header length, then '{': that length's
    # first byte may well be 0x80, so only a file that is not laid out as safetensors counts as a pickle
    is_safetensors = len(head) == 9 and head[8:9] == b"{" and \
        int.from_bytes(head[:8], "little") < weights.stat().st_size
    if head.startswith(_PICKLE_MAGIC) and not is_safetensors:
        raise ModelError("weights are a pickle / torch.save archive, which can run code when loaded; "
                         "refusing it. Convert it to safetensors in a trusted environment", weights)
    if sha256_file(weights) != card["sha256"]:
        raise ModelError("sha256 of the weights does not match the model card: the file is damaged or "
                         "was replaced; restore the original or retrain", weights)
    try:
        state = load_file(str(weights))
    except (SafetensorError, ValueError, OSError) as exc:
        raise ModelError(f"not a readable safetensors file ({exc}); restore the original file or retrain",
                         weights) from exc
    model = spec.build_model(spec.config(card.get("model_config", {})))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights do not fit the {card['task']} network ({exc}); the card and weights "
                         "belong to different models: restore the matching pair or retrain", weights) from exc
    return model.eval(), dict(card, card_path=str(card_path))


def list_models(task: str | None = None) -> list:
    """Cards found in the bundled and user model folders: [{name, task, card_path, source}]."""
    found = []
    for source, folder in (("bundled", BUNDLED_DIR), ("user", user_model_dir())):
        for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
            if path.name.startswith("."):  # an atomic write's temporary file left by a killed process
                continue
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue
            if isinstance(card, dict) and card.get("schema") == CARD_SCHEMA and (
                    task is None or card.get("task") == task):
                found.append({"name": card.get("name"), "task": card.get("task"),
                              "card_path": str(path), "source": source,
                              "synthetic": card.get("training_data", {}).get("synthetic")})
    return found
