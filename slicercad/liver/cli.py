"""``slicercad liver``: classify lesions of a study, or reproduce seed 000's tables on the phantom."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import write_json, write_text
from ..errors import ImageIOError, InputError
from .tables import results_markdown

HELP = "liver lesions on multi-phase EOB-MRI: classify a study's lesions, or reproduce the synthetic tables"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="liver_command", required=True)
    c = sub.add_parser("classify", help="classify every lesion of a CSV list; write a results CSV and PNGs")
    c.add_argument("--model", required=True, help="model card (.json) beside its .safetensors")
    c.add_argument("--image", action="append", default=[], metavar="PHASE=PATH",
                   help="one phase image (NRRD/NIfTI/...), repeat for every phase the model needs")
    c.add_argument("--lesions", required=True,
                   help="CSV (lesion_id,x,y,z,coordinate_system,diameter_mm; optional per-phase offsets "
                        "offset_<phase>_x/y/z in mm, same coordinate system) or Slicer .mrk.json")
    c.add_argument("--out", required=True, help="results CSV to write")
    c.add_argument("--png-dir", help="write an ROI / attention / Grad-CAM picture per lesion here")
    c.add_argument("--field-strength", type=float, help="tesla, checked against the model card")
    c.add_argument("--b-value", type=float, help="DWI b-value (s/mm^2), checked against the model card")
    c.add_argument("--adc-units", choices=("1e-3", "1e-6", "mm2/s"),
                   help="units of the ADC image when known (default: recognised from its values)")
    r = sub.add_parser("reproduce", help="size-bin table, alpha study and Grad-CAM focus on the SYNTHETIC phantom")
    r.add_argument("--out", required=True, help="folder for results.json and results.md")
    r.add_argument("--n-train", type=int, default=400, help="SYNTHETIC training lesions")
    r.add_argument("--n-test", type=int, default=250, help="SYNTHETIC test lesions")
    r.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: the task recipe's, task.RECIPE; every other setting is the recipe's)")
    r.add_argument("--seeds", type=int, default=5, help="training seeds of every attention arm (>= 5 for the report)")
    r.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, 2 seeds (checks the pipeline only)")


def _images(specs) -> dict:
    import SimpleITK as sitk

    images = {}
    for spec in specs:
        if "=" not in spec:
            raise InputError(f"expected PHASE=PATH, got {spec!r}", "--image")
        phase, path = spec.split("=", 1)
        try:
            images[phase.strip()] = sitk.ReadImage(path, sitk.sitkFloat32)
        except RuntimeError as exc:
            raise ImageIOError(f"cannot read image ({exc})", path) from exc
    return images


def _classify(args) -> int:
    from ..engine.registry import load_model
    from . import task  # noqa: F401  (registers the liver tasks)
    from .inference import classify_lesions, save_overlay_png, write_results_csv
    from .lesion_files import read_lesions

    model, card = load_model(args.model)
    acquisition = {k: v for k, v in (("field_strength_t", args.field_strength), ("b_value", args.b_value))
                   if v is not None}
    if getattr(args, "adc_units", None):
        from .acquisition import ADC_UNITS

        unit = {"1e-3": "10-3.mm2/s", "1e-6": "10-6.mm2/s", "mm2/s": "mm2/s"}[args.adc_units]
        acquisition.update(adc_units=unit, adc_unit_factor=ADC_UNITS[unit])
    results = classify_lesions(model, card, _images(args.image), read_lesions(args.lesions), acquisition,
                               with_cam=bool(args.png_dir))
    write_results_csv(args.out, results, card["classes"])
    for r in results:
        if args.png_dir:
            save_overlay_png(Path(args.png_dir) / f"{r['lesion_id']}.png", r)
        flag = f"  [{'; '.join(r['warnings'])}]" if r["warnings"] else ""
        print(f"{r['lesion_id']}: {r['predicted_class']} p={max(r['probabilities'].values()):.2f}{flag}")
    if results and results[0]["notice"]:
        print(results[0]["notice"])
    return 0


def _reproduce(args) -> int:
    from ..synth.liver_lesions import CLASSES
    from ..synth.liver_lesions_phantom import generate_lesions
    from .baseline import evaluate_baseline, fit_baseline
    from .dataset import build_dataset
    from .controls import focus_study
    from .fitting import deterministic_torch, recipe_trainer
    from .study import ALPHAS, alpha_study, size_bin_table
    from .task import DEFAULT_CONFIG, RECIPE, roi_spec

    epochs = args.epochs if args.epochs is not None else RECIPE["epochs"]
    n_train, n_test, epochs, seeds = ((60, 40, 1, 2) if args.smoke else (args.n_train, args.n_test, epochs, args.seeds))
    deterministic_torch()                      # as make liver-model: one thread, deterministic algorithms
    t0 = time.time()

    def progress(text):
        print(f"[liver reproduce {time.time() - t0:6.0f} s] {text}", flush=True)

    n_trainings = len(ALPHAS) * seeds + 1
    progress(f"{n_train} training / {n_test} test lesions, {epochs} epochs of the task recipe, {seeds} seeds x "
             f"{len(ALPHAS)} arms + 1 mask-mode model = {n_trainings} trainings")
    spec = roi_spec(DEFAULT_CONFIG)
    train_items = generate_lesions(n_train, seed=1)
    test_items = generate_lesions(n_test, seed=2, split="test")
    train, test = (build_dataset(train_items, CLASSES, spec=spec, seed=1),
                   build_dataset(test_items, CLASSES, spec=spec, seed=1))
    progress("phantom data built")
    n_boot = 200 if args.smoke else 1000
    trainer = recipe_trainer(tuple(DEFAULT_CONFIG["channels"]), DEFAULT_CONFIG["dropout"], epochs=epochs)
    recipe = {**RECIPE, "epochs": epochs}
    out = {"synthetic": True, "n_train": n_train, "n_test": n_test, "epochs": epochs, "n_trainings": n_trainings,
           "recipe": ", ".join(f"{k} {v}" for k, v in recipe.items() if k != "calibration"),
           "attention_source": "diameter (ROI centre + measured diameter: the product's input)",
           "baseline_logistic_roi_means": evaluate_baseline(fit_baseline(train, class_weight="balanced"), test)}
    models = {}
    out["alpha_study"] = alpha_study(train, test, seeds=tuple(range(seeds)), n_boot=500 if args.smoke else 2000,
                                     trainer=trainer, progress=progress, models=models)
    model, temperature = models[("0.1", 0)]      # Table 1's model: the alpha = 0.1 arm, seed 0
    out["size_bins_alpha_0.1"] = size_bin_table(model, temperature, test, n_boot=n_boot)
    out["focus"] = focus_study(model, temperature, test)
    mask_train, mask_test = (build_dataset(train_items, CLASSES, spec=spec, seed=1, attention="mask"),
                             build_dataset(test_items, CLASSES, spec=spec, seed=1, attention="mask"))
    mask_model, mask_t = trainer(mask_train, 0.1, 0)
    progress("mask-mode model (alpha=0.1, seed 0) trained")
    out["size_bins_mask_mode"] = size_bin_table(mask_model, mask_t, mask_test, n_boot=n_boot)
    out["runtime_s"] = round(time.time() - t0, 1)
    from ..engine.metrics import jsonable

    path = write_json(Path(args.out) / "results.json", jsonable(out))
    write_text(Path(args.out) / "results.md", results_markdown(jsonable(out)))
    print(json.dumps({"baseline": out["baseline_logistic_roi_means"], "focus_trained": out["focus"]["focus_trained_mean"],
                      "focus_random": out["focus"]["focus_random_mean"],
                      "balanced_accuracy": out["size_bins_alpha_0.1"]["balanced_accuracy"],
                      "balanced_accuracy_mask_mode": out["size_bins_mask_mode"]["balanced_accuracy"],
                      "runtime_s": out["runtime_s"]}))
    print(f"SYNTHETIC results written to {path}")
    return 0


def run(args) -> int:
    return _classify(args) if args.liver_command == "classify" else _reproduce(args)
