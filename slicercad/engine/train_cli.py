"""``slicercad train <task>``: train a registered task; under ``torchrun`` it runs DDP."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .task_modules import TASK_MODULES
from .train_settings import TRAIN_DEFAULTS

HELP = "train a task (patient-level split, checkpoints, --resume, calibration; DDP under torchrun)"
TASK_NAMES = tuple(sorted(TASK_MODULES))


def add_arguments(parser) -> None:
    parser.add_argument("task", help=f"registered task: {', '.join(TASK_NAMES)}")
    parser.add_argument("--manifest", help="dataset manifest (.jsonl); synthetic tasks need none")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, model/)")
    recipe = " (default: {}) unless the task's recipe sets it"
    parser.add_argument("--epochs", type=int, help="number of epochs (the most, with early stopping)"
                        + recipe.format(TRAIN_DEFAULTS["epochs"]))
    parser.add_argument("--batch-size", type=int, help="global batch (split over DDP ranks)"
                        + recipe.format(TRAIN_DEFAULTS["batch_size"]))
    parser.add_argument("--lr", type=float, help="AdamW learning rate" + recipe.format(TRAIN_DEFAULTS["lr"]))
    parser.add_argument("--weight-decay", type=float,
                        help="AdamW weight decay" + recipe.format(TRAIN_DEFAULTS["weight_decay"]))
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and shuffling")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    parser.add_argument("--patience", type=int, help="early stopping: epochs without improvement"
                        + recipe.format(TRAIN_DEFAULTS["patience"]))
    parser.add_argument("--val-fraction", type=float, help="fraction of patients for validation"
                        + recipe.format(TRAIN_DEFAULTS["val_fraction"]))
    parser.add_argument("--test-fraction", type=float, default=0.0, help="fraction of patients held out")
    parser.add_argument("--split-by", choices=("patient", "sample"), default="patient",
                        help="'sample' splits by lesion/image set and leaks patients (warned)")
    parser.add_argument("--no-class-weights", action="store_true", help="do not reweight rare classes")
    parser.add_argument("--no-amp", action="store_true", help="full precision on GPU")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip invalid manifest rows (they are listed in the model card)")
    parser.add_argument("--synthetic", action="store_true", help="declare the manifest's images synthetic")
    parser.add_argument("--name", help="model name (default <task>-seed<seed>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="task config override, e.g. --set n_samples=512 (repeatable)")


def parse_overrides(items) -> dict:
    """``["k=v", ...]`` to a dict; values are JSON when they parse, else strings."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got {item!r}", "--set")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args) -> int:
    if args.task not in TASK_NAMES:
        raise InputError(f"unknown task {args.task!r}; known tasks: {list(TASK_NAMES)}", "task")
    from .tasks import get_task
    from .train import TrainConfig, train

    task = get_task(args.task)
    config = TrainConfig(
        task=task.name, out=Path(args.out), manifest=Path(args.manifest) if args.manifest else None,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        seed=args.seed, device=args.device, resume=args.resume, patience=args.patience,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, split_by=args.split_by,
        class_weights=not args.no_class_weights, amp=not args.no_amp, skip_bad=args.skip_bad,
        synthetic=True if args.synthetic else None, name=args.name,
        task_config=parse_overrides(args.set))
    result = train(config)
    if result["card_path"] is not None:
        print(f"model card: {result['card_path']}")
        print(json.dumps(result["metrics"], indent=2))
    return 0
