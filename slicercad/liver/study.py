"""Seed 000's questions, measured on the SYNTHETIC phantom: size-bin table, alpha study, Grad-CAM focus.

Every sample comes from ``dataset.lesion_sample`` with attention from the ROI centre + measured
diameter (the product's input); the mask mode is a separate table.

- Table 1: per size bin (<10, 10-20, >=20 mm) precision/recall per class, accuracy beside the
  majority baseline and balanced accuracy, bootstrap CIs over patients (engine
  ``evaluate_classification(groups=patients)``).
- Attention study (``alpha_study``): no attention vs alpha in {0, 0.1, 0.5, 1.0}, >= 5 training
  seeds, each trained with the task's recipe (``recipe_trainer``). For EVERY arm (no attention
  included): balanced accuracy, Grad-CAM focus score and the occlusion test, each also for the
  arm's OWN randomised-weights null (the same model, attention included, re-initialised). Raw
  focus and occlusion are confounded by the attention itself (G*I + alpha*I dims the surroundings,
  which concentrates any CAM on the lesion, and attenuates a control pasted where G is small), so
  arms are compared on the excess over their own null. Each arm is compared with alpha = 0.1 by a
  paired patient-cluster bootstrap (the same resampled test patients and training seeds for both
  arms); p-values Holm-corrected per measure over the arms, and over all arms x measures.
- Focus score: CAM mass inside the lesion / lesion area fraction (1 = no preference). The area
  normalisation does NOT remove attention's dimming (a dimmed surround carries less CAM mass
  whatever the weights): hence the randomised-weights null per arm.
- Occlusion: the change of the prediction when the lesion's pixels are replaced by the median of
  the surroundings, against a control of the same magnitude in the image: the lesion's own pixels
  pasted at another position of the ROI (away from the lesion). The control's size where the
  network sees it, after the (G + alpha) weighting, is reported per arm (``input_change_*``): an
  attention arm sees it attenuated. ``occlusion_test`` on an oracle that reads only lesion pixels
  shows the control can come out either way (Testing).
"""
from __future__ import annotations

import numpy as np

from ..engine.gradcam import grad_cam
from ..engine.metrics import evaluate_classification, holm
from .controls import focus_scores, occlusion_test, randomised_copy
from .fitting import dataset_tensor, predict_proba, train_network
from .model import GRADCAM_LAYER

ALPHAS = (None, 0.0, 0.1, 0.5, 1.0)


def size_bin_table(model, temperature, ds, n_boot: int = 1000, seed: int = 0) -> dict:
    """Engine classification metrics overall and per size bin (<10, 10-20, >=20 mm); synthetic."""
    proba = predict_proba(model, temperature, ds)
    out = evaluate_classification(ds.labels, proba, list(ds.classes), sizes_mm=ds.diameters_mm, n_boot=n_boot,
                                  seed=seed, groups=ds.patient_ids)
    out["synthetic"] = True
    return out


def _acc(proba, labels):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    pred = proba.argmax(1)
    return float(accuracy_score(labels, pred)), float(balanced_accuracy_score(labels, pred))


def _weighted_balanced_accuracy(weights: np.ndarray, correct: np.ndarray, labels: np.ndarray, n_classes) -> np.ndarray:
    """Balanced accuracy under each row of case ``weights`` [B, N]."""
    recalls = []
    for c in range(n_classes):
        sel = labels == c
        if not sel.any():
            continue
        w = weights[:, sel]
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((w * correct[sel]).sum(1) / w.sum(1))
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.vstack(recalls), axis=0)


def _weighted_mean(weights, values) -> np.ndarray:
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights[:, ok] * v[ok]).sum(1) / weights[:, ok].sum(1)


def paired_cluster_bootstrap(arm: dict, ref: dict, labels, groups, n_classes: int, n_boot: int = 2000,
                             seed: int = 0, measures=("balanced_accuracy", "focus", "occlusion_excess",
                                                      "focus_over_null", "occlusion_over_null")) -> dict:
    """Arm minus reference, paired: the same resampled test patients (cluster bootstrap over
    ``groups``) and the same resampled training seeds for both arms.

    ``arm`` / ``ref``: {"pred": [S, N] predicted class per seed, "focus": [S, N], "change_lesion": [S, N],
    "change_control": [S, N]} (NaN where undefined). Returns per measure the observed mean
    difference, its 95 % percentile interval and a two-sided bootstrap p-value
    ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))`` (with +1 smoothing)."""
    from ..engine.metrics import bootstrap_weights, percentile_ci

    labels = np.asarray(labels)
    n_seeds = np.asarray(arm["pred"]).shape[0]
    rng = np.random.default_rng(seed)
    W = bootstrap_weights(len(labels), groups, n_boot, rng)                     # [B, N]
    seed_draw = rng.integers(0, n_seeds, size=(n_boot, n_seeds))                # [B, S]
    ones = np.ones((1, len(labels)))

    def values(block, measure):
        if measure == "occlusion_excess":     # lesion-occlusion change minus control change
            return np.asarray(block["change_lesion"], float) - np.asarray(block["change_control"], float)
        return np.asarray(block[measure], float)

    def needs(measure):
        if measure == "balanced_accuracy":
            return ("pred",)
        return ("change_lesion", "change_control") if measure == "occlusion_excess" else (measure,)

    def per_seed(block, measure, weights):                                      # [B, S]
        if measure == "balanced_accuracy":
            pred = np.asarray(block["pred"])
            return np.stack([_weighted_balanced_accuracy(weights, pred[s] == labels, labels, n_classes)
                             for s in range(n_seeds)], 1)
        v = values(block, measure)
        return np.stack([_weighted_mean(weights, v[s]) for s in range(n_seeds)], 1)

    result = {}
    for measure in measures:
        need = needs(measure)
        if not all(k in arm and k in ref for k in need):
            continue
        seeds = per_seed(arm, measure, ones) - per_seed(ref, measure, ones)      # NaN: a seed with no defined value
        obs = float(np.nanmean(seeds)) if np.isfinite(seeds).any() else float("nan")
        diff = np.take_along_axis(per_seed(arm, measure, W) - per_seed(ref, measure, W), seed_draw, axis=1).mean(1)
        diff = diff[np.isfinite(diff)]
        p = min(1.0, 2.0 * min((np.sum(diff <= 0) + 1) / (len(diff) + 1), (np.sum(diff >= 0) + 1) / (len(diff) + 1)))
        result[measure] = {"mean_difference": obs, "ci95": percentile_ci(diff), "p_bootstrap": float(p)}
    result.update(n_boot=int(n_boot), resampling="test patients (cluster) x training seeds, paired across arms")
    return result


def _arm_scores(model, t, x_test, test_ds, null_seed: int) -> dict:
    """Per-lesion focus and occlusion of one trained model and of its own randomised-weights null (same
    architecture and attention setting, re-initialised weights)."""
    n = len(x_test)
    out = {}
    for tag, m in (("", model), ("_null", randomised_copy(model, null_seed))):
        out["focus" + tag] = focus_scores(grad_cam(m, x_test, GRADCAM_LAYER), test_ds.masks)
        occ = occlusion_test(m, t, x_test, test_ds.labels, test_ds.masks, seed=0)
        for key in ("change_lesion", "change_control", "input_change_lesion", "input_change_control"):
            v = np.full(n, np.nan)
            if occ["n_occluded"]:
                v[occ["lesion_ids_index"]] = occ[key]
            out[key + tag] = v
    out["focus_over_null"] = out["focus"] - out["focus_null"]
    out["occlusion_over_null"] = ((out["change_lesion"] - out["change_control"])
                                  - (out["change_lesion_null"] - out["change_control_null"]))
    return out


MEASURES = ("balanced_accuracy", "focus_over_null", "occlusion_over_null")


def alpha_study(train_ds, test_ds, alphas=ALPHAS, seeds=(0, 1, 2, 3, 4), reference=0.1, n_boot: int = 2000,
                with_focus: bool = True, trainer=None, progress=None, models: dict | None = None,
                **train_kw) -> dict:
    """Every arm (``alphas``; None = no attention) trained with every seed on ``train_ds`` and scored on
    ``test_ds``: accuracy, balanced accuracy, focus score and occlusion per seed, each also for the
    arm's OWN randomised-weights null (the same model re-initialised: attention arms attenuate the
    pasted control and dim the surroundings by design, so raw focus / occlusion are not comparable
    across arms; the excess over the own null is). Between arms (each against ``reference``, by
    ``paired_cluster_bootstrap``): balanced accuracy, focus excess over null, occlusion excess over
    null; Holm-corrected per measure over the arms (``p_holm``) and over all arms x measures
    (``p_holm_all``). ``trainer(ds, alpha, seed) -> (model, temperature)`` (default ``train_network``
    with ``train_kw``; ``recipe_trainer()`` trains with the task's recipe); ``progress(text)`` after
    each training; ``models``: filled with {(arm, seed): (model, temperature)}."""
    import time

    if trainer is None:
        trainer = lambda ds, a, s: train_network(ds, a, s, **train_kw)   # noqa: E731
    rows, blocks = {}, {}
    x_test = dataset_tensor(test_ds)
    t_start = time.time()
    score_keys = ("focus", "focus_null", "focus_over_null", "change_lesion", "change_control", "change_lesion_null",
                  "change_control_null", "occlusion_over_null", "input_change_lesion", "input_change_control")
    for a in alphas:
        key = "none" if a is None else f"{a:g}"
        accs, baccs, preds = [], [], []
        scores = {k: [] for k in score_keys}
        for s in seeds:
            t0 = time.time()
            model, t = trainer(train_ds, a, s)
            if models is not None:
                models[(key, s)] = (model, t)
            proba = predict_proba(model, t, test_ds)
            acc, bacc = _acc(proba, test_ds.labels)
            accs.append(acc)
            baccs.append(bacc)
            preds.append(proba.argmax(1))
            if with_focus:
                arm = _arm_scores(model, t, x_test, test_ds, null_seed=1000 + int(s))
                for k in score_keys:
                    scores[k].append(arm[k])
            if progress is not None:
                progress(f"arm {'no attention' if a is None else 'alpha=' + key} seed {s}: trained and scored in "
                         f"{time.time() - t0:.0f} s (elapsed {time.time() - t_start:.0f} s); balanced acc {bacc:.3f}")
        row = {"alpha": a, "accuracy": accs, "balanced_accuracy": baccs,
               "accuracy_mean": float(np.mean(accs)), "balanced_accuracy_mean": float(np.mean(baccs))}
        block = {"pred": np.stack(preds)}
        if with_focus:
            block.update({k: np.stack(v) for k, v in scores.items()})
            row.update(focus_mean=float(np.nanmean(block["focus"])),
                       focus_null_mean=float(np.nanmean(block["focus_null"])),
                       focus_over_null_mean=float(np.nanmean(block["focus_over_null"])),
                       occlusion_change_lesion_mean=float(np.nanmean(block["change_lesion"])),
                       occlusion_change_control_mean=float(np.nanmean(block["change_control"])),
                       occlusion_null_change_lesion_mean=float(np.nanmean(block["change_lesion_null"])),
                       occlusion_null_change_control_mean=float(np.nanmean(block["change_control_null"])),
                       occlusion_over_null_mean=float(np.nanmean(block["occlusion_over_null"])),
                       input_change_lesion_mean=float(np.nanmean(block["input_change_lesion"])),
                       input_change_control_mean=float(np.nanmean(block["input_change_control"])))
        rows[key], blocks[key] = row, block
    ref = "none" if reference is None else f"{reference:g}"
    comparisons = {k: paired_cluster_bootstrap(blocks[k], blocks[ref], test_ds.labels, test_ds.patient_ids,
                                               len(test_ds.classes), n_boot, seed=0, measures=MEASURES)
                   for k in rows if k != ref} if len(seeds) > 1 else {}
    measures = [m for m in MEASURES if any(m in c for c in comparisons.values())]
    for m in measures:
        adjusted = holm({k: c[m]["p_bootstrap"] for k, c in comparisons.items() if m in c})
        for k, p in adjusted.items():
            comparisons[k][m]["p_holm"] = p
    every = holm({(k, m): c[m]["p_bootstrap"] for k, c in comparisons.items() for m in measures if m in c})
    for (k, m), p in every.items():
        comparisons[k][m]["p_holm_all"] = p
    for k, c in comparisons.items():
        rows[k]["vs_" + ref] = c
    return {"rows": rows, "seeds": list(seeds), "reference": ref, "n_test": int(len(test_ds.labels)),
            "n_test_patients": int(len(set(test_ds.patient_ids))), "measures": measures,
            "correction": "Holm per measure over the arms (p_holm); Holm over all arms x measures in p_holm_all",
            "null": "each arm's own randomised-weights copy (same architecture and attention, re-initialised)",
            "test": "paired patient-cluster bootstrap (test patients x training seeds)", "synthetic": True,
            "attention_source": getattr(test_ds, "attention_source", "diameter")}
