"""Rebuild the bundled RenalMassCAD demo model (``Resources/Models/renal_mass_demo``) from the SYNTHETIC renal
phantom, deterministically by seed (one torch thread, deterministic algorithms).

``slicercad.renal.bundle.build_bundle`` trains the 4 per-phase CNNs and the multi-phase CNN on the training
patients (phantom seed ``--data-seed``) with ``study.RECIPE``, and fits the combined and image-only logistic
models and every cut-off on inner out-of-fold scores, as each cross-validation fold does; the card's metrics are those of
``bundle.product_metrics`` -- every held-out phantom case (seed ``TEST_SEED``) through
``inference.assess_masses``, the product path -- beside the majority-class, ROI-mean-HU and clinical-only
baselines (Testing/test_renal_demo_model.py re-runs the product on the stored cases). The card says
``synthetic: true``. Run: ``make renal-model``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEST_SEED = 2


def build(out, n_train: int, n_test: int, epochs: int, seed: int, data_seed: int) -> Path:
    from slicercad.engine.metrics import jsonable
    from slicercad.engine.registry import save_model
    from slicercad.liver.fitting import deterministic_torch
    from slicercad.renal.bundle import DEMO_MODEL, build_bundle, product_metrics
    from slicercad.renal.phantom import generate_cases

    deterministic_torch()
    t0 = time.time()
    bundle, card = build_bundle(generate_cases(n_train, data_seed), seed, {"epochs": epochs}, DEMO_MODEL)
    card["training_data"].update(n_patients=n_train, data_seed=data_seed, test_seed=TEST_SEED, n_test_patients=n_test,
                                 command=f"python Scripts/build_renal_model.py --n-train {n_train} --n-test {n_test} "
                                         f"--epochs {epochs} --seed {seed} --data-seed {data_seed}")
    card["sha256"] = "(not saved yet)"
    card["metrics"] = jsonable({"synthetic": True, "phantom_test": product_metrics(bundle, card,
                                                                                   generate_cases(n_test, TEST_SEED))})
    card["description"] = ("Demo renal mass model (4 per-phase CNNs + multi-phase CNN + logistic models with age, "
                           "sex and size) trained ONLY on the SYNTHETIC renal phantom; research use, not for "
                           "clinical decisions.")
    card.pop("sha256")
    path = save_model(bundle, card, out)
    m = card["metrics"]["phantom_test"]
    print(f"SYNTHETIC renal model: combined AUC {m['combined']['auc']:.3f}, accuracy {m['combined']['accuracy']:.3f} "
          f"(majority {m['majority_baseline_accuracy']:.3f}); ROI-mean-HU LR AUC "
          f"{m['baselines']['roi_mean_hu_lr']['auc']:.3f}; {m['n_masses']} test masses ({m['n_benign']} benign); "
          f"{time.time() - t0:.0f} s -> {path}")
    return path


def main(argv=None) -> int:
    from slicercad.engine.registry import BUNDLED_DIR

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=BUNDLED_DIR)
    ap.add_argument("--n-train", type=int, default=200, help="SYNTHETIC training patients")
    ap.add_argument("--n-test", type=int, default=100, help="SYNTHETIC held-out test patients")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=1)
    args = ap.parse_args(argv)
    build(args.out, args.n_train, args.n_test, args.epochs, args.seed, args.data_seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
