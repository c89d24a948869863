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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slicercad.engine.registry import BUNDLED_DIR, save_model  # noqa: E402
from slicercad.liver.baseline import evaluate_baseline, fit_baseline  # noqa: E402
from slicercad.liver.dataset import build_dataset, phantom_acquisition  # noqa: E402
from slicercad.liver.inference import classify_lesions  # noqa: E402
from slicercad.liver.task import LIVER_LESION, RECIPE, model_card, phantom_dataset, train_with_recipe  # noqa: E402
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


def product_predictions(model, card: dict, items, test) -> list:
    """``inference.classify_lesions`` -- what the panel and the batch script run -- on every test lesion,
    with the lesion (centre, diameter, per-phase offsets) the test set was cut for; ``masks`` of the
    items in mask mode (``test.attention_source``)."""
    out = []
    for item, lesion in zip(items, test.lesions):
        masks = {lesion.lesion_id: item.mask} if test.attention_source == "mask" else None
        (r,) = classify_lesions(model, card, item.images, [lesion], phantom_acquisition(item), with_cam=False,
                                masks=masks)
        out.append(r)
    return out


def build(out: Path, n_train: int, n_test: int, epochs: int, seed: int, data_seed: int) -> Path:
    """Train with the task's recipe, evaluate through the product path, save; returns the card path."""
    torch.set_num_threads(1)          # one thread: bit-identical weights on every machine
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    cfg = LIVER_LESION.config({"alpha": ALPHA, "channels": list(CHANNELS), "n_lesions": n_train,
                               "data_seed": data_seed, "split": "train", "use_masks": False})
    train = phantom_dataset(cfg)
    model, temperature, info = train_with_recipe(train, cfg, seed, epochs=epochs)
    distribution = train.distribution()
    items = phantom_test_items(n_test)
    test = build_dataset(items, CLASSES, seed=TEST_ROI_SEED)
    # the card is written with placeholder metrics first, so the product path reads the real card fields
    training = {"source": "slicercad.synth.liver_lesions_phantom (SYNTHETIC)", "n_train": n_train,
                "train_seed": data_seed, "n_test": n_test, "test_seed": TEST_DATA_SEED, "test_split": "test",
                "test_roi_seed": TEST_ROI_SEED, "epochs": epochs, "seed": seed, "split_by": "patient",
                "recipe": info["recipe"], "n_fit": info["n_train"], "n_calibration": info["n_val"],
                "command": f"python Scripts/build_liver_model.py --n-train {n_train} --n-test {n_test} "
                           f"--epochs {epochs} --seed {seed} --data-seed {data_seed}"}
    card = model_card(cfg, temperature, NAME, {}, synthetic=True, training=training, distribution=distribution)
    card = dict(card, sha256="(not saved yet)")
    results = product_predictions(model, card, items, test)
    pred = np.array([r["predicted_index"] for r in results])
    test_metrics = classification_metrics(pred, test.labels, len(CLASSES))
    test_metrics.update(path="inference.classify_lesions (the product path), attention from ROI centre + "
                             "measured diameter", lesion_ids=[r["lesion_id"] for r in results],
                        labels=test.labels.tolist(), predicted=pred.tolist(),
                        n_with_warnings=int(sum(bool(r["warnings"]) for r in results)))
    lr = evaluate_baseline(fit_baseline(train), test)
    metrics = {"phantom_test": test_metrics,
               "logistic_regression_roi_means": {k: lr[k] for k in ("accuracy", "balanced_accuracy")},
               "synthetic": True}
    card = model_card(cfg, temperature, NAME, metrics, synthetic=True, training=training, distribution=distribution)
    card["description"] = ("Demo cyst / hemangioma / metastasis classifier trained ONLY on the SYNTHETIC "
                           "phantom; research use, not for clinical decisions.")
    path = save_model(model, card, out)
    print(f"SYNTHETIC demo model: test accuracy {test_metrics['accuracy']:.3f} (majority "
          f"{test_metrics['majority_baseline_accuracy']:.3f}), balanced accuracy "
          f"{test_metrics['balanced_accuracy']:.3f} (LR baseline {lr['balanced_accuracy']:.3f}; "
          f"{test_metrics['n_with_warnings']}/{len(pred)} test lesions warned); {time.time() - t0:.0f} s -> {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=1)
    args = parser.parse_args(argv)
    build(args.out, args.n_train, args.n_test, args.epochs, args.seed, args.data_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
