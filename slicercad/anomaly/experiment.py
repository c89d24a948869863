"""``slicercad anomaly reproduce``: seed 001 part (2) on the SYNTHETIC phantoms (head CT 3D, chest X-ray 2D).

Per input kind: train Glow and f-AnoGAN on normals only (patients disjoint from everything else), calibrate on
held-out normals, then score test normals + anomalies inserted into **other test normals' heads / chests**
(each anomalous case is clustered with its background patient in the bootstrap). Reported, all SYNTHETIC:
* case ROC-AUC with a patient-cluster bootstrap 95% CI per method, overall and per anomaly type, size, contrast
  (each anomalous group against all test normals);
* pixel AUROC of the maps (per anomalous case, lesion voxels vs the other mask voxels; mean with a case
  bootstrap CI) and how often the map's peak lies inside the lesion (dilated by one voxel);
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
(f-AnoGAN), gan_map, atlas_z, atlas_z_no_atrophy (head), hu_threshold (head), glow_random / glow_random_map
(untrained).
Training budget: STEP_BUDGET optimiser steps per model (``task.epochs_for_steps``) unless ``epochs`` is given.
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
from .baselines import AtlasZ, hu_threshold_maps, hu_threshold_scores
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


def _pixel(maps, lesions, masks, n_boot, seed=0):
    aucs, peaks = [], []
    for m, les, msk in zip(maps, lesions, masks):
        if les.sum() == 0 or (msk & ~les).sum() == 0:
            continue
        v, p = m[msk], les[msk]
        aucs.append(float(weighted_auc(p, v, np.ones((1, len(v))))[0]))
        peak = np.unravel_index(np.argmax(np.where(msk, m, -np.inf)), m.shape)
        peaks.append(bool(ndimage.binary_dilation(les)[peak]))
    if not aucs:
        return {"auc": None, "ci": [None, None], "peak_in_lesion": None, "n": 0}
    a = np.asarray(aucs)
    w = bootstrap_weights(len(a), None, n_boot, seed)
    return {"auc": float(a.mean()), "ci": percentile_ci(w @ a / w.sum(1)), "peak_in_lesion": float(np.mean(peaks)),
            "n": len(a)}


LEARNED = (("glow_bpd", "glow", "score"), ("glow_complexity", "glow", "variant"), ("glow_map", "glow", "map_score"),
           ("gan", "gan", "score"), ("gan_map", "gan", "map_score"))
RANDOM = (("glow_random", "glow_random", "score"), ("glow_random_map", "glow_random", "map_score"))


def method_outputs(models, atlases, kind, x, reference=False):
    """{method: (scores, maps)} for stacked ``x``; ``atlases``: {method: AtlasZ}; ``reference``: the
    held-out-normal scores for thresholds (map scores leave-one-out)."""
    out, raw = {}, {}
    for name, model in models.items():
        raw[name] = (T.held_out_reference(model, torch.from_numpy(x), set_stats=False) if reference else
                     T.raw_scores(model, torch.from_numpy(x)))
    for method, model, key in LEARNED:
        out[method] = (raw[model][key], raw[model]["map"])
    for method, atlas in atlases.items():
        out[method] = (atlas.scores(x), atlas.maps(x))
    if kind == T.HEAD:
        out["hu_threshold"] = (hu_threshold_scores(x), hu_threshold_maps(x))
    for method, model, key in RANDOM:
        out[method] = (raw[model][key], raw[model]["map"])
    return out


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
    x = {k: np.stack([T.phantom_normal(kind, s)[0] for s in v]) for k, v in seeds.items()}
    pids = {k: [T.phantom_normal(kind, s)[1] for s in v] for k, v in seeds.items()}
    log(f"[{kind}] {len(x['train'])} train / {len(x['val'])} val / {len(x['test'])} test normals "
        f"({time.perf_counter() - t0:.0f} s)")
    xt, xv = torch.from_numpy(x["train"]), torch.from_numpy(x["val"])
    glow_task, gan_task = T.task_for(kind, "glow"), T.task_for(kind, "gan")
    from ..engine.tasks import get_task
    models, info = {}, {}
    epochs = cfg.get("epochs") or T.epochs_for_steps(len(xt), T.RECIPE["batch_size"], cfg["steps"])
    for name, task_name in (("glow", glow_task), ("gan", gan_task)):
        spec = get_task(task_name)
        model = spec.build_model(spec.config(cfg.get(f"{name}_config")))
        info[name] = T.fit_detector(model, xt, xv, epochs, T.RECIPE["batch_size"], T.RECIPE["lr"], seed)
        models[name] = model
        log(f"[{kind}] {name} trained ({time.perf_counter() - t0:.0f} s)")
    rnd = get_task(glow_task).build_model(get_task(glow_task).config(cfg.get("glow_config")))
    rnd.glow.initialise(T.model_input(xt[:16], torch.Generator().manual_seed(seed)))
    T.calibrate(rnd.eval(), xv)
    models["glow_random"] = rnd
    atlas = {"atlas_z": AtlasZ(x["train"])}
    if kind == T.HEAD:                # the control that must fail: the atlas of the normals without atrophy
        from ..synth.anomaly_head import population
        young = [i for i, s in enumerate(seeds["train"]) if population(s)["atrophy"] == 0.0]
        if len(young) >= 2:
            atlas["atlas_z_no_atrophy"] = AtlasZ(x["train"][young])
    anomalies = _anomalies(kind, seeds["test"], cfg["per_cell"], seed, cfg.get("cells"))
    xa = np.stack([a[0] for a in anomalies])
    log(f"[{kind}] {len(anomalies)} anomalous cases ({time.perf_counter() - t0:.0f} s)")
    out_n = method_outputs(models, atlas, kind, x["test"])
    out_a = method_outputs(models, atlas, kind, xa)
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
                                      [masks[i] for i in idx], cfg["n_boot"], seed)
    paired = {m: float(np.mean([out_a[m][0][i] > out_n[m][0][a[2]] for i, a in enumerate(anomalies)]))
              for m in out_a}
    # controls at 95% specificity on the held-out (calibration) normals, map scores leave-one-out
    out_v = method_outputs(models, atlas, kind, x["val"], reference=True)
    thr = {m: float(np.percentile(out_v[m][0], 95)) for m in out_v}
    test_rate = {m: flagged(out_n[m][0], thr[m], cfg["n_boot"], seed) for m in thr}
    if kind == T.HEAD:
        from ..synth.anomaly_head import SUPPORT, VARIANTS
    else:
        from ..synth.anomaly_cxr import SUPPORT, VARIANTS
    nv = {}
    for variant in VARIANTS:
        xs = np.stack([T.phantom_normal(kind, base + 30_000 + i, variant)[0] for i in range(cfg["n_variant"])])
        o = method_outputs(models, atlas, kind, xs)
        nv[variant] = {m: o[m][0] for m in o}
    nv["all"] = {m: np.concatenate([nv[v][m] for v in VARIANTS]) for m in thr}
    nv = {v: {m: flagged(d[m], thr[m], cfg["n_boot"], seed) for m in d} for v, d in nv.items()}
    sm = x["test"].copy()                 # test normals: not in the calibration that set thr and the map reference
    sigma = (0,) + (1.0,) * (sm.ndim - 2)
    for i in range(len(sm)):
        for c in range(sm.shape[1] - 1):
            sm[i, c] = ndimage.gaussian_filter(sm[i, c], sigma[1:])
    o = method_outputs(models, atlas, kind, sm)
    simple = {m: float(np.mean(o[m][0] > thr[m])) for m in o}
    o = method_outputs(models, atlas, kind, np.stack([kernel_normal(kind, sd) for sd in seeds["test"]]))
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


CHANCE_BAND = 0.1      # random-weights control: overall case ROC-AUC within 0.5 +- this is "at chance"
PIXEL_MAPS = (("glow map", "glow_bpd"), ("GAN map", "gan"), ("atlas z", "atlas_z"), ("HU threshold", "hu_threshold"),
              ("random-weights Glow map", "glow_random"))   # one column per distinct map (the Glow scores share one)


def verdicts(r: dict) -> dict:
    """PASS/FAIL of the stated controls per method: ``normal_variation`` ({variant (and 'all'): {method: each
    variant's healthy cases flagged at most ``normal_variation_limit``}}), ``population_control`` (head: the atlas without atrophic normals flags the
    atrophy variant above that limit) and, for the random-weights methods, ``random_at_chance`` (overall case
    ROC-AUC within 0.5 +- CHANCE_BAND)."""
    limit = r["normal_variation_limit"]
    out = {"normal_variation": {v: {m: "PASS" if f["rate"] <= limit else "FAIL" for m, f in d.items()}
                                for v, d in r["normal_variation_flagged"].items()}}
    atrophy = r["normal_variation_flagged"].get("atrophy", {}).get("atlas_z_no_atrophy")
    if atrophy is not None:         # the population control must flag the variant its normals lack
        out["population_control"] = {"atlas_z_no_atrophy": "PASS" if atrophy["rate"] > limit else "FAIL"}
    out["random_at_chance"] = {}
    for m, _model, _key in RANDOM:
        auc = (r["case_auc"].get(m) or {}).get("all") or {}
        if auc.get("auc") is not None:
            out["random_at_chance"][m] = "PASS" if abs(auc["auc"] - 0.5) <= CHANCE_BAND else "FAIL"
    return out


def _fmt(r):
    if r is None or r.get("auc") is None:
        return "-"
    lo, hi = r["ci"]
    return f"{r['auc']:.3f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{r['auc']:.3f}"


def _rate(f):
    lo, hi = f["ci"]
    return f"{f['rate']:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{f['rate']:.2f}"


def report_markdown(results: dict) -> str:
    lines = ["# AnomalyCT reproduction — SYNTHETIC phantoms (seed 001 part 2)", "",
             "Report (real data): chest X-ray GAN 0.752, Glow 0.783; head CT 3D Glow 0.866. "
             "Numbers below are on generated phantoms only.", ""]
    for kind, r in results["kinds"].items():
        methods = list(r["case_auc"])
        lines += [f"## {kind} — case ROC-AUC [95% patient-cluster bootstrap CI]", "",
                  "| stratum | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for label in r["case_auc"][methods[0]]:
            lines.append(f"| {label} | " + " | ".join(_fmt(r["case_auc"][m].get(label)) for m in methods) + " |")
        lines += ["", "Overall case ROC-AUC minus the atlas z-score's, paired on the same patient-cluster bootstrap "
                  "resamples [95% CI]; 'share ≤ 0' is the share of resamples where the method is not above the "
                  "atlas (a bootstrap share, not a p-value; every method is compared, no multiplicity "
                  "correction):", "",
                  "| method | Δ AUROC vs atlas_z | share ≤ 0 |", "|---|---|---|"]
        for m, d in r["delta_vs_atlas"].items():
            lo, hi = d["ci"]
            ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else ""
            share = "-" if d["p_le_0"] is None else f"{d['p_le_0']:.3f}"
            lines.append(f"| {m} | {d['delta']:+.3f}{ci} | {share} |")
        maps = [(label, m) for label, m in PIXEL_MAPS if m in r["pixel_auc"]]
        lines += ["", "Pixel AUROC of the maps (mean over cases [case bootstrap CI]; peak-in-lesion rate); the "
                  "three Glow scores share one map, as do the two GAN scores", "",
                  "| type | " + " | ".join(label for label, _ in maps) + " |", "|---|" + "---|" * len(maps)]
        for a_type in r["pixel_auc"][methods[0]]:
            cells = []
            for _label, m in maps:
                p = r["pixel_auc"][m][a_type]
                cells.append("-" if p["auc"] is None else f"{_fmt(p)}; peak {p['peak_in_lesion']:.2f}")
            lines.append(f"| {a_type} | " + " | ".join(cells) + " |")
        lines += ["", "| control | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods),
                  "| inserted > same case without (paired) | " + " | ".join(f"{r['paired_higher'][m]:.2f}"
                                                                          for m in methods) + " |"]
        lines.append("| test normals flagged at the held-out 95th pct (nominal 0.05) | " + " | ".join(
            _rate(r["test_normals_flagged"][m]) for m in methods) + " |")
        v = verdicts(r)
        for name, d in r["normal_variation_flagged"].items():
            support = r.get("variant_support", {}).get(name, "pooled")
            lines.append(f"| normal variation `{name}` ({support}) flagged, limit "
                         f"{r['normal_variation_limit']:.0%} | " + " | ".join(
                             f"{_rate(d[m])} {v['normal_variation'][name][m]}" for m in methods) + " |")
        if "population_control" in v:
            lines.append(f"| population control: atrophy flagged above {r['normal_variation_limit']:.0%} by the "
                         "atlas without atrophic normals | " + " | ".join(
                             v["population_control"].get(m, "") for m in methods) + " |")
        lines.append(f"| random weights at chance (case AUROC 0.5 ± {CHANCE_BAND}) | " + " | ".join(
            v["random_at_chance"].get(m, "") for m in methods) + " |")
        lines.append("| simple (smoothed on the model grid, 1 voxel) normals flagged | " + " | ".join(
            f"{r['simple_image_flagged'][m]:.2f}" for m in methods) + " |")
        if "kernel_flagged" in r:
            lines.append(f"| kernel (input smoothed {r['kernel_sigma_mm']:g} mm) normals flagged | " + " | ".join(
                f"{r['kernel_flagged'][m]:.2f}" for m in methods) + " |")
        lines += ["", f"Threshold: 95th percentile of each method on the held-out calibration normals (map scores "
                  f"leave-one-out). Stated normal-variation limit: at most {r['normal_variation_limit']:.0%} of "
                  f"the healthy variants flagged. {r['n_cases']['test_normals']} test normals, "
                  f"{r['n_cases']['anomalous']} anomalous; {r['seconds']:.0f} s.", ""]
        if r.get("registration"):
            g = r["registration"]
            lines += [f"Registration on the {g['n']} test normals (known pose): rotation error (angle of "
                      f"R_true^T R_est) median {g['rotation_error_deg']['median']:.2f}°, 90th pct "
                      f"{g['rotation_error_deg']['p90']:.2f}°, max {g['rotation_error_deg']['max']:.2f}°; per-axis "
                      f"size error max {g['size_error']['max']:.1%}; "
                      f"fit Dice min {g['fit_dice_min']:.3f}. The template is the phantoms' own mean shape, so "
                      "this says nothing of real heads.", ""]
        if r.get("real_background"):
            from .experiment_real import real_markdown
            lines += real_markdown(r["real_background"])
    return "\n".join(lines) + "\n"


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
