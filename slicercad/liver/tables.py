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


def alpha_table(study: dict) -> list[str]:
    """Accuracy and balanced accuracy per α (mean over seeds) with the paired test against the reference α."""
    ref = study["reference"]
    rows = ["| α | accuracy (mean of seeds) | balanced acc. (mean) | Δ balanced acc. vs α=" + ref
            + " | paired t-test p |", "|---|---|---|---|---|"]
    for key, row in study["rows"].items():
        diff = row.get("balanced_accuracy_vs_" + ref) or {}
        label = "no attention" if key == "none" else key
        rows.append(f"| {label} | {_f(row['accuracy_mean'], 3)} | {_f(row['balanced_accuracy_mean'], 3)} | "
                    f"{_f(diff.get('mean_difference'), 3) if diff else 'reference'} | "
                    f"{_f(diff.get('paired_t_p'), 3) if diff else ''} |")
    return rows


def results_markdown(results: dict, command: str = "make reproduce-liver") -> str:
    """The whole SYNTHETIC LiverLesionCAD report as Markdown."""
    base = results["baseline_logistic_roi_means"]
    focus = results["focus"]
    study = results["alpha_study"]
    lines = [
        "# LiverLesionCAD — SYNTHETIC phantom results", "",
        f"`{command}`: {results['n_train']} training / {results['n_test']} test lesions (test phantom: another "
        f"seed and shifted acquisition), {results['epochs']} epochs, runtime {results['runtime_s']:.0f} s.", "",
        "## Per size bin, α = 0.1 (the report's Table 1)", "", *size_bin_table(results["size_bins_alpha_0.1"]), "",
        f"Logistic regression on per-phase ROI means (the simple baseline): accuracy {_f(base['accuracy'])}, "
        f"balanced accuracy {_f(base['balanced_accuracy'])}, majority baseline {_f(base['majority_baseline'])}"
        f"{' — phantom TOO EASY' if base.get('too_easy') else ''}.", "",
        f"## Attention α ({len(study['seeds'])} seeds each, paired t-test on balanced accuracy)", "",
        *alpha_table(study), "",
        "## Grad-CAM focus (CAM mass in the lesion / lesion area fraction; 1 = no focus)", "",
        "| model | mean focus score |", "|---|---|",
        f"| trained | {_f(focus['focus_trained_mean'])} |",
        f"| randomised weights (control) | {_f(focus['focus_random_mean'])} |", "",
        f"Occlusion: covering the lesion lowers the true-class probability by "
        f"{_f(focus['occlusion_drop_lesion_mean'], 3)} on average; covering an equal area of surroundings by "
        f"{_f(focus['occlusion_drop_surroundings_mean'], 3)}.", "",
    ]
    return "\n".join(lines)
