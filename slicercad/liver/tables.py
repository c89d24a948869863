"""The report's tables (seed 000, Table 1 and the attention question) as Markdown from
``slicercad liver reproduce`` results. Pure formatting: every number comes from results.json."""
from __future__ import annotations


def _f(value, digits=2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(block: dict, key: str) -> str:
    lo, hi = block.get(f"{key}_ci95") or (None, None)
    text = _f(block.get(key))
    return text if lo is None else f"{text} [{lo:.2f}, {hi:.2f}]"


def size_bin_table(metrics: dict) -> list[str]:
    """Per size bin: precision/recall per class, accuracy and balanced accuracy (95% CI), majority baseline."""
    classes = metrics["classes"]
    head = ["size", "n"] + [f"{c} P / R" for c in classes] + ["accuracy [95% CI]", "balanced acc. [95% CI]",
                                                              "majority baseline"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for block in list(metrics.get("by_size", [])) + [dict(metrics, bin="all")]:
        if not block.get("n"):
            rows.append(f"| {block['bin']} | 0 |" + " |" * (len(head) - 2))
            continue
        pr = [f"{_f(block['per_class'][c]['precision'])} / {_f(block['per_class'][c]['recall'])}" for c in classes]
        rows.append("| " + " | ".join([block["bin"], str(block["n"]), *pr, _ci(block, "accuracy"),
                                       _ci(block, "balanced_accuracy"),
                                       _f(block["majority_baseline"]["accuracy"])]) + " |")
    return rows


def _p(block: dict, key: str) -> str:
    return "" if not block or block.get(key) is None else f"{block[key]:.3f}"


def alpha_table(study: dict) -> list[str]:
    """Per arm (no attention included): balanced accuracy, focus score and occlusion (means over seeds),
    each against the arm's own randomised-weights null; differences against the reference α of
    balanced accuracy and of the excesses over null, with the paired patient-cluster bootstrap p
    (raw, Holm per measure over arms, Holm over all arms x measures)."""
    ref = study["reference"]
    rows = ["| arm | accuracy | balanced acc. | Δ bal. acc. vs α=" + ref + " [95% CI] | p (Holm/measure; Holm/all) | "
            "focus: trained / own null | Δ focus excess over null [95% CI] | p (Holm/measure; Holm/all) | "
            "occlusion change, lesion / control: trained; own null | Δ occlusion excess over null [95% CI] | "
            "p (Holm/measure; Holm/all) | control size at network input (lesion occlusion) |",
            "|" + "---|" * 12]
    for key, row in study["rows"].items():
        comp = row.get("vs_" + ref) or {}
        label = "no attention" if key == "none" else f"α = {key}"

        def cell(measure, digits=3):
            c = comp.get(measure)
            if not c:
                return "reference", ""
            lo, hi = c.get("ci95") or (None, None)
            ci = "" if lo is None else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
            d = c.get("mean_difference")
            return (("undefined" if d is None else f"{d:+.{digits}f}") + ci,
                    f"{_p(c, 'p_bootstrap')} ({_p(c, 'p_holm')}; {_p(c, 'p_holm_all')})")

        d_bacc, p_bacc = cell("balanced_accuracy")
        d_focus, p_focus = cell("focus_over_null", 2)
        d_occ, p_occ = cell("occlusion_over_null")
        g = row.get
        focus = f"{_f(g('focus_mean'))} / {_f(g('focus_null_mean'))}" if "focus_mean" in row else "–"
        occ = (f"{_f(g('occlusion_change_lesion_mean'), 3)} / {_f(g('occlusion_change_control_mean'), 3)}; "
               f"{_f(g('occlusion_null_change_lesion_mean'), 3)} / {_f(g('occlusion_null_change_control_mean'), 3)}"
               if "occlusion_change_lesion_mean" in row else "–")
        size = (f"{_f(g('input_change_control_mean'), 1)} ({_f(g('input_change_lesion_mean'), 1)})"
                if "input_change_control_mean" in row else "–")
        rows.append(f"| {label} | {_f(row['accuracy_mean'], 3)} | {_f(row['balanced_accuracy_mean'], 3)} | {d_bacc} | "
                    f"{p_bacc} | {focus} | {d_focus} | {p_focus} | {occ} | {d_occ} | {p_occ} | {size} |")
    return rows


def results_markdown(results: dict, command: str = "make reproduce-liver") -> str:
    """The whole SYNTHETIC LiverLesionCAD report as Markdown."""
    base = results["baseline_logistic_roi_means"]
    focus = results["focus"]
    study = results["alpha_study"]
    lines = [
        "# LiverLesionCAD — SYNTHETIC phantom results", "",
        f"`{command}`: {results['n_train']} training / {results['n_test']} test lesions (test phantom: another "
        f"seed and shifted acquisition), {results['epochs']} epochs of the task's recipe "
        f"({results.get('recipe', 'task.RECIPE')}), {results.get('n_trainings', '?')} trainings, runtime "
        f"{results['runtime_s']:.0f} s. Every "
        "input is built by the product's sample path (attention from the ROI centre + measured diameter) unless "
        "a table says mask mode. CIs resample test patients.", "",
        "## Per size bin, α = 0.1 (the report's Table 1)", "", *size_bin_table(results["size_bins_alpha_0.1"]), "",
    ]
    if results.get("size_bins_mask_mode"):
        lines += ["## Mask mode (attention from the lesion mask; reported on its own)", "",
                  *size_bin_table(results["size_bins_mask_mode"]), ""]
    lines += [
        f"Logistic regression on per-phase ROI means (the simple baseline): accuracy {_f(base['accuracy'])}, "
        f"balanced accuracy {_f(base['balanced_accuracy'])}, majority baseline {_f(base['majority_baseline'])}"
        f"{' — phantom TOO EASY' if base.get('too_easy') else ''}.", "",
        f"## Attention arms ({len(study['seeds'])} training seeds each; {study.get('test', 'paired t-test')}, "
        f"{study.get('correction', 'uncorrected')})", "",
        *alpha_table(study), "",
        "Focus score: Grad-CAM mass in the lesion / lesion area fraction (1 = no focus). Occlusion: total-variation "
        "change of the predicted probabilities when the lesion is replaced by the median of its surroundings "
        "(lesion) vs when the lesion's own pixels are pasted at another position of the ROI (control). Raw focus "
        "and occlusion are confounded by the attention itself: (G + α) weighting dims the surroundings and "
        "attenuates the pasted control (its size where the network sees it, last column: mean absolute change "
        "of the attended input summed over pixels), so arms are compared on their EXCESS over their own "
        "randomised-weights null (the same model re-initialised): focus − null focus, and (lesion − control) − "
        "(null lesion − null control). p: paired patient-cluster bootstrap, raw, then Holm per measure over "
        "the arms, then Holm over all arms × measures.", "",
        "## Grad-CAM focus of the α = 0.1 model against randomised weights", "",
        "| model | mean focus score |", "|---|---|",
        f"| trained | {_f(focus['focus_trained_mean'])} |",
        f"| randomised weights (control) | {_f(focus['focus_random_mean'])} |", "",
        f"Occlusion (α = 0.1 model, n = {focus.get('n_occluded')}): occluding the lesion changes the probabilities by "
        f"{_f(focus.get('occlusion_change_lesion_mean'), 3)} (true-class drop {_f(focus.get('occlusion_drop_lesion_mean'), 3)}); "
        f"pasting the lesion elsewhere by {_f(focus.get('occlusion_change_control_mean'), 3)} (drop "
        f"{_f(focus.get('occlusion_drop_control_mean'), 3)}).", "",
    ]
    return "\n".join(lines)
