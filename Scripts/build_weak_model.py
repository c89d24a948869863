"""Rebuild the bundled WeakLabelSegmenter model (``Resources/Models/weak_lesion_demo``) from the SYNTHETIC
lesion phantom, deterministically (one CPU thread, deterministic algorithms, fixed seeds).

Trains the ``weak_lesion`` U-Net (channels 16/32/64, no residual units, canonical 32^3 crop over 2.5 x
diameter, inversion + gamma augmentation, simulated correction clicks) on all three phantom lesion types
through the engine,
then measures Dice on a phantom test set (another seed, report-like rough prompts) through the product
path (``slicercad.weak.segment.segment_lesion``) and writes the card with ``synthetic: true``.
Run: ``make weak-model``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slicercad.engine.registry import BUNDLED_DIR, save_model  # noqa: E402
from slicercad.synth.weak_lesions import TYPES  # noqa: E402
from slicercad.weak.experiment import TEST_SEED, predict_masks, quick_score, rough_prompts, train_segmenter  # noqa: E402
from slicercad.weak.segment import DEMO_MODEL  # noqa: E402
from slicercad.weak.task import model_card, phantom_lesions  # noqa: E402


def card_metrics(model, card, n_test: int) -> dict:
    """Dice per lesion type on the SYNTHETIC test phantom through the product path (rough prompts)."""
    out = {}
    for t in TYPES:
        lesions = list(phantom_lesions(t, n_test, TEST_SEED))
        out[t] = quick_score(predict_masks("unet", lesions, rough_prompts(lesions), model, card), lesions)
    return out


def build(out: Path, n_train: int, n_test: int, epochs: int, seed: int) -> Path:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model, trained = train_segmenter(list(TYPES), True, n_train, epochs, seed, tmp)
    metrics = {"phantom_test_dice": card_metrics(model, trained, n_test), "synthetic": True,
               "prompts": "rough: centre up to 0.25 x d off, size x U(0.8, 1.2), seed 3", "n_test_per_type": n_test}
    cfg = dict(trained["model_config"])
    training = {"source": "slicercad.synth.weak_lesions (SYNTHETIC)", "types": list(TYPES), "n_train_per_type": n_train,
                "train_seed": cfg["data_seed"], "test_seed": TEST_SEED, "epochs": epochs, "seed": seed,
                "split_by": "patient", "training": trained.get("training"),
                "command": f"python Scripts/build_weak_model.py --n-train {n_train} --n-test {n_test} "
                           f"--epochs {epochs} --seed {seed}"}
    card = model_card(cfg, DEMO_MODEL, metrics, synthetic=True, training=training)
    card["description"] = ("Demo semi-automatic lesion segmenter (centre + diameter -> mask) trained ONLY on "
                           "the SYNTHETIC lesion phantom; research use, not for clinical decisions.")
    path = save_model(model, card, out)
    print("SYNTHETIC weak-label model: Dice " + ", ".join(f"{t} {m['mean']:.3f}" for t, m in
                                                       metrics["phantom_test_dice"].items())
          + f"; {time.time() - t0:.0f} s -> {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--n-train", type=int, default=50, help="SYNTHETIC training lesions per type")
    parser.add_argument("--n-test", type=int, default=20, help="SYNTHETIC test lesions per type")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.out, args.n_train, args.n_test, args.epochs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
