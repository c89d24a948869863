"""Evaluation report: metrics.json + report.md + report.html with PNG plots, written atomically.

The report is built once as a list of blocks (heading, paragraph, table, image) and rendered
to both Markdown and HTML, so the two always say the same thing.
"""
from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_path, write_json, write_text  # noqa: E402
from ..errors import InputError  # noqa: E402
from .metrics import CI_LEVEL, jsonable  # noqa: E402

SYNTHETIC_BANNER = ("SYNTHETIC DATA — these figures come from generated phantoms, not from patients; "
                    "they show that the pipeline works, not how it performs clinically.")


def _fmt(value, digits=3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(pair) -> str:
    return "–" if not pair or pair[0] is None else f"{pair[0]:.3f}–{pair[1]:.3f}"


def _with_ci(value, pair) -> str:
    return f"{_fmt(value)} ({_ci(pair)})"


def _level(m) -> str:
    return f"{100 * m.get('ci_level', CI_LEVEL):g}%"


def _resampling_text(m) -> str:
    """What the CIs are and which unit the bootstrap resamples."""
    text = (f"{_level(m)} confidence intervals: percentile bootstrap, {m.get('n_boot', 0)} resamples "
            f"(seed {m.get('seed', 0)}), ")
    if m.get("resampling_unit") == "patient":
        return text + f"resampling whole patients ({m['n_patients']} patients, each with all its cases)."
    return text + ("resampling single cases: no patient ids were given, so if a patient has several cases "
                   "these intervals are too narrow (give a patient column).")


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _plot_confusion(m, path):
    cm = np.asarray(m["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(1.2 * len(cm) + 2, 1.2 * len(cm) + 1.5))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ticks = range(len(m["classes"]))
    ax.set_xticks(ticks, m["classes"], rotation=30, ha="right")
    ax.set_yticks(ticks, m["classes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    return _save(fig, path)


def _plot_roc(m, path):
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, roc in m["roc"]["per_class"].items():
        if roc["auc"] is not None:
            ax.plot(roc["fpr"], roc["tpr"], label=f"{name}: AUC {roc['auc']:.3f} [{_ci(roc['ci95'])}]")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"ROC (one-vs-rest, {_level(m)} bootstrap CI)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _plot_reliability(m, path):
    cal = m["calibration"]
    fig, ax = plt.subplots(figsize=(5, 5))
    width = 1.0 / cal["n_bins"]
    centres = [b["lo"] + width / 2 for b in cal["bins"]]
    acc = [b["accuracy"] if b["accuracy"] is not None else 0.0 for b in cal["bins"]]
    ax.bar(centres, acc, width=width * 0.9, edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 1], "r--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE {cal['ece']:.3f})")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def _plot_size_bins(m, path):
    bins = [b for b in m["by_size"] if b["n"]]
    x = np.arange(len(bins))
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (key, label) in enumerate([("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")]):
        ax.bar(x + (k - 0.5) * 0.35, [b[key] for b in bins], width=0.35, label=label)
    ax.scatter(x, [b["majority_baseline"]["accuracy"] for b in bins], marker="_", s=600, c="k",
               label="majority-class baseline", zorder=3)
    ax.set_xticks(x, [f"{b['bin']}\n(n={b['n']})" for b in bins])
    ax.set_ylim(0, 1)
    ax.set_title("By lesion size")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_bland_altman(m, path):
    ba = m["bland_altman"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(ba["mean"], ba["diff"], s=10, alpha=0.7)
    for value, style, label in [(m["bias"], "-", "bias"), (m["loa_lower"], "--", "−1.96 SD"),
                                (m["loa_upper"], "--", "+1.96 SD")]:
        if value is not None:
            ax.axhline(value, ls=style, c="r", lw=1)
            ax.annotate(f"{label} {value:.2f}", (1.0, value), xycoords=("axes fraction", "data"), fontsize=8)
    ax.set_xlabel("mean of reference and prediction")
    ax.set_ylabel("prediction − reference")
    ax.set_title("Bland–Altman")
    return _save(fig, path)


def _plot_dice(m, path):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist([c["dice"] for c in m["cases"]], bins=np.linspace(0, 1, 21), edgecolor="k")
    ax.set_xlabel("Dice")
    ax.set_ylabel("cases")
    ax.set_title("Dice per case")
    return _save(fig, path)


def _patients_row(m) -> list:
    return [] if m.get("n_patients") is None else [["patients", m["n_patients"]]]


def _classification_blocks(m, out):
    base = m["majority_baseline"]
    yield ("table", ["metric", "value"], [
        ["cases", m["n"]], *_patients_row(m),
        [f"majority-class baseline (always '{base['class']}')", _fmt(base["accuracy"])],
        [f"accuracy ({_level(m)} CI)", _with_ci(m["accuracy"], m["accuracy_ci95"])],
        [f"balanced accuracy ({_level(m)} CI)", _with_ci(m["balanced_accuracy"], m["balanced_accuracy_ci95"])],
        [f"macro AUC ({_level(m)} CI)", _with_ci(m["roc"]["macro_auc"], m["roc"]["macro_auc_ci95"])],
        ["expected calibration error", _fmt(m["calibration"]["ece"])]])
    yield ("h", "Per class")
    yield ("table", ["class", "precision", "recall", "support", f"AUC ({_level(m)} CI)"],
           [[name, _fmt(pc["precision"]), _fmt(pc["recall"]), pc["support"],
             _with_ci(m["roc"]["per_class"][name]["auc"], m["roc"]["per_class"][name]["ci95"])]
            for name, pc in m["per_class"].items()])
    yield ("img", _plot_confusion(m, out / "confusion_matrix.png"), "Confusion matrix")
    yield ("img", _plot_roc(m, out / "roc.png"), "ROC curves")
    yield ("img", _plot_reliability(m, out / "reliability.png"), "Reliability diagram")
    if m.get("by_size"):
        yield ("h", "By lesion size")
        header = ["size", "n", "patients", f"accuracy ({_level(m)} CI)", "baseline",
                  f"balanced acc. ({_level(m)} CI)"]
        header += [f"{c} {k}" for c in m["classes"] for k in ("P", "R")]
        rows = []
        for b in m["by_size"]:
            if not b["n"]:
                rows.append([b["bin"], 0] + ["–"] * (len(header) - 2))
                continue
            row = [b["bin"], b["n"], _fmt(b.get("n_patients")), _with_ci(b["accuracy"], b["accuracy_ci95"]),
                   _fmt(b["majority_baseline"]["accuracy"]),
                   _with_ci(b["balanced_accuracy"], b["balanced_accuracy_ci95"])]
            row += [_fmt(b["per_class"][c][k]) for c in m["classes"] for k in ("precision", "recall")]
            rows.append(row)
        yield ("table", header, rows)
        if any(b["n"] for b in m["by_size"]):
            yield ("img", _plot_size_bins(m, out / "size_bins.png"), "Accuracy by lesion size")


def _regression_blocks(m, out):
    yield ("table", ["metric", "value"], [
        ["cases", m["n"]], *_patients_row(m), [f"MAE ({_level(m)} CI)", _with_ci(m["mae"], m["mae_ci95"])],
        ["RMSE", _fmt(m["rmse"])], ["bias (prediction − reference)", _fmt(m["bias"])],
        ["limits of agreement", f"{_fmt(m['loa_lower'])} to {_fmt(m['loa_upper'])}"],
        ["Pearson r", _fmt(m["pearson_r"])]])
    if m.get("by_size"):
        yield ("h", "By lesion size")
        yield ("table", ["size", "n", "patients", f"MAE ({_level(m)} CI)", "bias"],
               [[b["bin"], b["n"], _fmt(b.get("n_patients")), _with_ci(b.get("mae"), b.get("mae_ci95")),
                 _fmt(b.get("bias"))] for b in m["by_size"]])
    yield ("img", _plot_bland_altman(m, out / "bland_altman.png"), "Bland–Altman plot")


def _segmentation_blocks(m, out):
    rows = [[name, _fmt(m[k]["mean"]), _ci(m[k].get("mean_ci95")), _fmt(m[k]["sd"]), _fmt(m[k]["median"]), m[k]["n"]]
            for name, k in [("Dice", "dice"), ("HD95 (mm)", "hd95_mm"), ("ASSD (mm)", "assd_mm")]]
    yield ("table", ["metric", "mean", f"{_level(m)} CI of the mean", "SD", "median", "n"], rows)
    if m.get("by_size"):
        yield ("h", "By lesion size")
        yield ("table", ["size", "n", "patients", f"Dice mean ({_level(m)} CI)", "HD95 mean (mm)"],
               [[b["bin"], b["n"], _fmt(b.get("n_patients")), _with_ci(b["dice"]["mean"], b["dice"].get("mean_ci95")),
                 _fmt(b["hd95_mm"]["mean"])] for b in m["by_size"]])
    yield ("img", _plot_dice(m, out / "dice.png"), "Dice per case")


_BLOCKS = {"classification": _classification_blocks, "regression": _regression_blocks,
           "segmentation": _segmentation_blocks}


def _markdown(blocks) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h":
            lines += [f"## {block[1]}", ""]
        elif kind == "banner":
            lines += [f"> **{block[1]}**", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            lines.append("| " + " | ".join(map(str, block[1])) + " |")
            lines.append("|" + "---|" * len(block[1]))
            lines += ["| " + " | ".join(map(str, row)) + " |" for row in block[2]]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def _html(title, blocks) -> str:
    e = html.escape
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            body.append(f"<h1>{e(block[1])}</h1>")
        elif kind == "h":
            body.append(f"<h2>{e(block[1])}</h2>")
        elif kind == "banner":
            body.append(f'<div class="banner">{e(block[1])}</div>')
        elif kind == "p":
            body.append(f"<p>{e(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "img":
            body.append(f'<figure><img src="{e(block[1])}" alt="{e(block[2])}"><figcaption>{e(block[2])}'
                        "</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:2px 8px}.banner{background:#c00;color:#fff;font-weight:bold;"
             "padding:.6em;margin:1em 0}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title><style>{style}</style>'
            f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(metrics: dict, out_dir, title: str, synthetic: bool) -> dict:
    """Write metrics.json, report.md, report.html and the plots into ``out_dir``; return their paths."""
    task = metrics.get("task")
    if task not in _BLOCKS:
        raise InputError(f"metrics 'task' must be one of {sorted(_BLOCKS)}, got {task!r}", "metrics")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = [("h1", title)]
    if synthetic:
        blocks.append(("banner", SYNTHETIC_BANNER))
    blocks.append(("p", f"Task: {task}. {_resampling_text(metrics)}"
                        + (" Distances in mm." if task == "segmentation" else "")))
    blocks += list(_BLOCKS[task](metrics, out))
    paths = {"metrics": write_json(out / "metrics.json", jsonable({"title": title, "synthetic": bool(synthetic),
                                                                    **metrics})),
             "markdown": write_text(out / "report.md", _markdown(blocks)),
             "html": write_text(out / "report.html", _html(title, blocks))}
    paths["plots"] = [out / b[1] for b in blocks if b[0] == "img"]
    return paths
