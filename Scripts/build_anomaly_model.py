"""Rebuild Resources/Models/anomaly_glow_{head3d,cxr2d}_demo.* (``make anomaly-model``): Glow trained on
SYNTHETIC normal phantoms with the task's recipe, deterministic by seed, calibrated on held-out normals; the
card's metrics are measured through the product path (``Detector.score_image``) on held-out phantoms, beside
the atlas z-score baseline on the same samples, with patient-bootstrap CIs; a few per-case scores are kept so a
test can re-check them."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from slicercad.anomaly import task as T  # noqa: E402
from slicercad.anomaly.baselines import AtlasZ  # noqa: E402
from slicercad.anomaly.detector import Detector  # noqa: E402
from slicercad.anomaly.experiment import auc_ci  # noqa: E402
from slicercad.engine.registry import BUNDLED_DIR, save_model  # noqa: E402
from slicercad.engine.tasks import get_task  # noqa: E402

N_EVAL = 12


def build(kind: str, out: Path, n_train=96, n_val=32, epochs=None, seed=0) -> Path:
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    name = T.task_for(kind, "glow")
    spec = get_task(name)
    cfg = spec.config({"n_normals": n_train + n_val, "data_seed": seed})
    data = spec.make_dataset(cfg)
    x = data.x
    model = spec.build_model(cfg)
    epochs = epochs or T.epochs_for_steps(n_train, T.RECIPE["batch_size"], T.STEP_BUDGET)
    info = T.fit_detector(model, x[:n_train], x[n_train:], epochs, T.RECIPE["batch_size"], T.RECIPE["lr"], seed)
    det = Detector(model, {"task": name, "input_spec": spec.spec_for(cfg)})
    if kind == T.HEAD:
        from slicercad.synth.anomaly_head import insert_anomaly, normal_head as make
        lesion = ("ich", 14.0, 25.0)
    else:
        from slicercad.synth.anomaly_cxr import insert_anomaly, normal_cxr as make
        lesion = ("nodule", 18.0, 0.12)
    scores, labels, checks, samples, groups = [], [], [], [], []
    for i in range(N_EVAL):
        s = 900_000 + i
        ph = make(s)
        for is_anom in (0, 1):
            img = insert_anomaly(ph, *lesion, seed=s)[0] if is_anom else ph.image
            r = det.score_image(img, ph.patient_id)
            scores.append((r.score, r.map_score))
            labels.append(is_anom)
            samples.append(r.sample.stacked())
            groups.append(ph.patient_id)
            if i < 2:
                checks.append({"seed": s, "anomaly": list(lesion) if is_anom else None, "score": r.score,
                               "map_score": r.map_score})
    scores, pos = np.array(scores), np.array(labels, bool)
    atlas = AtlasZ(x[:n_train].numpy()).scores(np.stack(samples))      # the simple baseline on the same cases
    auc, map_auc, atlas_auc = (auc_ci(pos, v, groups, 1000, seed) for v in (scores[:, 0], scores[:, 1], atlas))
    card = {"name": f"{name.replace('anomaly_', 'anomaly_')}_demo", "task": name, "kind": "likelihood",
            "model_config": cfg, "input_spec": spec.spec_for(cfg), "classes": ["normal", "anomalous"],
            "training_data": {"synthetic": True, "phantom": f"slicercad.synth.anomaly_{'head' if kind == T.HEAD else 'cxr'}",
                              "n_train_normals": n_train, "n_calibration_normals": n_val, "seed": seed},
            "metrics": {"synthetic": True, "product_path_auc": auc["auc"], "product_path_map_auc": map_auc["auc"],
                        "atlas_z_auc": atlas_auc["auc"],
                        "ci_95": {"product_path_auc": auc["ci"], "product_path_map_auc": map_auc["ci"],
                                  "atlas_z_auc": atlas_auc["ci"], "bootstrap": "1000 resamples of patients"},
                        "eval": f"{N_EVAL} held-out normals vs the same with {lesion[0]} {lesion[1]} mm / "
                                f"{lesion[2]}", "map_threshold": info["map_threshold"],
                        "check_cases": checks},
            "training": {"epochs": epochs, "step_budget": T.STEP_BUDGET,
                         "recipe": {k: v for k, v in T.RECIPE.items() if k != "epochs"}, "final_train_bpd": info["history"][-1]["train_bpd"]},
            "temperature": 1.0,
            "score": "bits/dim over the likelihood mask (slicercad.anomaly.scoring); variant = bpd - zlib complexity; "
                     "map score = top 1% mean of the standardised map"}
    path = save_model(model, card, out)
    print(f"{path}: AUC {auc['auc']:.3f}, map score AUC {map_auc['auc']:.3f}, atlas_z {atlas_auc['auc']:.3f} "
          f"(SYNTHETIC), {time.perf_counter() - t0:.0f} s, "
          f"{(out / (card['name'] + '.safetensors')).stat().st_size / 1e6:.2f} MB")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(BUNDLED_DIR))
    p.add_argument("--kinds", nargs="+", default=["head_ct", "cxr"])
    p.add_argument("--epochs", type=int, help="default: task.STEP_BUDGET optimiser steps")
    p.add_argument("--n-train", type=int, default=48)
    p.add_argument("--n-val", type=int, default=24)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    for kind in args.kinds:
        build(kind, Path(args.out), n_train=args.n_train, n_val=args.n_val, epochs=args.epochs)


if __name__ == "__main__":
    main()
