"""The AnomalyCT reproduction's report: the stated controls' verdicts and the markdown tables of
``experiment.run_kind``'s results (every number SYNTHETIC)."""
from __future__ import annotations

CHANCE_BAND = 0.1      # random-weights control: overall case ROC-AUC within 0.5 +- this is "at chance"
PIXEL_MAPS = (("glow map", "glow_bpd"), ("GAN map", "gan"), ("atlas z", "atlas_z"), ("HU threshold", "hu_threshold"),
              ("random-weights Glow map", "glow_random"))   # one column per distinct map (the Glow scores share one)


def verdicts(r: dict) -> dict:
    """PASS/FAIL of the stated controls per method: ``normal_variation`` ({variant (and 'all'): {method: each
    variant's healthy cases flagged at most ``normal_variation_limit``}}), ``population_control`` (head: the atlas
    without atrophic normals flags the atrophy variant above that limit) and, for the random-weights methods
    (``random_methods``), ``random_at_chance`` (overall case ROC-AUC within 0.5 +- CHANCE_BAND)."""
    limit = r["normal_variation_limit"]
    out = {"normal_variation": {v: {m: "PASS" if f["rate"] <= limit else "FAIL" for m, f in d.items()}
                                for v, d in r["normal_variation_flagged"].items()}}
    atrophy = r["normal_variation_flagged"].get("atrophy", {}).get("atlas_z_no_atrophy")
    if atrophy is not None:         # the population control must flag the variant its normals lack
        out["population_control"] = {"atlas_z_no_atrophy": "PASS" if atrophy["rate"] > limit else "FAIL"}
    out["random_at_chance"] = {}
    for m in r.get("random_methods", []):
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
        lines += ["", "Pixel AUROC of the maps (mean over cases [bootstrap CI clustered by background patient]; "
                  "peak-in-lesion rate); the three Glow scores share one map, as do the two GAN scores", "",
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
