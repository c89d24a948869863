"""Head CT evaluation row on a **real** normal background (``make reproduce-anomaly``): the one real head CT of
Debian's invesalius-examples (``synth.real_anatomy``), augmented by small rigid transforms only (rotation about
z ~ U(-4, 4) degrees, shifts ~ U(-3, 3) mm per axis), each copy scored as a normal and with a SYNTHETIC
haemorrhage inserted (ICH 14 mm / +25 HU and SDH 7 mm / +25 HU, mid-sweep cells). ONE real patient: the AUROCs
have no confidence interval and say only whether the inserted bleed raises the score on real anatomy; the
flagged rate of the untouched copies at the phantom threshold measures the phantom-to-real gap."""
from __future__ import annotations

import numpy as np

from ..engine.metrics import weighted_auc
from . import task as T

LESIONS = (("ich", 14.0, 25.0), ("sdh", 7.0, 25.0))


def real_background_rows(outputs, thresholds: dict, n_real: int, seed: int = 0, log=print):
    """``outputs(x) -> {method: (scores, maps)}``; None (with a log line) when the real file is absent."""
    from ..synth.anomaly_head import insert_anomaly
    from ..synth.real_anatomy import INVESALIUS_CRANIUM, invesalius_head_ct, real_head_background, small_transform

    if not INVESALIUS_CRANIUM.is_file():
        log(f"[head_ct] real background skipped: {INVESALIUS_CRANIUM} absent (Debian invesalius-examples)")
        return None
    native = invesalius_head_ct()
    rng = np.random.default_rng([seed, 41])
    normals, anomalous = [], {k[0]: [] for k in LESIONS}
    for i in range(n_real):
        bg = real_head_background(small_transform(native, rng.uniform(-4, 4), rng.uniform(-3, 3, 3)))
        normals.append(T.sample_of(bg.image, T.HEAD, f"real{i}").stacked())
        for kind, size, contrast in LESIONS:
            img = insert_anomaly(bg, kind, size, contrast, int(rng.integers(1 << 30)))[0]
            anomalous[kind].append(T.sample_of(img, T.HEAD, f"real{i}_{kind}").stacked())
    o_n = outputs(np.stack(normals))
    o_a = {k: outputs(np.stack(v)) for k, v in anomalous.items()}
    rows = {}
    for m in o_n:
        sn = o_n[m][0]
        row = {"normals_flagged": float(np.mean(sn > thresholds[m]))}
        for k in anomalous:
            sa = o_a[k][m][0]
            pos = np.r_[np.zeros(len(sn), bool), np.ones(len(sa), bool)]
            row[f"auc_{k}"] = float(weighted_auc(pos, np.r_[sn, sa], np.ones((1, len(pos))))[0])
            row[f"paired_{k}"] = float(np.mean(sa > sn))
        rows[m] = row
    log(f"[head_ct] real background: {n_real} copies of one real head")
    return {"n_copies": n_real, "lesions": [list(x) for x in LESIONS], "methods": rows}


def real_markdown(real: dict) -> list:
    methods = list(real["methods"])
    kinds = [x[0] for x in real["lesions"]]
    lines = [f"### head_ct — REAL normal background (invesalius-examples Cranium.inv3: ONE patient, "
             f"{real['n_copies']} small rigid transforms of it; bleeds SYNTHETIC; no CI)", "",
             "| row | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for k in kinds:
        lines.append(f"| AUROC copies vs copies + {k} | " + " | ".join(
            f"{real['methods'][m][f'auc_{k}']:.2f}" for m in methods) + " |")
        lines.append(f"| {k}: copy + bleed > same copy | " + " | ".join(
            f"{real['methods'][m][f'paired_{k}']:.2f}" for m in methods) + " |")
    lines.append("| real copies flagged at the phantom 95th pct | " + " | ".join(
        f"{real['methods'][m]['normals_flagged']:.2f}" for m in methods) + " |")
    return lines + [""]
