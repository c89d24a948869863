"""Rebuild the bundled LiverLesionCAD demo model (``Resources/Models/liver_lesion_demo``) from the
SYNTHETIC phantom, deterministically by seed.

Trains ``LiverLesionNet`` (alpha 0.1, channels 16/32/64) with the task's one recipe
(``liver.task.train_with_recipe``: flips, rotations, per-phase gamma / noise / 1-pixel misregistration
augmentation, 30 epochs, no early stopping, temperature on a patient-level validation split) on phantom
lesions drawn with ``--data-seed`` (train acquisition), samples built by the one sample path (attention
from the ROI centre + measured diameter, as the product has it). The card's ``model_config`` is the
task config the model was trained with, its ``input_spec.training_distribution`` is measured from the
training samples, and its metrics are those of ``inference.classify_lesions`` -- the product path --
on a phantom test set with another seed and the shifted test acquisition (per-lesion predictions
stored, Testing/test_liver_demo_model.py re-runs the product on them), beside the majority-class
and logistic-regression baselines. The card says ``synthetic: true``. Run: ``make liver-model``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slicercad.engine.registry import BUNDLED_DIR, save_model  # noqa: E402
from slicercad.liver.baseline import evaluate_baseline, fit_baseline  # noqa: E402
from slicercad.liver.dataset import build_dataset, phantom_acquisition  # noqa: E402
from slicercad.liver.inference import classify_lesions  # noqa: E402
from slicercad.liver.task import (LIVER_LESION, RECIPE, model_card, phantom_dataset, roi_spec,  # noqa: E402
                                  train_with_recipe)
from slicercad.synth.liver_lesions import CLASSES  # noqa: E402
from slicercad.synth.liver_lesions_phantom import generate_lesions  # noqa: E402

NAME = "liver_lesion_demo"
ALPHA = 0.1
CHANNELS = (16, 32, 64)
TEST_DATA_SEED = 2
TEST_ROI_SEED = 1


def phantom_test_items(n_test: int, classes=CLASSES):
    """The SYNTHETIC phantom test lesions the card's metrics are measured on (seed 2, shifted acquisition)."""
    return generate_lesions(n_test, seed=TEST_DATA_SEED, split="test", classes=classes)


def phantom_test_set(n_test: int, classes=CLASSES, attention: str = "diameter"):
    """The test set as a ``RoiDataset`` through the one sample path (the product's attention by default)."""
    return build_dataset(phantom_test_items(n_test, classes), classes, seed=TEST_ROI_SEED, attention=attention)


def classification_metrics(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy and the majority-class baseline of predicted class indices."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    return {"accuracy": float(accuracy_score(labels, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
            "majority_baseline_accuracy": float(np.bincount(labels, minlength=n_classes).max() / len(labels)),
            "majority_baseline_balanced_accuracy": 1.0 / n_classes, "n": int(len(labels))}


OFFSET_MODES = {
    "reader_offsets": "per-phase offsets = true breath-hold shift + 1.5 mm reader error per axis (a reader or a "
                      "registration gives them: lesion CSV columns offset_<phase>_x/y/z)",
    "zero_offsets": "no per-phase offsets: every phase cut at the marked centre (what a user without "
                    "registration gets)"}


def product_predictions(model, card: dict, items, test, offsets: str = "reader_offsets") -> list:
    """``inference.classify_lesions`` -- what the panel and the batch script run -- on every test lesion,
    with the lesion (centre, diameter, per-phase offsets) the test set was cut for (``offsets=
    'zero_offsets'``: the same lesion without per-phase offsets); ``masks`` of the items in mask mode
    (``test.attention_source``)."""
    from slicercad.liver.roi import Lesion

    if offsets not in OFFSET_MODES:
        raise ValueError(f"offsets must be one of {sorted(OFFSET_MODES)}")
    out = []
    for item, lesion in zip(items, test.lesions):
        if offsets == "zero_offsets":
            lesion = Lesion(lesion.lesion_id, lesion.center, lesion.diameter_mm, lesion.coordinate_system, {})
        masks = {lesion.lesion_id: item.mask} if test.attention_source == "mask" else None
        (r,) = classify_lesions(model, card, item.images, [lesion], phantom_acquisition(item), with_cam=False,
                                masks=masks)
        out.append(r)
    return out


def deterministic_torch() -> None:
    """One thread and deterministic algorithms: bit-identical weights on every machine."""
    from slicercad.liver.fitting import deterministic_torch as _det

    _det()


def product_metrics(results: list, test, offsets: str, n_boot: int = 1000) -> dict:
    """Card metrics of product-path ``results``: accuracy, balanced accuracy, majority baseline, the
    per-lesion predictions, and the engine's metrics with patient-cluster bootstrap CIs and the size-bin
    table (``evaluate_classification(groups=patients)``)."""
    from slicercad.engine.metrics import evaluate_classification, jsonable

    pred = np.array([r["predicted_index"] for r in results])
    proba = np.array([[r["probabilities"][c] for c in CLASSES] for r in results])
    m = classification_metrics(pred, test.labels, len(CLASSES))
    full = evaluate_classification(test.labels, proba, list(CLASSES), sizes_mm=test.diameters_mm, n_boot=n_boot,
                                   seed=0, groups=test.patient_ids)
    m.update(path="inference.classify_lesions (the product path), attention from ROI centre + measured diameter",
             offsets=OFFSET_MODES[offsets], lesion_ids=[r["lesion_id"] for r in results],
             labels=test.labels.tolist(), predicted=pred.tolist(),
             n_with_warnings=int(sum(bool(r["warnings"]) for r in results)),
             accuracy_ci95=full.get("accuracy_ci95"), balanced_accuracy_ci95=full.get("balanced_accuracy_ci95"),
             ci="95 % percentile bootstrap over test patients (cluster)", n_test_patients=len(set(test.patient_ids)),
             by_size=jsonable([{k: b.get(k) for k in ("bin", "n", "accuracy", "accuracy_ci95", "balanced_accuracy",
                                                      "balanced_accuracy_ci95", "majority_baseline")}
                               for b in full.get("by_size", [])]))
    return m


def build(out: Path, n_train: int, n_test: int, epochs: int, seed: int, data_seed: int) -> Path:
    """Train with the task's recipe, evaluate through the product path, save; returns the card path."""
    deterministic_torch()
    t0 = time.time()
    cfg = LIVER_LESION.config({"alpha": ALPHA, "channels": list(CHANNELS), "n_lesions": n_train,
                               "data_seed": data_seed, "split": "train", "use_masks": False})
    train = phantom_dataset(cfg)
    model, temperature, info = train_with_recipe(train, cfg, seed, epochs=epochs)
    distribution = train.distribution()
    items = phantom_test_items(n_test)
    test = build_dataset(items, CLASSES, spec=roi_spec(cfg), seed=TEST_ROI_SEED)
    # the card is written with placeholder metrics first, so the product path reads the real card fields
    training = {"source": "slicercad.synth.liver_lesions_phantom (SYNTHETIC)", "n_train": n_train,
                "train_seed": data_seed, "n_test": n_test, "test_seed": TEST_DATA_SEED, "test_split": "test",
                "test_roi_seed": TEST_ROI_SEED, "epochs": epochs, "seed": seed, "split_by": "patient",
                "recipe": info["recipe"], "n_fit": info["n_train"], "n_calibration": info["n_val"],
                "distribution_measured_on": "all training lesions (fit + calibration split)",
                "command": f"python Scripts/build_liver_model.py --n-train {n_train} --n-test {n_test} "
                           f"--epochs {epochs} --seed {seed} --data-seed {data_seed}"}
    card = model_card(cfg, temperature, NAME, {}, synthetic=True, training=training, distribution=distribution)
    card = dict(card, sha256="(not saved yet)")
    modes = {mode: product_metrics(product_predictions(model, card, items, test, mode), test, mode)
             for mode in OFFSET_MODES}
    test_metrics = modes["reader_offsets"]
    lr = evaluate_baseline(fit_baseline(train, class_weight="balanced"), test)
    metrics = {"phantom_test": test_metrics, "phantom_test_zero_offsets": modes["zero_offsets"],
               "offset_modes": OFFSET_MODES,
               "logistic_regression_roi_means": {**{k: lr[k] for k in ("accuracy", "balanced_accuracy")},
                                                 "class_weight": "balanced",
                                                 "features": "per-phase mean in the measured-diameter disk "
                                                             "(reader offsets) + log diameter"},
               "synthetic": True}
    card = model_card(cfg, temperature, NAME, metrics, synthetic=True, training=training, distribution=distribution)
    card["description"] = ("Demo cyst / hemangioma / metastasis classifier trained ONLY on the SYNTHETIC "
                           "phantom; research use, not for clinical decisions.")
    path = save_model(model, card, out)
    zero = modes["zero_offsets"]
    print(f"SYNTHETIC demo model: test accuracy {test_metrics['accuracy']:.3f} (majority "
          f"{test_metrics['majority_baseline_accuracy']:.3f}), balanced accuracy "
          f"{test_metrics['balanced_accuracy']:.3f} (LR baseline {lr['balanced_accuracy']:.3f}; "
          f"{test_metrics['n_with_warnings']}/{test_metrics['n']} test lesions warned); zero offsets: accuracy "
          f"{zero['accuracy']:.3f}, balanced accuracy {zero['balanced_accuracy']:.3f}; "
          f"{time.time() - t0:.0f} s -> {path}")
    print(readme_paragraph(card))
    return path


def _pct(v) -> str:
    return f"{v:.3f}"


def readme_paragraph(card: dict) -> str:
    """The README's bundled-model paragraph, every number quoted from the card (``make liver-model``
    prints it; paste it between the README's ``liver-card`` markers)."""
    m, t = card["metrics"], card["training_data"]
    r, z, lr = m["phantom_test"], m["phantom_test_zero_offsets"], m["logistic_regression_roi_means"]
    seen = card["input_spec"].get("training_distribution", {}).get("acquisition_seen", {})

    def ci(block, key):
        lo_hi = block.get(f"{key}_ci95")
        return f"{_pct(block[key])}" + (f" [95 % CI {lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")

    verdicts = []
    for name, block in (("reader offsets", r), ("zero offsets", z)):
        if block["accuracy"] < block["majority_baseline_accuracy"]:
            verdicts.append(f"with {name} its accuracy is BELOW the majority-class baseline")
        if block["balanced_accuracy"] < lr["balanced_accuracy"]:
            verdicts.append(f"with {name} its balanced accuracy is BELOW the logistic-regression baseline")
    verdict = ("Plainly: " + "; ".join(verdicts) + ".") if verdicts else "It is above both baselines in both offset modes."
    fs = ", ".join(f"{v:g}" for v in seen.get("field_strength_t", [])) or "?"
    bv = ", ".join(f"{v:g}" for v in seen.get("b_value", [])) or "?"
    return (f"Bundled model `{card['name']}` (card `Resources/Models/{card['name']}.json`, SYNTHETIC training data "
            f"only): trained on {t['n_train']} phantom lesions (field strength {fs} T, b = {bv} s/mm², as measured "
            f"in the card's `training_distribution`), {t['epochs']} epochs of the task's recipe. On {r['n']} phantom "
            f"test lesions ({r['n_test_patients']} patients, shifted test acquisition) through the product path "
            f"(`classify_lesions`), with reader offsets: accuracy {ci(r, 'accuracy')} (majority-class baseline "
            f"{_pct(r['majority_baseline_accuracy'])}), balanced accuracy {ci(r, 'balanced_accuracy')}; with zero "
            f"offsets (no registration): accuracy {ci(z, 'accuracy')}, balanced accuracy "
            f"{ci(z, 'balanced_accuracy')}. Logistic regression on per-phase ROI means (class-weighted): accuracy "
            f"{_pct(lr['accuracy'])}, balanced accuracy {_pct(lr['balanced_accuracy'])}. {verdict} "
            f"{r['n_with_warnings']}/{r['n']} test lesions carried a warning or note (reader offsets). CIs resample "
            "test patients.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--readme", type=Path, help="rewrite the paragraph between this README's liver-card markers")
    args = parser.parse_args(argv)
    path = build(args.out, args.n_train, args.n_test, args.epochs, args.seed, args.data_seed)
    if args.readme:
        import json

        update_readme(args.readme, readme_paragraph(json.loads(Path(path).read_text())))
    return 0


README_MARKERS = ("<!-- liver-card:begin -->", "<!-- liver-card:end -->")


def update_readme(readme: Path, paragraph: str) -> Path:
    """Replace the text between the README's ``liver-card`` markers with ``paragraph`` (only there)."""
    text = Path(readme).read_text()
    begin, end = README_MARKERS
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"{readme}: expected one {begin} and one {end}")
    a, b = text.index(begin) + len(begin), text.index(end)
    Path(readme).write_text(text[:a] + "\n" + paragraph + "\n" + text[b:])
    return Path(readme)


if __name__ == "__main__":
    sys.exit(main())
