"""The product bundle of RenalMassCAD (``renal_mass_bundle``): training on SYNTHETIC cases and the card's metrics
measured through the product path.

``build_bundle``: what cross-validation fits on each outer training fold (``study.fit_training_set``), on all
training patients: the 4 per-phase CNNs and the multi-phase CNN trained on every training patient; their
Youden cut-offs on out-of-fold CNN scores of an inner patient-level 2-fold split (one CNN per half); on those
out-of-fold scores the combined logistic model (4 CNN logits + age + male + size), the image-only model (4
logits; used when age or sex is missing) and the ROI-mean-HU and clinical-only baselines, each with its
Youden cut-off on its own inner out-of-fold probabilities (``logistic.nested_fit``). The card holds the
input spec (HU, the 4 phases, masses 5-40 mm) and the measured SYNTHETIC training distribution.

``product_metrics``: every held-out SYNTHETIC case through ``inference.assess_masses`` -- what the panel and
the batch CLI run -- and the AUC per model with patient-cluster bootstrap CIs, the combined model's accuracy /
sensitivity / specificity at the card's cut-off, the same for the image-only fall-back (the masses again with
age and sex removed), the majority-class baseline and the two LR baselines on the
same masses; the per-mass outputs are stored so a test can re-run the product on them.
"""
from __future__ import annotations

import numpy as np

from ..engine.metrics import bootstrap_weights, percentile_ci, weighted_auc
from ..errors import InputError
from .constants import CLASSES, CLINICAL_FEATURES, PHASES, SIZE_LIMIT_MM
from .logistic import predict
from .study import COMBINED_FEATURES, MODELS, RECIPE, fit_training_set, outer_folds

BUNDLE_TASK = "renal_mass_bundle"
DEMO_MODEL = "renal_mass_demo"
IMAGE_ONLY_FEATURES = COMBINED_FEATURES[:4]
BASELINES = {"roi_mean_hu_lr": [f"mean_hu_{p}" for p in PHASES], "clinical_lr": list(CLINICAL_FEATURES)}


def demo_model_path():
    """The bundled card ``Resources/Models/renal_mass_demo.json`` (``make renal-model``)."""
    from ..engine.registry import BUNDLED_DIR

    return BUNDLED_DIR / f"{DEMO_MODEL}.json"


def _range(v):
    return [round(float(np.min(v)), 1), round(float(np.max(v)), 1)]


def training_distribution(ds) -> dict:
    """What the SYNTHETIC training masses span (the card's ``input_spec.training_distribution``)."""
    return {"synthetic": True, "source": "slicercad.renal.phantom (KiTS23 small-mass mix, age, sex, size)",
            "n_masses": int(len(ds.labels)), "n_benign": int((ds.labels == 0).sum()),
            "mass_types": {t: ds.mass_types.count(t) for t in sorted(set(ds.mass_types))},
            "age_years": _range(ds.age), "male_fraction": round(float(ds.male.mean()), 3),
            "diameter_mm": _range(10 * ds.size_cm),
            "core_mean_hu": {p: _range(ds.mean_hu[:, k]) for k, p in enumerate(PHASES)}}


def _logistic(fit, name) -> dict:
    beta, cut = fit["logistic"][name]
    return {"coefficients": beta.tolist(), "cutoff": cut["cutoff"], "cutoff_chosen_on": cut["chosen_on"]}


def build_bundle(cases, seed=0, recipe=None, name=DEMO_MODEL, inner_folds=2):
    """(RenalModelSet, card) trained on SYNTHETIC ``cases`` (module doc)."""
    from .dataset import build_dataset
    from .task import RenalModelSet, input_spec

    recipe = {**RECIPE, **(recipe or {})}
    ds = build_dataset(cases)
    if int((ds.labels == 0).sum()) < 2 * inner_folds or int(ds.labels.sum()) < 2 * inner_folds:
        raise InputError(f"{int((ds.labels == 0).sum())} benign / {int(ds.labels.sum())} malignant masses: the "
                         "nested fits need more of each; use more cases", "build_bundle")
    tr = np.arange(len(ds.labels))
    inner = outer_folds(ds.labels, ds.patient_ids, inner_folds, seed + 100)
    fit = fit_training_set(ds, tr, inner, seed, recipe)
    bundle = RenalModelSet(recipe["channels"], recipe["dropout"])
    for m in MODELS:
        bundle.nets[m].load_state_dict(fit["nets"][m].state_dict())
    combined, image_only = _logistic(fit, "combined"), _logistic(fit, "image_only")
    cut = {**fit["cutoffs"], "combined": combined["cutoff"], "image_only": image_only["cutoff"]}
    baselines = {b: {"features": BASELINES[b], **_logistic(fit, b)} for b in BASELINES}
    spec = {**input_spec(), "units": "HU (CT numbers after the DICOM rescale)", "phases": list(PHASES),
            "mass": f"solid renal mass <= {SIZE_LIMIT_MM:.0f} mm; larger, fat-containing or hypo-/non-enhancing "
                    "(indeterminate: cyst vs hypovascular RCC) masses are flagged, not scored",
            "training_distribution": training_distribution(ds)}
    card = {"name": name, "task": BUNDLE_TASK, "kind": "classification",
            "model_config": {"channels": list(recipe["channels"]), "dropout": recipe["dropout"]},
            "input_spec": spec, "classes": list(CLASSES), "temperature": 1.0,
            "training_data": {"synthetic": True, "phantom": "slicercad.renal.phantom", "n_masses": int(len(ds.labels)),
                              "n_benign": int((ds.labels == 0).sum()), "inner_folds": int(inner_folds),
                              "seed": int(seed), "split_by": "patient",
                              "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.items()}},
            "metrics": {"note": "SYNTHETIC; see `slicercad renal reproduce` for cross-validated AUCs"},
            "combined_model": {"features": list(COMBINED_FEATURES), "coefficients": combined["coefficients"]},
            "image_only_model": {"features": list(IMAGE_ONLY_FEATURES), "coefficients": image_only["coefficients"]},
            "cutoffs": cut, "cutoffs_chosen_on": "inner out-of-fold scores of the training patients (CNNs and "
                                                 "logistic models alike)", "baselines": baselines,
            "case_score": "mean malignant probability over the ROI slices"}
    return bundle.eval(), card


def _auc_ci(y, s, W):
    from sklearn.metrics import roc_auc_score

    return {"auc": float(roc_auc_score(y, s)), "auc_ci95": percentile_ci(weighted_auc(y == 1, s, W))}


def _accuracy(y, call, W) -> dict:
    correct = (call == y).astype(float)
    return {"accuracy": float(correct.mean()), "accuracy_ci95": percentile_ci(W @ correct / W.sum(axis=1)),
            "sensitivity": float(call[y == 1].mean()), "specificity": float(1 - call[y == 0].mean())}


def product_metrics(bundle, card, cases, n_boot=1000, seed=0) -> dict:
    """Card metrics of ``cases`` through ``inference.assess_masses`` (module doc)."""
    from .dataset import case_mass
    from .inference import assess_masses

    rows, flagged, image_only = [], [], []
    for c in cases:
        (r,) = assess_masses(bundle, card, c.images, [case_mass(c)],
                             {c.mass_id: {"age_years": c.age_years, "male": c.male}}, with_cam=False)
        (rows if r["status"] == "scored" else flagged).append((c, r))
        if r["status"] == "scored":     # the fall-back the product uses when age and sex are missing
            (r0,) = assess_masses(bundle, card, c.images, [case_mass(c)], {}, with_cam=False)
            image_only.append(r0)
    y = np.array([c.malignant for c, _ in rows])
    if len(set(y.tolist())) < 2:
        raise InputError(f"the {len(rows)} scorable test masses need both benign and malignant ones; use more "
                         "test cases", "product_metrics")
    pids = [c.patient_id for c, _ in rows]
    W = bootstrap_weights(len(y), pids, n_boot, seed)
    p = np.array([r["p_combined"] for _, r in rows])
    call = np.array([r["call"] == "malignant" for _, r in rows]).astype(int)
    probs = {m: [r["probabilities"][m] for _, r in rows] for m in MODELS}
    out = {"path": "inference.assess_masses (what the panel and `slicercad renal assess` run), age and sex given",
           "synthetic": True, "n_masses": int(len(y)), "n_patients": len(set(pids)), "n_benign": int((y == 0).sum()),
           "n_flagged_not_scored": len(flagged), "mass_ids": [c.mass_id for c, _ in rows], "patient_ids": pids,
           "labels": y.tolist(), "p_combined": p.tolist(), "calls": call.tolist(), "probabilities": probs,
           "combined": {**_auc_ci(y, p, W), **_accuracy(y, call, W), "cutoff": card["cutoffs"]["combined"]},
           "image_only": {**_auc_ci(y, np.array([r["p_combined"] for r in image_only]), W),
                          **_accuracy(y, np.array([r["call"] == "malignant" for r in image_only]).astype(int), W),
                          "cutoff": card["cutoffs"]["image_only"], "path": "the same masses with age and sex removed",
                          "p": [r["p_combined"] for r in image_only]},
           "auc": {m: _auc_ci(y, np.asarray(probs[m]), W) for m in MODELS},
           "majority_baseline_accuracy": float(max(y.mean(), 1 - y.mean())),
           "ci": "95 % percentile bootstrap over test patients (cluster)", "n_boot": int(n_boot)}
    designs = {"roi_mean_hu_lr": np.array([[r["hu"][ph] for ph in PHASES] for _, r in rows]),
               "clinical_lr": np.array([[c.age_years, c.male, r["diameter_mm"] / 10.0] for c, r in rows])}
    out["baselines"] = {}
    for b, fit in card["baselines"].items():
        s = predict(np.asarray(fit["coefficients"]), designs[b])
        out["baselines"][b] = {**_auc_ci(y, s, W), **_accuracy(y, (s >= fit["cutoff"]).astype(int), W),
                               "features": fit["features"], "fitted_on": "all training patients"}
    return out
