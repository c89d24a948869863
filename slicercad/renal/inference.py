"""Assess renal masses with a saved ``renal_mass_bundle``: per-phase and multi-phase CNN probabilities, the
combined probability, HU per phase and enhancement, flags, Grad-CAM per phase, provenance.

The input comes from ``dataset.mass_sample`` (the one sample path). A flagged mass (> 4 cm, macroscopic fat,
hypo-/non-enhancing, or outside the card's valid diameter range, e.g. < 5 mm) is reported with its HU and flags
and **not scored**. The combined model (logit of the 4 per-phase CNN scores + age + male + size) needs age and
sex; when either is missing -- or the age is 0 or outside the card's training range -- the image-only model
(the 4 logits) is used and the result says so. Inputs are checked: every phase must look like CT in HU
(``check_hu``); a core HU outside the training distribution and an ROI padded beyond the image edge are noted.
Bundles are built by ``bundle.build_bundle``; the default model is the bundled ``renal_mass_demo``
(``bundle.demo_model_path``).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError, PhaseError
from ..liver.roi import Lesion
from .bundle import BUNDLE_TASK, IMAGE_ONLY_FEATURES, demo_model_path
from .constants import PHASES
from .dataset import mass_sample
from .logistic import predict
from .study import COMBINED_FEATURES, MODELS, _logit, case_scores, model_input

__all__ = ["BUNDLE_TASK", "COMBINED_FEATURES", "IMAGE_ONLY_FEATURES", "MODELS", "assess_csv", "assess_masses",
           "load_bundle", "read_mass_csv", "write_csv"]


def _cam(net, x, layer="last_conv"):
    from ..engine.gradcam import grad_cam

    return grad_cam(net, x[None], layer, class_idx=1)[0]


def check_hu(images) -> None:
    """Refuse a phase whose values do not look like CT numbers in HU: an abdominal CT field of view holds fat
    or air (1st percentile < -50 HU) and nothing below -1100 HU beyond padding (-3024 .. -1024)."""
    import SimpleITK as sitk

    for p, img in images.items():
        a = sitk.GetArrayViewFromImage(img)
        lo, p1, p99 = float(a.min()), *(float(v) for v in np.percentile(a[::2, ::4, ::4], [1, 99]))
        if p1 >= -50.0 or lo < -3100.0 or p99 > 4000.0:
            raise InputError(f"the {p} phase does not look like CT in HU (min {lo:.0f}, 1st / 99th percentile "
                             f"{p1:.0f} / {p99:.0f}; expected fat or air below -50 HU): load the CT series with its "
                             "rescale (Hounsfield units)", p)


def _age_in_range(age, card, notes):
    """``age`` if usable by the combined model, else None with the reason in ``notes``."""
    if age is None:
        return None
    lo, hi = card.get("input_spec", {}).get("training_distribution", {}).get("age_years", [1.0, 120.0])
    if float(age) <= 0.0 or not lo <= float(age) <= hi:
        notes.append(f"age {float(age):g} y is outside the model's training range [{lo:g}, {hi:g}] (0 is a "
                     "placeholder): treated as missing")
        return None
    return age


def _range_notes(card, s) -> list:
    dist = card.get("input_spec", {}).get("training_distribution", {}).get("core_mean_hu", {})
    out = [f"{p} core {s.features[p]['mean_hu']:.0f} HU is outside the training distribution [{lo:g}, {hi:g}] HU: "
           "out of distribution, interpret with care" for p, (lo, hi) in dist.items()
           if p in s.features and not lo <= s.features[p]["mean_hu"] <= hi]
    if s.padded:
        out.append("ROI padded: part of it lies outside the image (filled with 0 HU), the model input differs "
                   "from training")
    return out


def assess_masses(bundle, card, images, masses, clinical=None, with_cam=True) -> list:
    """One dict per mass. ``clinical``: {mass_id: {"age_years", "male"}} (None values = missing)."""
    import torch

    from ..engine.registry import check_input
    from ..errors import ModelError

    clinical = clinical or {}
    masses = list(masses)
    if not masses:
        raise InputError("no masses given", "masses")
    missing = [p for p in PHASES if p not in images]
    if missing:
        raise PhaseError(f"study refused: the renal model needs {list(PHASES)}, missing phase(s) {missing} "
                         f"(available {sorted(images)})", masses[0].lesion_id)
    check_hu(images)
    from ..engine.predict import result_provenance

    provenance = result_provenance(card, {"phases": list(PHASES)})
    out = []
    for mass in masses:
        s = mass_sample(images, mass)
        row = {"mass_id": mass.lesion_id, "diameter_mm": float(mass.diameter_mm), "flags": list(s.flags),
               "hu": {p: s.features[p]["mean_hu"] for p in PHASES},
               "delta_hu": {p: s.features[p]["delta_hu"] for p in PHASES[1:]},
               "fat_fraction": s.features["fat_fraction"], "padded": s.padded, "provenance": provenance,
               "sample": s, "notes": _range_notes(card, s), "cams": {}}
        if not s.flags:
            try:
                check_input(card, {"diameter_mm": float(mass.diameter_mm)}, mass.lesion_id)
            except ModelError as exc:
                row["flags"].append(f"{exc.args[0]}, not scored")
        if row["flags"]:
            row["status"] = "flagged, not scored"
            out.append(row)
            continue
        x = s.x[None]
        probs = {m: float(case_scores(bundle.nets[m], x, m)[0]) for m in MODELS}
        row["probabilities"] = probs
        info = clinical.get(mass.lesion_id, {})
        age, male = _age_in_range(info.get("age_years"), card, row["notes"]), info.get("male")
        logits = [_logit(probs[p]) for p in PHASES]
        if age is None or male is None:
            lost = [k for k, v in (("age", age), ("sex", male)) if v is None]
            b = np.asarray(card["image_only_model"]["coefficients"])
            p = float(predict(b, np.array([logits]))[0])
            row["model_used"] = "image_only"
            row["notes"].append(f"{' and '.join(lost)} missing: the combined probability is the image-only model's "
                                "(4 per-phase CNN outputs, no clinical terms)")
            cut = card["cutoffs"]["image_only"]
        else:
            b = np.asarray(card["combined_model"]["coefficients"])
            p = float(predict(b, np.array([logits + [float(age), float(male), mass.diameter_mm / 10.0]]))[0])
            row["model_used"] = "combined"
            cut = card["cutoffs"]["combined"]
        row.update(p_combined=p, call="malignant" if p >= cut else "benign", cutoff=float(cut), status="scored",
                   age_years=age, male=male)
        if with_cam:
            for k, ph in enumerate(PHASES):
                xin = torch.from_numpy(model_input(x, ph)[x.shape[2] // 2])
                row["cams"][ph] = _cam(bundle.nets[ph], xin)
        if card.get("training_data", {}).get("synthetic"):
            row["notes"].append("research use - model trained on synthetic data")
        out.append(row)
    return out


CSV_COLUMNS = (["study", "mass_id", "status", "call", "p_combined", "model_used"] + [f"p_{m}" for m in MODELS] +
               [f"hu_{p}" for p in PHASES] + [f"delta_hu_{p}" for p in PHASES[1:]] +
               ["diameter_mm", "age_years", "male", "padded", "flags", "notes", "model_sha256",
                "synthetic_training_data"])


def write_csv(path, rows) -> Path:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v)

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                probs = r.get("probabilities", {})
                w.writerow([r.get("study", ""), r["mass_id"], r["status"], r.get("call", ""), fmt(r.get("p_combined")),
                            r.get("model_used", "")] + [fmt(probs.get(m)) for m in MODELS] +
                           [f"{r['hu'][p]:.1f}" for p in PHASES] + [f"{r['delta_hu'][p]:.1f}" for p in PHASES[1:]] +
                           [f"{r['diameter_mm']:.1f}", fmt(r.get("age_years")), fmt(r.get("male")),
                            "yes" if r["padded"] else "no", "; ".join(r["flags"]), "; ".join(r["notes"]),
                            r["provenance"]["model_sha256"],
                            r["provenance"]["synthetic_training_data"]])
    return Path(path)


MASS_COLUMNS = ("study", "mass_id", "x", "y", "z", "coordinate_system", "diameter_mm")


def read_mass_csv(path) -> list:
    """[(study folder, Lesion, {"age_years", "male"} overrides)] from the batch CSV (columns ``MASS_COLUMNS``,
    optional age, sex (M/F))."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"cannot read the mass list ({exc})", path) from exc
    out = []
    for n, row in enumerate(rows, start=2):
        where = f"{path} line {n}"
        missing = [c for c in MASS_COLUMNS if not (row.get(c) or "").strip()]
        if missing:
            raise InputError(f"missing column value(s) {missing}", where)
        try:
            centre = tuple(float(row[c]) for c in "xyz")
            d = float(row["diameter_mm"])
            age = float(row["age"]) if (row.get("age") or "").strip() else None
        except ValueError as exc:
            raise InputError(f"not a number ({exc})", where) from None
        sex = (row.get("sex") or "").strip().upper()
        if sex and sex not in ("M", "F"):
            raise InputError(f"sex must be M or F (or empty), got {sex!r}", where)
        study = Path(row["study"].strip())
        if not study.is_absolute():
            study = path.parent / study
        lesion = Lesion(row["mass_id"].strip(), centre, d, row["coordinate_system"].strip()).check()
        out.append((study, lesion, {"age_years": age, "male": {"M": 1, "F": 0}.get(sex)}))
    if not out:
        raise InputError("no masses listed", path)
    return out


def load_bundle(card_path=None) -> tuple:
    """(bundle, card) of a ``renal_mass_bundle`` card (default: the bundled demo model); refuses other tasks,
    tampered or missing weights."""
    from ..engine.registry import load_model
    from . import task  # noqa: F401  (registers the renal tasks)

    return load_model(demo_model_path() if card_path in (None, "") else card_path, task=BUNDLE_TASK)


def assess_csv(model_path, masses_csv, out_csv, protocol="renal_ct") -> list:
    """Batch: every study of the mass list loaded once (phases assigned), masses assessed, one CSV row each.
    ``model_path`` None: the bundled demo model."""
    from .study_io import load_renal_study

    bundle, card = load_bundle(model_path)
    items = read_mass_csv(masses_csv)
    rows, cache = [], {}
    for study, lesion, given in items:
        if study not in cache:
            cache[study] = load_renal_study(study, protocol)
        st = cache[study]
        info = {k: (given[k] if given[k] is not None else st.clinical.get(k)) for k in ("age_years", "male")}
        r = assess_masses(bundle, card, st.images, [lesion], {lesion.lesion_id: info}, with_cam=False)[0]
        r["study"] = str(study)
        r["notes"] = st.notes + r["notes"]
        rows.append(r)
    write_csv(out_csv, rows)
    return rows
