"""Seed 004's evaluation on the SYNTHETIC phantom: per-phase and multi-phase CNNs, the combined logistic model,
baselines and controls, under patient-level 5-fold CV. All numbers are SYNTHETIC.

Per outer fold (``StratifiedGroupKFold`` on patients, 5 folds; the report split by image set -- a leak), fitted by
``fit_training_set`` (which also builds the product bundle, ``bundle.build_bundle``, on all training patients):
- the 4 per-phase CNNs and the multi-phase CNN are trained on the training fold (``train_slices``); a case's
  score is the mean malignant probability over its ROI slices (``case_scores``);
- an inner patient-level 2-fold split of the training fold gives out-of-fold CNN scores of the training
  cases; on those alone are fitted the combined logistic model (logit of the 4 per-phase scores + age + male +
  size in cm) and the CNNs' Youden cut-offs -- the test fold is touched only to be scored;
- baselines fitted on the training fold: ROI-mean HU (core mean per phase) + LR; clinical-only LR (age, sex,
  size);
- every logistic model's cut-off (combined and baselines) is chosen on its out-of-fold probabilities over the
  same inner split (``logistic.nested_fit``), not on its in-sample fitted ones. The combined model's inner
  fit on one half uses CNN scores from the net trained on the other half: a second-order dependence, noted;
- the image-only logistic model (the 4 CNN logits; the product's fall-back without age or sex) likewise;
- controls: every CNN with its weights re-initialised (randomised weights, the recipe's architecture: no
  fitting, its training-fold scores are out-of-sample), and the whole ``fit_training_set`` (every CNN, inner
  split, cut-offs, combined model) on permuted training labels with ``CONTROL_EPOCHS`` epochs; a control
  passes when its AUC is within ``CHANCE_MARGIN`` (0.1) of 0.5, not merely when its CI covers 0.5.
Then: AUC of every model with patient-cluster bootstrap CIs, paired AUC differences between models on the same
bootstrap resamples (two-sided bootstrap p, and Holm-adjusted over the pairs), accuracy at the training-fold
Youden cut-off, and the report's regression table (statsmodels) on the pooled out-of-fold per-phase CNN logits
+ age + male + size, with the correlations of the 4 CNN logits and every term's VIF (collinearity).
"""
from __future__ import annotations

import time

import numpy as np

from ..engine.metrics import bootstrap_weights, holm, percentile_ci, weighted_auc
from ..errors import InputError
from .constants import CLINICAL_FEATURES, CV_FOLDS, PHASES
from .logistic import collinearity, fit_table, nested_fit, predict, youden_cutoff

RECIPE = {"epochs": 15, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "channels": (16, 32, 64),
          "dropout": 0.2, "arch": "small", "imagenet_weights": None}   # arch 'inception_v3': per-phase nets only
MODELS = tuple(PHASES) + ("multiphase",)
EPS = 1e-4
CONTROL_EPOCHS = 5
CHANCE_MARGIN = 0.1


def _logit(p):
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def model_input(x, which) -> np.ndarray:
    """[N*S, C, H, W] slices for model ``which`` (a phase: C = 1; 'multiphase': C = 4) from x [N, P, S, H, W]."""
    x = np.asarray(x, np.float32)
    n, p, s, h, w = x.shape
    if which == "multiphase":
        return x.transpose(0, 2, 1, 3, 4).reshape(n * s, p, h, w)
    if which not in PHASES:
        raise InputError(f"model must be one of {MODELS}, got {which!r}", "model")
    return x[:, PHASES.index(which)].reshape(n * s, 1, h, w)


def build_net(which, recipe=RECIPE, arch="small", weights=None):
    from .model import RenalSliceNet, inception_v3

    c = 4 if which == "multiphase" else 1
    if arch == "inception_v3":
        return inception_v3(weights, c if c == 1 else 3) if c == 1 else _refuse_multi()
    return RenalSliceNet(c, tuple(recipe["channels"]), float(recipe["dropout"]))


def _refuse_multi():
    raise InputError("the Inception-v3 option is per phase (1 channel); the multi-phase model uses the default "
                     "network", "--arch")


def train_slices(x, y, which, seed=0, recipe=RECIPE, arch=None, weights=None, on_epoch=None):
    """A CNN for ``which`` trained on cases x [N, P, S, H, W] with labels y [N] (every slice carries its case's
    label): flips / 90-degree rotations, class-weighted cross-entropy, AdamW, one-cycle schedule, fixed epochs."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs = torch.from_numpy(model_input(x, which))
    ys = torch.from_numpy(np.repeat(np.asarray(y, np.int64), x.shape[2]))
    arch = arch or recipe.get("arch", "small")
    if arch == "inception_v3" and which == "multiphase":
        arch = "small"                      # the multi-phase model is always the default network
    net = build_net(which, recipe, arch, weights or recipe.get("imagenet_weights"))
    counts = torch.bincount(ys, minlength=2).double()
    cw = (counts.sum() / (2 * counts.clamp(min=1))).float()
    epochs, bs = int(recipe["epochs"]), int(recipe["batch_size"])
    opt = torch.optim.AdamW(net.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps = max(1, epochs * int(np.ceil(len(xs) / bs)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps)
    net.train()
    for ep in range(epochs):
        order = rng.permutation(len(xs))
        total = 0.0
        for start in range(0, len(xs), bs):
            idx = order[start:start + bs]
            if len(idx) < 2:
                continue
            xb = xs[idx]
            if rng.random() < 0.5:
                xb = torch.flip(xb, dims=[3])
            if rng.random() < 0.5:
                xb = torch.flip(xb, dims=[2])
            xb = torch.rot90(xb, int(rng.integers(4)), dims=[2, 3])
            loss = F.cross_entropy(net(xb), ys[idx], weight=cw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch:
            on_epoch(ep, loss=total / len(xs))
    return net.eval()


def case_scores(net, x, which, batch=256) -> np.ndarray:
    """Malignant probability per case: the mean over its slices of the softmax output."""
    import torch

    n, s = x.shape[0], x.shape[2]
    xs = torch.from_numpy(model_input(x, which))
    out = []
    net.eval()
    with torch.no_grad():
        for start in range(0, len(xs), batch):
            out.append(torch.softmax(net(xs[start:start + batch]).float(), dim=1)[:, 1].numpy())
    return np.concatenate(out).reshape(n, s).mean(axis=1)


def outer_folds(y, groups, folds=CV_FOLDS, seed=0) -> list:
    from sklearn.model_selection import StratifiedGroupKFold

    sp = StratifiedGroupKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in sp.split(np.zeros(len(y)), y, np.asarray(groups))]


def _clinical(ds, idx):
    return np.column_stack([ds.age[idx], ds.male[idx], ds.size_cm[idx]])


def combined_design(scores: dict, ds, idx) -> np.ndarray:
    """[n, 7]: logit of the 4 per-phase CNN scores, age, male, size (cm)."""
    return np.column_stack([_logit(scores[p]) for p in PHASES] + [_clinical(ds, idx)])


COMBINED_FEATURES = tuple(f"cnn_{p}_logit" for p in PHASES) + CLINICAL_FEATURES


LOGISTIC_MODELS = ("combined", "image_only", "roi_mean_hu_lr", "clinical_lr")


def logistic_designs(scores: dict, ds, idx) -> dict:
    """{logistic model: [n, k] design} of cases ``idx`` given their per-phase CNN ``scores``."""
    X = combined_design(scores, ds, idx)
    return {"combined": X, "image_only": X[:, :4], "roi_mean_hu_lr": ds.mean_hu[idx], "clinical_lr": _clinical(ds, idx)}


def fit_training_set(ds, tr, inner, seed=0, recipe=RECIPE, labels=None) -> dict:
    """Everything fitted on the training cases ``tr`` -- by cross-validation's outer folds and by the product
    bundle alike: per model the CNN trained on all of ``tr`` and its Youden cut-off on the out-of-fold CNN scores
    of the ``inner`` patient-level split (one CNN per inner part); the logistic models (``LOGISTIC_MODELS``)
    fitted on those out-of-fold CNN scores, each cut-off on its own inner out-of-fold probabilities
    (``logistic.nested_fit``). ``labels``: training labels instead of ``ds.labels[tr]`` (the permuted-label
    control). Returns {"nets", "inner_scores", "cutoffs", "logistic": {name: (beta, cut)}}."""
    y = ds.labels[tr] if labels is None else np.asarray(labels)
    inner_scores = {m: np.full(len(tr), np.nan) for m in MODELS}
    for itr, ite in inner:
        for m in MODELS:
            net = train_slices(ds.x[tr][itr], y[itr], m, seed, recipe)
            inner_scores[m][ite] = case_scores(net, ds.x[tr][ite], m)
    nets = {m: train_slices(ds.x[tr], y, m, seed, recipe) for m in MODELS}
    cutoffs = {m: youden_cutoff(y, inner_scores[m])["cutoff"] for m in MODELS}
    fits = {name: nested_fit(X, y, inner) for name, X in logistic_designs(inner_scores, ds, tr).items()}
    return {"nets": nets, "inner_scores": inner_scores, "cutoffs": cutoffs, "logistic": fits}


def _score_fold(fit, ds, te, prefix, scores, calls):
    """Out-of-fold scores and calls of the test cases ``te`` by everything ``fit_training_set`` fitted."""
    for m in MODELS:
        scores[prefix + m][te] = case_scores(fit["nets"][m], ds.x[te], m)
        calls[prefix + m][te] = scores[prefix + m][te] >= fit["cutoffs"][m]
    X_te = logistic_designs({p: scores[prefix + p][te] for p in PHASES}, ds, te)
    for name in LOGISTIC_MODELS:
        beta, cut = fit["logistic"][name]
        scores[prefix + name][te] = predict(beta, X_te[name])
        calls[prefix + name][te] = scores[prefix + name][te] >= cut["cutoff"]


RANDOM_PREFIX, PERMUTED_PREFIX = "random_weights_", "permuted_labels_"


def random_net(which, recipe, seed):
    """An untrained net of the recipe's architecture for ``which`` (the randomised-weights control)."""
    import torch

    torch.manual_seed(seed)
    arch = recipe.get("arch", "small") if which != "multiphase" else "small"
    return build_net(which, recipe, arch, None)


def cross_validate(ds, folds=CV_FOLDS, inner_folds=2, seed=0, recipe=RECIPE, log=print) -> dict:
    """Out-of-fold scores of every model and the Youden calls at training-fold cut-offs (module doc)."""
    y = ds.labels
    n = len(y)
    names = MODELS + LOGISTIC_MODELS + tuple(PERMUTED_PREFIX + m for m in MODELS + LOGISTIC_MODELS) + \
        tuple(RANDOM_PREFIX + m for m in MODELS)
    scores = {m: np.full(n, np.nan) for m in names}
    calls = {m: np.full(n, -1) for m in names}
    fold_of = np.full(n, -1)
    for f, (tr, te) in enumerate(outer_folds(y, ds.patient_ids, folds, seed)):
        t0 = time.time()
        fold_of[te] = f
        inner = outer_folds(y[tr], [ds.patient_ids[i] for i in tr], inner_folds, seed + 100 + f)
        _score_fold(fit_training_set(ds, tr, inner, seed + f, recipe), ds, te, "", scores, calls)
        y_perm = np.random.default_rng(seed + 500 + f).permutation(y[tr])
        pfit = fit_training_set(ds, tr, inner, seed + f, {**recipe, "epochs": min(CONTROL_EPOCHS, recipe["epochs"])},
                                labels=y_perm)
        _score_fold(pfit, ds, te, PERMUTED_PREFIX, scores, calls)
        for m in MODELS:
            rand = random_net(m, recipe, seed + 999 + f)
            scores[RANDOM_PREFIX + m][te] = case_scores(rand, ds.x[te], m)
            calls[RANDOM_PREFIX + m][te] = scores[RANDOM_PREFIX + m][te] >= \
                youden_cutoff(y[tr], case_scores(rand, ds.x[tr], m))["cutoff"]
        if log:
            log(f"fold {f + 1}/{folds}: {len(tr)} train / {len(te)} test masses, {time.time() - t0:.0f} s")
    return {"scores": scores, "calls": calls, "fold": fold_of}


def evaluate(cv: dict, ds, n_boot=2000, seed=0) -> dict:
    """AUC (patient bootstrap CI), Youden accuracy, paired AUC differences, and the regression table."""
    from sklearn.metrics import roc_auc_score

    y = ds.labels
    W = bootstrap_weights(len(y), ds.patient_ids, n_boot, seed)
    boot, table = {}, {}
    for m, s in cv["scores"].items():
        boot[m] = weighted_auc(y == 1, s, W)
        correct = (cv["calls"][m] == y).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc_boot = W @ correct / W.sum(axis=1)
        table[m] = {"auc": float(roc_auc_score(y, s)), "auc_ci95": percentile_ci(boot[m]),
                    "youden_accuracy": float(correct.mean()), "youden_accuracy_ci95": percentile_ci(acc_boot)}
    pairs = [(a, b) for i, a in enumerate(PHASES) for b in PHASES[i + 1:]]
    pairs += [("corticomedullary", "multiphase"), ("combined", "corticomedullary"), ("combined", "clinical_lr"),
              ("corticomedullary", "roi_mean_hu_lr")]
    paired = {}
    for a, b in pairs:
        d = boot[a] - boot[b]
        d = d[np.isfinite(d)]
        p = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if d.size else None
        paired[f"{a} - {b}"] = {"auc_difference": table[a]["auc"] - table[b]["auc"], "ci95": percentile_ci(d),
                                "p_bootstrap": p}
    for k, p in holm({k: v["p_bootstrap"] for k, v in paired.items()}).items():
        paired[k]["p_holm"] = p
    X = np.column_stack([_logit(cv["scores"][p]) for p in PHASES] + [ds.age, ds.male, ds.size_cm])
    try:
        regression = fit_table(X, y, COMBINED_FEATURES)
        regression["note"] = ("pooled out-of-fold CNN outputs (each from a model that did not see the mass) + age, "
                              "male, size: the report's independent-predictor analysis; CNN terms per unit logit; "
                              "the CNN logits are correlated (see collinearity): a term's OR is conditional on the "
                              "others, an inverse OR of a weak phase is a collinearity artefact, not biology")
    except InputError as exc:
        regression = {"error": str(exc)}
    regression["collinearity"] = collinearity(X, COMBINED_FEATURES, COMBINED_FEATURES[:4])
    ctrl = [m for m in table if m.startswith((RANDOM_PREFIX, PERMUTED_PREFIX))]
    covers = {m: bool(table[m]["auc_ci95"][0] is not None and table[m]["auc_ci95"][0] <= 0.5 <= table[m]["auc_ci95"][1])
              for m in ctrl}
    controls = {m: {"auc": table[m]["auc"], "at_chance": bool(abs(table[m]["auc"] - 0.5) < CHANCE_MARGIN),
                    "ci_covers_0.5": covers[m]} for m in ctrl}
    return {"models": table, "paired_auc": paired, "controls": controls, "control_rule":
            f"|AUC - 0.5| < {CHANCE_MARGIN}; permuted labels through the whole fit_training_set with "
            f"{CONTROL_EPOCHS} epochs", "controls_ci_covers_0.5": covers, "regression": regression,
            "n_boot": int(n_boot), "resampling_unit": "patient", "paired_p_adjustment":
            f"Holm over the {len(paired)} pairs (p_holm); p_bootstrap unadjusted"}


def flagged_by_type(ds) -> dict:
    """The phantom masses left out as flagged, by mass type: count, malignant count, and the flags' kinds."""
    out = {}
    for _, flags, mtype, malignant in ds.flags:
        row = out.setdefault(mtype, {"n": 0, "malignant": 0, "flags": {}})
        row["n"] += 1
        row["malignant"] += int(malignant)
        for f in flags:
            kind = f.split(":")[0].split(" mm ")[0] if not f.startswith("mass ") else "over 40 mm"
            row["flags"][kind] = row["flags"].get(kind, 0) + 1
    return out


def hu_table(ds) -> dict:
    """Mean (SD) core HU per phase and mass type (the phantom's enhancement patterns as measured)."""
    out = {}
    for t in sorted(set(ds.mass_types)):
        m = np.array([mt == t for mt in ds.mass_types])
        out[t] = {p: [round(float(ds.mean_hu[m, k].mean()), 1), round(float(ds.mean_hu[m, k].std()), 1)]
                  for k, p in enumerate(PHASES)} | {"n": int(m.sum())}
    return out


def hu_auc_by_phase(ds) -> dict:
    """Raw AUC (no fitting; < 0.5 = lower HU in malignant masses) of the core mean HU and of ΔHU per phase: how
    much each phase of the phantom carries on its own, beside the CNNs."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k, p in enumerate(PHASES):
        out[p] = {"mean_hu": float(roc_auc_score(ds.labels, ds.mean_hu[:, k]))}
        if k:
            out[p]["delta_hu"] = float(roc_auc_score(ds.labels, ds.mean_hu[:, k] - ds.mean_hu[:, 0]))
    return out


def reproduce(n_patients=300, seed=0, folds=CV_FOLDS, recipe=None, n_boot=2000, log=print, cases=None) -> dict:
    """The whole SYNTHETIC experiment (module doc); ``cases``: already rendered cases instead of ``n_patients``."""
    from .dataset import build_dataset
    from .phantom import FLAG_TYPES, flag_case, generate_cases

    recipe = {**RECIPE, **(recipe or {})}
    t0 = time.time()
    cases = generate_cases(n_patients, seed) if cases is None else cases
    ds = build_dataset(cases)
    flagged = {}
    from .dataset import case_mass, mass_sample

    for kind in FLAG_TYPES:
        c = flag_case(kind, seed)
        flagged[kind] = mass_sample(c.images, case_mass(c)).flags
    cv = cross_validate(ds, folds, seed=seed, recipe=recipe, log=log)
    res = evaluate(cv, ds, n_boot, seed)
    return {"synthetic": True, "notice": "SYNTHETIC phantom: every number here is measured on generated images",
            "n_patients": len(set(ds.patient_ids)), "n_masses": int(len(ds.labels)),
            "n_benign": int((ds.labels == 0).sum()), "n_malignant": int(ds.labels.sum()),
            "folds": int(folds), "split": "patient-level stratified group k-fold", "recipe": recipe,
            "mass_types": {t: ds.mass_types.count(t) for t in sorted(set(ds.mass_types))},
            "hu_by_type": hu_table(ds), "hu_auc_by_phase": hu_auc_by_phase(ds), "flag_cases": flagged,
            "excluded_flagged": len(ds.flags), "excluded_flagged_by_type": flagged_by_type(ds), **res,
            "runtime_s": round(time.time() - t0, 1)}
