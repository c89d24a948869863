"""Rebuild the bundled LiverLesionCAD demo model (``Resources/Models/liver_lesion_demo``) from the
SYNTHETIC phantom, deterministically by seed.

Trains ``LiverLesionNet`` (alpha 0.1, channels 16/32/64; ``study.train_network``'s recipe with flips,
rotations, per-phase gamma / noise / 1-pixel misregistration augmentation, 30 epochs -- chosen by 5-fold
patient-level cross-validation on the training phantom, never on the test set) on phantom lesions drawn
with ``--data-seed`` (train acquisition), fits the temperature on a patient-level validation split, and
evaluates on a phantom test set with another seed and the shifted test acquisition, beside the
majority-class baseline and the logistic-regression baseline on per-phase ROI means. The card says
``synthetic: true``. Run: ``make liver-model`` (about 2 minutes on 2 CPU cores).
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
from slicercad.liver.dataset import build_dataset  # noqa: E402
from slicercad.liver.study import predict_proba, train_network  # noqa: E402
from slicercad.liver.task import model_card  # noqa: E402
from slicercad.synth.liver_lesions import CLASSES  # noqa: E402
from slicercad.synth.liver_lesions_phantom import generate_lesions  # noqa: E402

NAME = "liver_lesion_demo"
ALPHA = 0.1
CHANNELS = (16, 32, 64)
TEST_DATA_SEED = 2
TEST_ROI_SEED = 1


def phantom_test_set(n_test: int, classes=CLASSES):
    """The SYNTHETIC phantom test set the card's metrics are measured on (seed 2, shifted acquisition)."""
    return build_dataset(generate_lesions(n_test, seed=TEST_DATA_SEED, split="test", classes=classes), classes,
                         seed=TEST_ROI_SEED)


def classification_metrics(proba: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy and the majority-class baseline of calibrated probabilities."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    pred = proba.argmax(1)
    return {"accuracy": float(accuracy_score(labels, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
            "majority_baseline_accuracy": float(np.bincount(labels, minlength=n_classes).max() / len(labels)),
            "majority_baseline_balanced_accuracy": 1.0 / n_classes, "n": int(len(labels))}


def build(out: Path, n_train: int, n_test: int, epochs: int, seed: int, data_seed: int) -> Path:
    """Train, evaluate and save the demo model; returns the card path."""
    torch.set_num_threads(1)          # one thread: bit-identical weights on every machine
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    train = build_dataset(generate_lesions(n_train, seed=data_seed, split="train"), CLASSES, seed=data_seed)
    test = phantom_test_set(n_test)
    model, temperature = train_network(train, ALPHA, seed, epochs, CHANNELS)
    test_metrics = classification_metrics(predict_proba(model, temperature, test), test.labels, len(CLASSES))
    lr = evaluate_baseline(fit_baseline(train), test)
    metrics = {"phantom_test": test_metrics,
               "logistic_regression_roi_means": {k: lr[k] for k in ("accuracy", "balanced_accuracy")},
               "synthetic": True}
    cfg = {"classes": "report", "alpha": ALPHA, "channels": list(CHANNELS), "dropout": 0.2, "roi_px": 64}
    training = {"source": "slicercad.synth.liver_lesions_phantom (SYNTHETIC)", "n_train": n_train,
                "train_seed": data_seed, "n_test": n_test, "test_seed": TEST_DATA_SEED, "test_split": "test",
                "epochs": epochs, "seed": seed, "split_by": "patient",
                "command": f"python Scripts/build_liver_model.py --n-train {n_train} --n-test {n_test} "
                           f"--epochs {epochs} --seed {seed} --data-seed {data_seed}"}
    card = model_card(cfg, temperature, NAME, metrics, synthetic=True, training=training)
    card["description"] = ("Demo cyst / hemangioma / metastasis classifier trained ONLY on the SYNTHETIC "
                           "phantom; research use, not for clinical decisions.")
    path = save_model(model, card, out)
    print(f"SYNTHETIC demo model: test accuracy {test_metrics['accuracy']:.3f} (majority "
          f"{test_metrics['majority_baseline_accuracy']:.3f}), balanced accuracy "
          f"{test_metrics['balanced_accuracy']:.3f} (LR baseline {lr['balanced_accuracy']:.3f}); "
          f"{time.time() - t0:.0f} s -> {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=1)
    args = parser.parse_args(argv)
    build(args.out, args.n_train, args.n_test, args.epochs, args.seed, args.data_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
