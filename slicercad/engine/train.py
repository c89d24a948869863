"""Training loop shared by every task: patient-level split, class weights, AMP on GPU,
progress (see :mod:`.progress`), atomic per-epoch checkpoints, bit-exact ``resume``, early stopping,
temperature scaling, and DDP when launched under ``torchrun``. A task with its own recipe
(``TaskSpec.recipe`` / ``TaskSpec.fit``) is trained with it: settings the caller leaves unset (None)
come from the recipe, then from ``train_settings.TRAIN_DEFAULTS``; ``fit`` replaces the generic
loop (the split, the held-out test patients, the scoring and the model card stay the engine's).

``batch_size`` is the global batch: under DDP each of the N processes takes
``batch_size / N`` samples per step (``DistributedSampler``), so the run follows the same
trajectory as a single process.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..errors import InputError
from . import progress
from .calibration import fit_temperature, nll
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .manifest import load_manifest
from .registry import save_model
from .splits import train_val_test_split
from .tasks import CLASS_KINDS, get_task
from .train_settings import TRAIN_DEFAULTS

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    task: str
    out: Path
    manifest: Path | None = None
    epochs: int | None = None          # None (here and below): the task's recipe, else TRAIN_DEFAULTS
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    patience: int | None = None
    val_fraction: float | None = None
    test_fraction: float = 0.0
    split_by: str = "patient"
    class_weights: bool = True
    amp: bool = True
    skip_bad: bool = False
    synthetic: bool | None = None   # None: True exactly when no manifest is used
    name: str | None = None
    task_config: dict = field(default_factory=dict)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable explicit choice is refused."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else (
            "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch sees no CUDA GPU (check the driver and that the "
                         "installed torch build has CUDA)", "--device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("MPS was requested but is not available on this machine", "--device")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise InputError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}", "--device")
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _evaluate(model, dataset, loss_fn, kind, device, batch_size) -> tuple:
    """(mean loss, accuracy or None, logits, targets) over ``dataset``, no gradients."""
    if len(dataset) == 0:
        return float("nan"), None, None, None
    model.eval()
    outs, targets, losses = [], [], []
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x, y = x.to(device), y.to(device)
            out = model(x).float()
            losses.append(loss_fn(out, y).reshape(len(x), -1).mean(1).cpu())
            outs.append(out.cpu())
            targets.append(y.cpu())
    logits, y = torch.cat(outs), torch.cat(targets)
    acc = float((logits.argmax(1) == y).double().mean()) if kind in CLASS_KINDS else None
    return float(torch.cat(losses).mean()), acc, logits, y


def _class_weights(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights N / (C * n_c), so each class contributes equally."""
    counts = torch.bincount(targets.long().flatten(), minlength=n_classes).double()
    return (counts.sum() / (n_classes * counts.clamp(min=1))).float()


def _dist_env() -> tuple:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def resolve_config(config: TrainConfig) -> TrainConfig:
    """``config`` with every unset setting from the task's recipe, else ``TRAIN_DEFAULTS``."""
    recipe = get_task(config.task).recipe
    unset = [k for k in TRAIN_DEFAULTS if getattr(config, k) is None]
    return replace(config, **{k: recipe.get(k, TRAIN_DEFAULTS[k]) for k in unset})


def train(config: TrainConfig, callback=None) -> dict:
    """Train ``config.task``; returns {card_path, history, best_epoch, temperature, metrics, stopped_early}.

    ``callback(record)`` receives every progress record (the same dicts emitted as lines).
    """
    config = resolve_config(config)
    world, rank, local_rank = _dist_env()
    if config.batch_size < 1 or config.batch_size % world:
        raise InputError(f"batch size {config.batch_size} must be >= 1 and divisible by the {world} "
                         "processes", "--batch-size")
    if config.epochs < 1 or config.patience < 1:
        raise InputError("epochs and patience must be >= 1", "--epochs/--patience")
    device = resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started_dist = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started_dist = True
    try:
        return _train(config, callback, world, rank, device)
    finally:
        if started_dist:
            dist.destroy_process_group()


RUN_KEYS = ("task", "seed", "batch_size", "lr", "weight_decay", "val_fraction", "test_fraction",
            "split_by", "class_weights", "task_config")


def _run_identity(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with the run that wrote the checkpoint."""
    return {k: getattr(cfg, k) for k in RUN_KEYS}


def _report(rank, callback, **fields):
    if rank == 0:
        progress.emit("train", **fields)
    if callback is not None:
        callback({"stage": "train", **fields})


def _train(cfg: TrainConfig, callback, world, rank, device) -> dict:
    out = Path(cfg.out)
    seed_everything(cfg.seed)
    task = get_task(cfg.task)
    task_cfg = task.config(cfg.task_config)
    manifest = None
    if cfg.manifest is not None:
        manifest = load_manifest(cfg.manifest, classes=list(task.classes) or None,
                                 phases=task.spec_for(task_cfg).get("phases"), skip_bad=cfg.skip_bad)
    elif task.needs_manifest:
        raise InputError(f"task {task.name!r} trains from a dataset: give --manifest", "--manifest")
    data = task.make_dataset(task_cfg, manifest)
    parts = train_val_test_split(data.groups, cfg.val_fraction, cfg.test_fraction, cfg.seed,
                                 by=cfg.split_by, sample_ids=data.ids)
    if len(parts["train"]) == 0:
        raise InputError("the training split is empty; add cases or lower --val-fraction", "split")
    train_set, val_set, test_set = (Subset(data, parts[k].tolist()) for k in ("train", "val", "test"))
    classify = task.kind in CLASS_KINDS
    weights = None
    if classify and cfg.class_weights:
        weights = _class_weights(data.y[torch.as_tensor(parts["train"])], len(task.classes))
    loss_fn = task.make_loss(weights)
    sets = (train_set, val_set, test_set)
    if task.fit is not None:
        return _task_fit(cfg, task, task_cfg, data, parts, loss_fn, device, sets, manifest, world, rank, callback)

    torch.manual_seed(cfg.seed)
    model = task.build_model(task_cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = {"epoch": 0, "history": [], "best_loss": None, "best_epoch": None, "bad_epochs": 0,
             "run": _run_identity(cfg)}
    ckpt, best_path = out / CHECKPOINT, out / "best.safetensors"
    if cfg.resume and ckpt.is_file():
        tensors, meta = load_checkpoint(ckpt)
        then = meta["state"].get("run", {})
        changed = {k: (v, then.get(k)) for k, v in state["run"].items() if then.get(k) != v}
        if changed:
            raise InputError("--resume needs the settings of the interrupted run; changed (now, then): "
                             f"{changed}. Use another --out to start afresh", ckpt)
        state = restore(tensors, meta, model, optimizer, scaler)
        _report(rank, callback, epoch=state["epoch"], message=f"resumed after epoch {state['epoch']}")
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size // world, sampler=sampler)
    steps, t0 = len(loader), time.perf_counter()
    done_steps, total_steps = 0, steps * (cfg.epochs - state["epoch"])
    stopped_early = False
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            break
        sampler.set_epoch(epoch)
        net.train()
        running = 0.0
        for step, (x, y) in enumerate(loader, start=1):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(net(x), y).mean()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_value = float(loss.detach())
            running += loss_value
            done_steps += 1
            eta = (time.perf_counter() - t0) / done_steps * (total_steps - done_steps)
            _report(rank, callback, epoch=epoch, step=step, total=steps, loss=loss_value,
                    eta_s=round(eta, 2), fraction=done_steps / max(total_steps, 1))
        val_loss, val_acc, _, _ = _evaluate(model, val_set, loss_fn, task.kind, device, cfg.batch_size)
        monitored = val_loss if len(val_set) else running / max(steps, 1)
        improved = state["best_loss"] is None or monitored < state["best_loss"] - 1e-7
        if improved:
            state.update(best_loss=monitored, best_epoch=epoch, bad_epochs=0)
            if rank == 0:
                save_checkpoint(best_path, model, optimizer, {"epoch": epoch})
        else:
            state["bad_epochs"] += 1
        state["history"].append({"epoch": epoch, "train_loss": running / max(steps, 1),
                                 "val_loss": val_loss, "val_accuracy": val_acc})
        state["epoch"] = epoch
        if rank == 0:
            save_checkpoint(ckpt, model, optimizer, state, scaler if use_amp else None)
        if world > 1:
            dist.barrier()
        _report(rank, callback, epoch=epoch, epochs=cfg.epochs, loss=running / max(steps, 1), val_loss=val_loss,
                val_accuracy=val_acc, message=f"epoch {epoch} done")
    if world > 1:
        dist.barrier()
    if best_path.is_file():
        tensors, _ = load_checkpoint(best_path)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return _finish(cfg, task, task_cfg, model, loss_fn, device, sets, manifest, state, stopped_early, rank,
                   callback)


def _task_fit(cfg, task, task_cfg, data, parts, loss_fn, device, sets, manifest, world, rank, callback) -> dict:
    """Train with the task's own loop (``TaskSpec.fit``) on the training + validation patients, then score
    and write the card as the generic loop does (the task's temperature, fitted on the validation split)."""
    refused = {"--resume": cfg.resume, "--split-by sample": cfg.split_by != "patient", "torchrun": world > 1}
    if any(refused.values()):
        raise InputError(f"task {task.name!r} trains with its own recipe, which supports none of "
                         f"{[k for k, v in refused.items() if v]}", "train")
    rest = np.sort(np.concatenate([parts["train"], parts["val"]]))
    fit_cfg = replace(cfg, val_fraction=cfg.val_fraction / (1.0 - cfg.test_fraction))
    t0 = time.perf_counter()

    def report(epoch, loss=None, **fields):
        eta = (time.perf_counter() - t0) / epoch * (cfg.epochs - epoch)
        _report(rank, callback, epoch=epoch, epochs=cfg.epochs, loss=loss, eta_s=round(eta, 2),
                fraction=epoch / cfg.epochs, message=f"epoch {epoch} done", **fields)

    _report(rank, callback, epochs=cfg.epochs, fraction=0.0, message=f"training with the {task.name} recipe")
    model, temperature, info = task.fit(data.subset(rest), task_cfg, fit_cfg, report)
    if info.get("n_val", len(parts["val"])) != len(parts["val"]):
        raise InputError(f"task {task.name!r} calibrated on {info['n_val']} validation samples, the engine's split "
                         f"holds {len(parts['val'])}: its fit must split as splits.train_val_test_split does", "fit")
    state = {"history": info.get("history", []), "best_epoch": cfg.epochs, "epoch": cfg.epochs}
    return _finish(cfg, task, task_cfg, model.to(device), loss_fn, device, sets, manifest, state, False, rank,
                   callback, temperature, info.get("recipe"))


def _finish(cfg, task, task_cfg, model, loss_fn, device, sets, manifest, state, stopped_early, rank,
            callback, temperature=None, recipe=None) -> dict:
    """Temperature-scale on validation (unless the task's loop gave ``temperature``), score val/test,
    write the model card (rank 0); ``recipe``: the task's recipe as used, for the card."""
    train_set, val_set, test_set = sets
    metrics = {}
    if temperature is None:
        _, _, val_logits, val_y = _evaluate(model, val_set, loss_fn, task.kind, device, cfg.batch_size)
        temperature = fit_temperature(val_logits, val_y) if task.kind in CLASS_KINDS and val_logits is not None \
            else 1.0
    for name, subset in (("val", val_set), ("test", test_set)):
        loss, acc, logits, y = _evaluate(model, subset, loss_fn, task.kind, device, cfg.batch_size)
        if logits is None:
            continue
        metrics[name] = {"n": len(subset), "loss": loss}
        if acc is not None:
            metrics[name].update(accuracy=acc, nll=nll(logits, y), nll_calibrated=nll(logits, y, temperature))
    groups = {split: sorted({s.dataset.groups[i] for i in s.indices}) for split, s in
              zip(("train", "val", "test"), sets)}
    card = {
        "name": cfg.name or f"{task.name}-seed{cfg.seed}",
        "task": task.name, "kind": task.kind, "model_config": task_cfg,
        "input_spec": task.spec_for(task_cfg), "classes": list(task.classes),
        "training_data": {
            "synthetic": (cfg.manifest is None) if cfg.synthetic is None else bool(cfg.synthetic),
            "manifest": None if manifest is None else Path(cfg.manifest).name,
            "n_samples": {k: len(s) for k, s in zip(("train", "val", "test"), sets)},
            "n_patients": {k: len(v) for k, v in groups.items()},
            "split_by": cfg.split_by, "skipped_rows": [] if manifest is None else manifest.skipped,
        },
        "training": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                     **({"recipe": recipe} if recipe else {})},
        "metrics": metrics, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
        "stopped_early": stopped_early, "temperature": temperature,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    card_path = save_model(model, card, Path(cfg.out) / "model") if rank == 0 else None
    _report(rank, callback, fraction=1.0, message="training finished",
            card=None if card_path is None else str(card_path))
    return {"card_path": card_path, "history": state["history"], "best_epoch": state["best_epoch"],
            "temperature": temperature, "metrics": metrics, "stopped_early": stopped_early,
            "split_patients": groups}
