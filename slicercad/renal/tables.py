"""Markdown of the renal reproduce results (SYNTHETIC), and of the KiTS23 clinical baseline (real data)."""
from __future__ import annotations


def _ci(v):
    return "-" if not v or v[0] is None else f"{v[0]:.3f}-{v[1]:.3f}"


def _p(v):
    return "-" if v is None else f"{v:.3g}"


def _perm_p(ctrl: dict) -> str:
    from .clinical import permutation_p_text

    return "permutation " + permutation_p_text(ctrl["p_value_real_auc"], ctrl["n_permutations"])


def results_markdown(r: dict) -> str:
    lines = ["# RenalMassCAD - seed 004 on the SYNTHETIC phantom", "",
             "**SYNTHETIC**: every number below is measured on generated images, not patients.", "",
             f"{r['n_masses']} masses ({r['n_benign']} benign) of {r['n_patients']} patients; {r['folds']}-fold "
             f"{r['split']}.", "", "| model | AUC | 95 % CI (patients) | accuracy at Youden cut-off (training folds) |",
             "|---|---|---|---|"]
    for m, v in r["models"].items():
        lines.append(f"| {m} | {v['auc']:.3f} | {_ci(v['auc_ci95'])} | {v['youden_accuracy']:.3f} "
                     f"({_ci(v['youden_accuracy_ci95'])}) |")
    lines += ["", "Paired AUC differences (same patient bootstrap resamples):", "", "| pair | difference | 95 % CI | p |",
              "|---|---|---|---|"]
    holm = any("p_holm" in v for v in r["paired_auc"].values())
    if holm:
        lines[-2:] = ["| pair | difference | 95 % CI | p | p (Holm) |", "|---|---|---|---|---|"]
    for k, v in r["paired_auc"].items():
        lines.append(f"| {k} | {v['auc_difference']:+.3f} | {_ci(v['ci95'])} | {_p(v['p_bootstrap'])} |" +
                     (f" {_p(v.get('p_holm'))} |" if holm else ""))
    if holm:
        lines += ["", f"{r.get('paired_p_adjustment', 'Holm')}; a bootstrap p of 0 means < 1/{r.get('n_boot')}."]
    reg = r.get("regression", {})
    if "predictors" in reg:
        lines += ["", "Multivariable logistic regression (statsmodels; pooled out-of-fold CNN logits + age + sex + size):",
                  "", "| predictor | OR | 95 % CI | p |", "|---|---|---|---|"]
        for k, v in reg["predictors"].items():
            lines.append(f"| {k} | {v['odds_ratio']:.3g} | {_ci(v['odds_ratio_ci95'])} | {v['p']:.3g} |")
        col = reg.get("collinearity")
        if col:
            lines += ["", "Collinearity of the predictors (pooled out-of-fold logits): Pearson r between the per-phase "
                      "CNN logits; variance inflation factor of every term:", ""]
            lines += [f"- r({k}) = {v:.2f}" for k, v in col["correlation"].items()]
            lines.append("- VIF: " + ", ".join(f"{k} {v:.2f}" for k, v in col["vif"].items()))
    lines += ["", "Core HU by mass type (mean, SD) per phase:", ""]
    for t, v in r.get("hu_by_type", {}).items():
        lines.append(f"- {t} (n={v['n']}): " + ", ".join(f"{p} {v[p][0]:.0f} ({v[p][1]:.0f})"
                                                        for p in v if p != "n"))
    if r.get("hu_auc_by_phase"):
        lines += ["", "Raw AUC of the core HU per phase (no fitting; < 0.5: malignant masses lower):", ""]
        lines += [f"- {p}: mean HU {v['mean_hu']:.3f}" + (f", ΔHU {v['delta_hu']:.3f}" if "delta_hu" in v else "")
                  for p, v in r["hu_auc_by_phase"].items()]
    if r.get("controls"):
        lines += ["", f"Controls ({r.get('control_rule', '')}):", ""]
        lines += [f"- {k}: AUC {v['auc']:.3f} -> {'at chance' if v['at_chance'] else 'NOT AT CHANCE'}"
                  for k, v in r["controls"].items()]
    if "excluded_flagged_by_type" in r:
        by = r["excluded_flagged_by_type"]
        lines += ["", f"Phantom masses flagged and left out of the evaluation: {r.get('excluded_flagged', 0)}" +
                  ("" if by else " (none)"), ""]
        lines += [f"- {t}: {v['n']} ({v['malignant']} malignant): " +
                  ", ".join(f"{k} {n}" for k, n in v["flags"].items()) for t, v in by.items()]
    lines += ["", "Flag cases (reported, not scored):", ""]
    for k, v in r.get("flag_cases", {}).items():
        lines.append(f"- {k}: {'; '.join(v) or 'NOT FLAGGED'}")
    kb = r.get("kits23_clinical_baseline")
    if kb:
        lines += ["", "## KiTS23 clinical baseline (real data; not comparable case-for-case with the phantom)", "",
                  f"{kb['n_masses']} solid masses <= 4 cm ({kb['n_benign']} benign): age + sex + size, repeated "
                  f"stratified {kb['folds']}-fold CV AUC {kb['auc']:.3f} ({_ci(kb['auc_ci95'])}); permuted labels "
                  f"{kb['permuted_label_control']['auc']:.3f} ({_ci(kb['permuted_label_control']['auc_ci95'])}), "
                  f"{_perm_p(kb['permuted_label_control'])}. The AUC CI bootstraps the out-of-fold predictions "
                  "without refitting: it understates the uncertainty."]
    return "\n".join(lines) + "\n"
