"""``slicercad anomaly reproduce``: seed 001 part (2) on the SYNTHETIC phantoms (head CT 3D, chest X-ray 2D).

Per input kind: train Glow and f-AnoGAN on normals only (patients disjoint from everything else), calibrate on
held-out normals, then score test normals + anomalies inserted into **other test normals' heads / chests**
(each anomalous case is clustered with its background patient in the bootstrap). Reported, all SYNTHETIC:
* case ROC-AUC with a patient-cluster bootstrap 95% CI per method, overall and per anomaly type, size, contrast
  (each anomalous group against all test normals);
* pixel AUROC of the maps (per anomalous case, lesion voxels vs the other mask voxels; mean with a bootstrap
  CI clustered by background patient) and how often the map's peak lies inside the lesion (dilated by one voxel);
* paired check: the inserted case scores higher than the same background without it (fraction of pairs);
* paired difference of each method's overall case ROC-AUC against the atlas z-score (``delta_vs``: the same
  patient-cluster bootstrap resamples for both, so the CI is of the difference);
* thresholds at 95% specificity: the 95th percentile of each method's scores on the held-out (calibration)
  normals -- map scores leave-one-out (``task.held_out_reference``), so not biased low by the calibration;
  the test normals' own flagged rate at that threshold is reported beside it (nominal 5%, bootstrap CI);
* normal-variation control: healthy but unusual normals flagged above that threshold, per variant (labelled
  by ``SUPPORT``: a tail of the training population, a pose / size change the registration undoes, or outside
  the training population), with a case bootstrap CI and a verdict per variant; stated limit
  NORMAL_VARIATION_LIMIT;
* head CT: the registration's error on the test normals' known yaw and size (``registration_accuracy``);
* simple-image control: test normals smoothed on the model grid (sigma 1 model voxel: 5 mm on the head
  grid, a blur no scanner kernel makes) -- flagged by bits/dim vs by the variant;
* kernel control: the same normals' *input* smoothed by KERNEL_SIGMA_MM (physical) before the sample path -- a
  softer reconstruction kernel / detector blur; a normal must stay normal;
* randomised-weights control: the same Glow, actnorm-initialised but untrained (expected near 0.5);
* head CT, population control: the atlas z-score built from the training normals **without atrophy** only
  (``atlas_z_no_atrophy``): the atrophy variant is outside its normals, so it must flag them (shows the
  normal-variation control can fail);
* head CT, real background (``experiment_real``): the one real head CT of invesalius-examples, a few small
  rigid transforms of it, with SYNTHETIC bleeds inserted -- one patient, so no CI.
Methods: glow_bpd, glow_complexity (the variant), glow_map (top 1 % mean of the standardised map), gan
(f-AnoGAN), gan_map, atlas_z, atlas_z_no_atrophy (head), atlas_z_age (head: ``baselines.AgeAtlasZ``, the
cases' drawn ages as PatientAge), hu_threshold (head), glow_random / glow_random_map
(untrained).
Training budget: STEP_BUDGET optimiser steps per model (``task.epochs_for_steps``) unless ``epochs`` is given;
the run's ``seed`` sets the phantoms, the training order and the models' initialisation (``model_seed``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..atomic import write_text
from ..engine.metrics import bootstrap_weights, percentile_ci, weighted_auc
from . import task as T
from .baselines import AgeAtlasZ, AtlasZ, hu_threshold_maps, hu_threshold_scores
from .experiment_report import report_markdown
from .preprocess import resample_to_grid

NORMAL_VARIATION_LIMIT = 0.15      # stated: at most 15% of unusual-but-healthy normals flagged at 95% specificity
KERNEL_SIGMA_MM = {T.HEAD: 1.0, T.CXR: 2.5}   # the kernel control's blur of the input, in mm (the CXR grid's own
# smoothing is ~1.3 mm: a 1 mm blur changed its samples by ~1 quantisation level)
FULL = {"n_train": 96, "n_val": 32, "n_test": 40, "per_cell": 2, "n_variant": 16, "steps": T.STEP_BUDGET,
        "n_boot": 1000, "n_real": 6}
SMOKE = {"n_train": 6, "n_val": 3, "n_test": 4, "per_cell": 1, "n_variant": 1, "steps": 1, "n_boot": 50,
         "cells": 1, "n_real": 0, "glow_config": {"steps": 1, "hidden": 8}, "gan_config": {"ch": 4}}


def _anomalies(kind, test_seeds, per_cell, seed, cells=None):
    """[(stacked, lesion mask on grid, background index, type, size, contrast)] over the sweep."""
    if kind == T.HEAD:
        from ..synth.anomaly_head import SWEEP, insert_anomaly, normal_head as make
        ckey = "contrast_hu"
    else:
        from ..synth.anomaly_cxr import SWEEP, insert_anomaly, normal_cxr as make
        ckey = "contrast"
    rng = np.random.default_rng([seed, 5])
    out = []
    for a_type, sweep in SWEEP.items():
        sizes = sweep["size_mm"][:cells] if cells else sweep["size_mm"]
        contrasts = sweep[ckey][-cells:] if cells else sweep[ckey]
        for size in sizes:
            for contrast in contrasts:
                for _ in range(per_cell):
                    b = int(rng.integers(len(test_seeds)))
                    ph = make(test_seeds[b])
                    img, m = insert_anomaly(ph, a_type, size, contrast, int(rng.integers(1 << 30)))
                    s = T.sample_of(img, kind, ph.patient_id)
                    out.append((s.stacked(), resample_to_grid(m, s.grid, True) & s.mask, b, a_type, size,
                                contrast))
    return out


def auc_ci(pos, score, groups, n_boot, seed=0):
    pos = np.asarray(pos, bool)
    auc = float(weighted_auc(pos, score, np.ones((1, len(pos))))[0])
    boots = weighted_auc(pos, score, bootstrap_weights(len(pos), groups, n_boot, seed))
    return {"auc": auc, "ci": percentile_ci(boots), "n_pos": int(pos.sum()), "n_neg": int((~pos).sum())}


def delta_vs(reference, pos, scores: dict, groups, n_boot, seed=0) -> dict:
    """Paired case-AUROC difference of each method against ``reference`` on the same patient-cluster bootstrap
    resamples: {method: {'delta', 'ci', 'p_le_0'}} (p_le_0: share of resamples where the method is not above)."""
    pos = np.asarray(pos, bool)
    w = bootstrap_weights(len(pos), groups, n_boot, seed)
    ref_full, ref_boot = weighted_auc(pos, scores[reference], np.ones((1, len(pos))))[0], weighted_auc(
        pos, scores[reference], w)
    out = {}
    for m, sc in scores.items():
        if m == reference:
            continue
        d = weighted_auc(pos, sc, w) - ref_boot
        out[m] = {"delta": float(weighted_auc(pos, sc, np.ones((1, len(pos))))[0] - ref_full),
                  "ci": percentile_ci(d), "p_le_0": float(np.mean(d[np.isfinite(d)] <= 0)) if len(d) else None}
    return out


def _pixel(maps, lesions, masks, groups, n_boot, seed=0):
    """Mean per-case pixel AUROC (lesion vs other mask voxels) with a bootstrap CI clustered by ``groups`` (the
    background patient: several anomalous cases share one), and the peak-in-lesion rate."""
    aucs, peaks, kept = [], [], []
    for m, les, msk, g in zip(maps, lesions, masks, groups):
        if les.sum() == 0 or (msk & ~les).sum() == 0:
            continue
        kept.append(g)
        v, p = m[msk], les[msk]
        aucs.append(float(weighted_auc(p, v, np.ones((1, len(v))))[0]))
        peak = np.unravel_index(np.argmax(np.where(msk, m, -np.inf)), m.shape)
        peaks.append(bool(ndimage.binary_dilation(les)[peak]))
    if not aucs:
        return {"auc": None, "ci": [None, None], "peak_in_lesion": None, "n": 0}
    a = np.asarray(aucs)
    w = bootstrap_weights(len(a), kept, n_boot, seed)
    return {"auc": float(a.mean()), "ci": percentile_ci(w @ a / w.sum(1)), "peak_in_lesion": float(np.mean(peaks)),
            "n": len(a)}


LEARNED = (("glow_bpd", "glow", "score"), ("glow_complexity", "glow", "variant"), ("glow_map", "glow", "map_score"),
           ("gan", "gan", "score"), ("gan_map", "gan", "map_score"))
RANDOM = (("glow_random", "glow_random", "score"), ("glow_random_map", "glow_random", "map_score"))


def method_outputs(models, atlases, kind, x, reference=False, ages=None):
    """{method: (scores, maps)} for stacked ``x``; ``atlases``: {method: AtlasZ or AgeAtlasZ (given the cases'
    ``ages``; left out without them)}; ``reference``: the held-out-normal scores for thresholds (map scores
    leave-one-out)."""
    out, raw = {}, {}
    for name, model in models.items():
        raw[name] = (T.held_out_reference(model, torch.from_numpy(x), set_stats=False) if reference else
                     T.raw_scores(model, torch.from_numpy(x)))
    for method, model, key in LEARNED:
        out[method] = (raw[model][key], raw[model]["map"])
    for method, atlas in atlases.items():
        if isinstance(atlas, AgeAtlasZ):
            if ages is not None:
                out[method] = (atlas.scores(x, ages), atlas.maps(x, ages))
        else:
            out[method] = (atlas.scores(x), atlas.maps(x))
    if kind == T.HEAD:
        out["hu_threshold"] = (hu_threshold_scores(x), hu_threshold_maps(x))
    for method, model, key in RANDOM:
        out[method] = (raw[model][key], raw[model]["map"])
    return out


def phantom_ages(kind, seeds, variant=None):
    """The head phantoms' drawn ages (standing in for PatientAge); None for chest X-ray (no age drawn)."""
    if kind != T.HEAD:
        return None
    from ..synth.anomaly_head import population
    return np.array([population(s, variant)["age"] for s in seeds])


def _model_config(spec, cfg, family, seed):
    """The family's config of the run (``cfg[family + '_config']``), initialised from the run ``seed``."""
    return spec.config({"model_seed": seed, **(cfg.get(f"{family}_config") or {})})


def flagged(scores, thr, n_boot, seed=0):
    """Fraction of cases above ``thr`` with a case bootstrap CI."""
    f = (np.asarray(scores) > thr).astype(float)
    w = bootstrap_weights(len(f), None, n_boot, seed)
    return {"rate": float(f.mean()), "ci": percentile_ci(w @ f / w.sum(1)), "n": int(len(f))}


def run_kind(kind, cfg, seed=0, log=print) -> dict:
    t0 = time.perf_counter()
    base = 1000 * (seed + 1)
    seeds = {"train": [base + i for i in range(cfg["n_train"])],
             "val": [base + 10_000 + i for i in range(cfg["n_val"])],
             "test": [base + 20_000 + i for i in range(cfg["n_test"])]}
    rows = {k: [T.phantom_normal(kind, s) for s in v] for k, v in seeds.items()}     # (sample, patient id)
    x = {k: np.stack([r[0] for r in v]) for k, v in rows.items()}
    pids = {k: [r[1] for r in v] for k, v in rows.items()}
    del rows                                  # the per-case arrays; the stacked copies in x are kept
    log(f"[{kind}] {len(x['train'])} train / {len(x['val'])} val / {len(x['test'])} test normals "
        f"({time.perf_counter() - t0:.0f} s)")
    xt, xv = torch.from_numpy(x["train"]), torch.from_numpy(x["val"])
    glow_task, gan_task = T.task_for(kind, "glow"), T.task_for(kind, "gan")
    from ..engine.tasks import get_task
    models, info = {}, {}
    epochs = cfg.get("epochs") or T.epochs_for_steps(len(xt), T.RECIPE["batch_size"], cfg["steps"])
    for name, task_name in (("glow", glow_task), ("gan", gan_task)):
        spec = get_task(task_name)
        model = spec.build_model(_model_config(spec, cfg, name, seed))
        info[name] = T.fit_detector(model, xt, xv, epochs, T.RECIPE["batch_size"], T.RECIPE["lr"], seed)
        models[name] = model
        log(f"[{kind}] {name} trained ({time.perf_counter() - t0:.0f} s)")
    glow_spec = get_task(glow_task)
    rnd = glow_spec.build_model(_model_config(glow_spec, cfg, "glow", seed))
    rnd.glow.initialise(T.model_input(xt[:16], torch.Generator().manual_seed(seed)))
    T.calibrate(rnd.eval(), xv)
    models["glow_random"] = rnd
    atlas, age = {"atlas_z": AtlasZ(x["train"])}, {k: phantom_ages(kind, v) for k, v in seeds.items()}
    if kind == T.HEAD:                # the control that must fail: the atlas of the normals without atrophy
        from ..synth.anomaly_head import population
        young = [i for i, s in enumerate(seeds["train"]) if population(s)["atrophy"] == 0.0]
        if len(young) >= 2:
            atlas["atlas_z_no_atrophy"] = AtlasZ(x["train"][young])
        atlas["atlas_z_age"] = AgeAtlasZ(x["train"], age["train"])
    anomalies = _anomalies(kind, seeds["test"], cfg["per_cell"], seed, cfg.get("cells"))
    xa = np.stack([a[0] for a in anomalies])
    log(f"[{kind}] {len(anomalies)} anomalous cases ({time.perf_counter() - t0:.0f} s)")
    age_a = None if age["test"] is None else age["test"][[a[2] for a in anomalies]]
    out_n = method_outputs(models, atlas, kind, x["test"], ages=age["test"])
    out_a = method_outputs(models, atlas, kind, xa, ages=age_a)
    groups = pids["test"] + [pids["test"][a[2]] for a in anomalies]
    strata = {"all": np.ones(len(anomalies), bool)}
    for a_type in sorted({a[3] for a in anomalies}):
        strata[f"type={a_type}"] = np.array([a[3] == a_type for a in anomalies])
    for a_type in sorted({a[3] for a in anomalies}):
        for key, col in (("size", 4), ("contrast", 5)):
            for v in sorted({a[col] for a in anomalies if a[3] == a_type}):
                strata[f"{a_type}:{key}={v}"] = np.array([a[3] == a_type and a[col] == v for a in anomalies])
    case = {}
    for m in out_n:
        case[m] = {}
        for label, sel in strata.items():
            if not sel.any():
                continue
            scores = np.concatenate([out_n[m][0], out_a[m][0][sel]])
            pos = np.r_[np.zeros(len(out_n[m][0]), bool), np.ones(int(sel.sum()), bool)]
            g = pids["test"] + [groups[len(pids["test"]) + i] for i in np.flatnonzero(sel)]
            case[m][label] = auc_ci(pos, scores, g, cfg["n_boot"], seed)
    pos_all = np.r_[np.zeros(len(pids["test"]), bool), np.ones(len(anomalies), bool)]
    delta = delta_vs("atlas_z", pos_all, {m: np.concatenate([out_n[m][0], out_a[m][0]]) for m in out_n}, groups,
                     cfg["n_boot"], seed)
    lesions, masks = [a[1] for a in anomalies], [a[0][-1] > 0.5 for a in anomalies]
    pixel = {}
    for m in out_a:
        pixel[m] = {}
        for a_type in sorted({a[3] for a in anomalies}):
            idx = [i for i, a in enumerate(anomalies) if a[3] == a_type]
            pixel[m][a_type] = _pixel([out_a[m][1][i] for i in idx], [lesions[i] for i in idx],
                                      [masks[i] for i in idx], [groups[len(pids["test"]) + i] for i in idx],
                                      cfg["n_boot"], seed)
    paired = {m: float(np.mean([out_a[m][0][i] > out_n[m][0][a[2]] for i, a in enumerate(anomalies)]))
              for m in out_a}
    # controls at 95% specificity on the held-out (calibration) normals, map scores leave-one-out
    out_v = method_outputs(models, atlas, kind, x["val"], reference=True, ages=age["val"])
    thr = {m: float(np.percentile(out_v[m][0], 95)) for m in out_v}
    test_rate = {m: flagged(out_n[m][0], thr[m], cfg["n_boot"], seed) for m in thr}
    if kind == T.HEAD:
        from ..synth.anomaly_head import SUPPORT, VARIANTS
    else:
        from ..synth.anomaly_cxr import SUPPORT, VARIANTS
    nv = {}
    for variant in VARIANTS:
        vseeds = [base + 30_000 + i for i in range(cfg["n_variant"])]
        xs = np.stack([T.phantom_normal(kind, s, variant)[0] for s in vseeds])
        o = method_outputs(models, atlas, kind, xs, ages=phantom_ages(kind, vseeds, variant))
        nv[variant] = {m: o[m][0] for m in o}
    nv["all"] = {m: np.concatenate([nv[v][m] for v in VARIANTS]) for m in thr}
    nv = {v: {m: flagged(d[m], thr[m], cfg["n_boot"], seed) for m in d} for v, d in nv.items()}
    sm = x["test"].copy()                 # test normals: not in the calibration that set thr and the map reference
    sigma = (0,) + (1.0,) * (sm.ndim - 2)
    for i in range(len(sm)):
        for c in range(sm.shape[1] - 1):
            sm[i, c] = ndimage.gaussian_filter(sm[i, c], sigma[1:])
    o = method_outputs(models, atlas, kind, sm, ages=age["test"])
    simple = {m: float(np.mean(o[m][0] > thr[m])) for m in o}
    o = method_outputs(models, atlas, kind, np.stack([kernel_normal(kind, sd) for sd in seeds["test"]]),
                       ages=age["test"])
    kernel = {m: float(np.mean(o[m][0] > thr[m])) for m in o}
    real = None
    if kind == T.HEAD and cfg.get("n_real"):
        from .experiment_real import real_background_rows
        real = real_background_rows(lambda xx: method_outputs(models, atlas, kind, xx), thr, cfg["n_real"], seed,
                                    log)
    return {"kind": kind, "config": cfg, "n_cases": {"test_normals": len(x["test"]), "anomalous": len(anomalies)},
            "case_auc": case, "delta_vs_atlas": delta, "pixel_auc": pixel, "paired_higher": paired, "threshold_95": thr,
            "test_normals_flagged": test_rate, "normal_variation_flagged": nv,
            "normal_variation_limit": NORMAL_VARIATION_LIMIT, "variant_support": SUPPORT,
            "registration": registration_accuracy(seeds["test"]) if kind == T.HEAD else None, "simple_image_flagged": simple,
            "kernel_flagged": kernel, "kernel_sigma_mm": KERNEL_SIGMA_MM[kind], "real_background": real,
            "random_methods": [m for m, _model, _key in RANDOM],
            "training": {k: {kk: vv for kk, vv in v.items() if kk != "history"} | {
                "final": v["history"][-1] if v["history"] else None} for k, v in info.items()},
            "seconds": time.perf_counter() - t0}


def kernel_normal(kind, seed, sigma_mm=None) -> np.ndarray:
    """The stacked sample of phantom normal ``seed`` whose input image was smoothed by ``sigma_mm`` (physical;
    default KERNEL_SIGMA_MM[kind])."""
    import SimpleITK as sitk

    ph = T.phantom(kind, seed)
    sigma = KERNEL_SIGMA_MM[kind] if sigma_mm is None else sigma_mm
    return T.sample_of(sitk.SmoothingRecursiveGaussian(ph.image, sigma), kind, ph.patient_id).stacked()


def rotation_error_deg(direction, yaw_deg: float) -> float:
    """Angle (degrees) of R_true^T R_est: R_est the sample grid's direction, R_true the phantom's rotation by
    ``yaw_deg`` about z (sign and axis count, unlike a difference of angles)."""
    a = np.deg2rad(yaw_deg)
    r_true = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    r = r_true.T @ np.asarray(direction, float).reshape(3, 3)
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def registration_accuracy(seeds) -> dict:
    """Head phantoms' known yaw and per-axis size against what the sample path's registration recovered."""
    from ..synth.anomaly_head import normal_head
    from .preprocess import head_ct_sample

    err, size, dice = [], [], []
    for s in seeds:
        ph = normal_head(s)
        sample = head_ct_sample(ph.image, ph.patient_id)
        err.append(rotation_error_deg(sample.grid.GetDirection(), ph.params["rotation_deg"]))
        size.append(float(np.max(np.abs(np.asarray(sample.info["scale_xyz"]) / np.asarray(ph.params["scale"]) - 1))))
        dice.append(sample.info["fit_dice"])
    q = lambda a: {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": float(np.max(a))}  # noqa
    return {"n": len(seeds), "rotation_error_deg": q(err), "size_error": q(size), "fit_dice_min": float(min(dice))}


def reproduce(out, smoke=False, seed=0, kinds=(T.HEAD, T.CXR), overrides=None, log=print) -> dict:
    cfg = dict(SMOKE if smoke else FULL, **(overrides or {}))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    results = {"synthetic": True, "seed": seed, "smoke": bool(smoke), "kinds": {}}
    for kind in kinds:
        results["kinds"][kind] = run_kind(kind, cfg, seed, log)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    write_text(out / "report.md", report_markdown(results))
    return results
