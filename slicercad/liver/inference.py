"""Classify lesions of one study with a saved model: ROIs, attention, calibrated probabilities, Grad-CAM.

The model input comes from ``dataset.lesion_sample``, the one sample path training and evaluation
use (ROI per phase grid with offsets, ADC units, roi-median normalisation, attention from the ROI
centre + measured diameter, or from a mask when one is given -- the second mode). A study missing
a phase the model needs is refused (PhaseError naming it). The ADC map is brought to 1e-3 mm^2/s
(Real World Value Mapping units, else recognised from its values; an eADC is refused) with a note
in the result. Inputs outside the training distribution the card declares (per-channel statistics
of the normalised ROI, acquisition values seen in training, lesion size, spacing), or whose field
strength / b-value is unknown, are scored but carry a ``warnings`` list: never a silent score.
``tags`` (per-phase DICOM attributes) are read by ``acquisition.acquisition_from_tags``.
Probabilities and Grad-CAM come from ``fast_cam.FastLiverCam`` (one trunk forward + a head-only backward per lesion; equal to
``engine.predict`` + ``engine.gradcam.grad_cam``, see Testing/test_liver_fast_cam.py).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

from ..atomic import atomic_path
from ..engine.ci_settings import SIZE_BIN_EDGES_MM
from ..engine.predict import result_provenance
from ..errors import InputError, PhaseError
from .acquisition import acquisition_from_tags
from .dataset import lesion_sample, max_in_plane_spacing, study_adc_scale
from .fast_cam import FastLiverCam
from .guard import distribution_warnings
from .model import ATTENTION_CHANNEL, GRADCAM_LAYER, parse_alpha
from .phases import PHASES
from .roi import Lesion, RoiSpec, roi_spec_from_card



def _size_bins(edges=SIZE_BIN_EDGES_MM) -> tuple:
    """(lo, hi, ASCII name) of each size bin, from the engine's edges (one definition: ``ci_settings``)."""
    e = [float(v) for v in edges]
    lo, hi = [0.0] + e, e + [float("inf")]
    names = [f"<{e[0]:g} mm"] + [f"{a:g}-{b:g} mm" for a, b in zip(e, e[1:])] + [f">={e[-1]:g} mm"]
    return tuple(zip(lo, hi, names))


SIZE_BINS = _size_bins()   # ((0, 10, "<10 mm"), (10, 20, "10-20 mm"), (20, inf, ">=20 mm")); a bin holds its lower edge


def size_bin(diameter_mm: float) -> str:
    """The report's size bin of a lesion diameter."""
    for lo, hi, name in SIZE_BINS:
        if lo <= diameter_mm < hi:
            return name
    raise InputError(f"diameter must be a positive number of mm, got {diameter_mm!r}", "diameter_mm")


def validity_warnings(card: dict, images: dict, lesion: Lesion, acquisition: dict | None = None) -> list:
    """Reasons this lesion lies outside the model card's valid ranges (empty when inside)."""
    ranges = card.get("input_spec", {}).get("valid_ranges", {})
    values = dict(acquisition or {})
    values["diameter_mm"] = lesion.diameter_mm
    values["in_plane_spacing_mm"] = max(max(img.GetSpacing()[:2]) for img in images.values())
    out = []
    for key, (lo, hi) in ranges.items():
        v = values.get(key)
        if v is not None and not (lo <= float(v) <= hi):
            out.append(f"{key}={v:g} outside the model's range [{lo:g}, {hi:g}]")
    return out


def research_notice(card: dict) -> str:
    """The notice shown with every result of a model trained on synthetic data ('' otherwise)."""
    if card.get("training_data", {}).get("synthetic"):
        return "research use - model trained on synthetic data"
    return ""


def study_acquisition(acquisition: dict | None = None, tags: dict | None = None) -> dict:
    """Acquisition values of a study: read from per-phase DICOM ``tags``, overridden by explicit values."""
    out = acquisition_from_tags(tags) if tags else {}
    out.update({k: v for k, v in (acquisition or {}).items() if v is not None})
    return out


def check_study_phases(images: dict, phases, lesion_id=None) -> tuple:
    """Refuse a study that lacks a phase the model needs, saying which and why."""
    unknown = [p for p in phases if p not in PHASES]
    missing = [p for p in phases if p not in images]
    if unknown or missing:
        what = f"unknown phase name(s) {unknown}" if unknown else f"missing phase(s) {missing}"
        raise PhaseError(f"study refused: the model needs {list(phases)}, {what} (available {sorted(images)}); "
                         "it cannot score a study without them (a reduced-input model would have to be trained "
                         "and reported on its own)", lesion_id)
    return tuple(phases)


def classify_lesions(model, card: dict, images: dict, lesions, acquisition: dict | None = None,
                     with_cam: bool = True, alpha="card", device="cpu", tags: dict | None = None,
                     masks: dict | None = None) -> list:
    """One dict per lesion: lesion_id, probabilities, predicted_class, size_bin, warnings, notes,
    attention_source, provenance (model sha256, alpha, phases), and the ``rois``, ``attention`` and
    ``cam`` arrays.

    ``alpha``: 'card' uses the model's training alpha; another value (None = no attention) is
    applied for this call only and every result warns that it differs from training.
    ``acquisition``: {field_strength_t, b_value, adc_units...}; ``tags``: {phase: DICOM attributes}
    read for what ``acquisition`` does not give. ``masks``: {lesion_id: sitk mask} -- attention from
    the mask for those lesions (the second mode, reported as ``attention_source='mask'``).
    """
    spec = card.get("input_spec", {})
    trained_alpha = getattr(model, "alpha", spec.get("alpha"))
    used_alpha = trained_alpha if alpha == "card" else parse_alpha(alpha)
    extra = [] if used_alpha == trained_alpha else [f"alpha {used_alpha} differs from the model's training alpha "
                                                    f"{trained_alpha}"]
    if hasattr(model, "alpha"):
        model.alpha = used_alpha
    try:
        return _classify(model, card, spec, images, lesions, study_acquisition(acquisition, tags), with_cam,
                         used_alpha, extra, device, masks or {})
    finally:
        if hasattr(model, "alpha"):
            model.alpha = trained_alpha


def _classify(model, card, spec, images, lesions, acquisition, with_cam, alpha, extra, device, masks) -> list:
    phases = tuple(p for p in spec.get("phases", []) if p != ATTENTION_CHANNEL)
    roi_spec = roi_spec_from_card(spec)
    roi_px = roi_spec.size_px
    classes = [str(c) for c in card.get("classes", [])]
    lesions = list(lesions)
    check_study_phases(images, phases, lesions[0].lesion_id if lesions else None)
    adc = study_adc_scale(images, acquisition) if "ADC" in phases else (1.0, None)
    distribution = spec.get("training_distribution")
    spacing = max_in_plane_spacing({p: images[p] for p in phases})
    fast = FastLiverCam(model, card["temperature"], roi_px, spec.get("gradcam_layer", GRADCAM_LAYER), device)
    provenance = result_provenance(card, {"alpha": alpha, "phases": list(phases)})
    results = []
    for lesion in lesions:
        mask = masks.get(lesion.lesion_id)
        x, G, m, rois = lesion_sample(images, lesion, phases, roi_spec, mask, adc=adc)
        t0 = time.perf_counter()
        proba, cam = fast(x, G, with_cam=with_cam)
        k = int(proba.argmax())
        if distribution is not None:
            warnings = distribution_warnings(distribution, x, phases, acquisition, lesion.diameter_mm, spacing)
        else:
            warnings = validity_warnings(card, images, lesion, acquisition) + distribution_warnings(None, x, phases)
        notes = list(rois.notes)
        results.append({"probabilities": {c: float(p) for c, p in zip(classes, proba)}, "predicted_index": k,
                        "predicted_class": classes[k], "time_ms": (time.perf_counter() - t0) * 1000.0,
                        "provenance": provenance, "lesion_id": lesion.lesion_id, "diameter_mm": lesion.diameter_mm,
                        "size_bin": size_bin(lesion.diameter_mm), "padded": rois.padded,
                        "offsets_mm": {p: [float(v) for v in lesion.offsets_mm[p]] for p in lesion.offsets_mm},
                        "fov_mm": rois.fov_mm,
                        "warnings": warnings + extra + [f"note: {n}" for n in notes], "notes": notes,
                        "attention_source": "mask" if mask is not None else "diameter",
                        "acquisition": {k2: v for k2, v in acquisition.items() if k2 != "sources"},
                        "notice": research_notice(card), "rois": rois, "attention": G, "mask": m, "cam": cam})
    return results


OFFSET_AXES = ("x", "y", "z")


def offset_columns(phase: str) -> tuple:
    """The lesion list's optional offset columns of one phase: ``offset_<phase>_x/y/z``."""
    return tuple(f"offset_{phase}_{a}" for a in OFFSET_AXES)


def parse_offsets(row: dict, where) -> dict:
    """Per-phase centre offsets (mm, the row's coordinate system) from ``offset_<phase>_x/y/z`` columns.

    A phase's three columns are all given or all empty (empty: no offset for that phase, i.e. zero);
    a phase name the model does not know is refused. These are the per-phase breath-hold corrections
    a reader (or a registration) measured: the lesion's centre in that phase minus its centre in the
    listed (reference) position.
    """
    found = {}
    for key in row:
        k = (key or "").strip()
        if not k.startswith("offset_") or k.count("_") < 2:
            continue
        phase, axis = k[len("offset_"):].rsplit("_", 1)
        if axis not in OFFSET_AXES:
            raise InputError(f"offset column {k!r}: expected offset_<phase>_x, _y or _z", where)
        if phase not in PHASES:
            raise InputError(f"offset column {k!r}: unknown phase {phase!r} (phases {list(PHASES)})", where)
        found.setdefault(phase, {})[axis] = (row.get(key) or "").strip()
    offsets = {}
    for phase, vals in found.items():
        given = [a for a in OFFSET_AXES if vals.get(a)]
        if not given:
            continue
        if len(given) != 3:
            raise InputError(f"phase {phase!r} offset needs all of {list(offset_columns(phase))}, got {given}", where)
        try:
            offsets[phase] = tuple(float(vals[a]) for a in OFFSET_AXES)
        except ValueError as exc:
            raise InputError(f"offset of phase {phase!r} is not a number ({exc})", where) from None
    return offsets


def read_lesion_csv(path) -> list:
    """Lesions from a CSV with columns lesion_id, x, y, z, coordinate_system, diameter_mm and, optionally,
    per-phase centre offsets ``offset_<phase>_x``, ``_y``, ``_z`` in mm in the row's coordinate system
    (``parse_offsets``; without them every phase is cut at the listed centre: zero offsets)."""
    path = Path(path)
    need = ("lesion_id", "x", "y", "z", "coordinate_system", "diameter_mm")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"cannot read lesion list ({exc})", path) from exc
    lesions = []
    for n, row in enumerate(rows, start=2):
        missing = [c for c in need if not (row.get(c) or "").strip()]
        if missing:
            raise InputError(f"missing column value(s) {missing}", f"{path} line {n}")
        try:
            centre = tuple(float(row[c]) for c in "xyz")
            diameter = float(row["diameter_mm"])
        except ValueError as exc:
            raise InputError(f"not a number ({exc})", f"{path} line {n}") from None
        offsets = parse_offsets(row, f"{path} line {n}")
        lesion = Lesion(row["lesion_id"].strip(), centre, diameter, row["coordinate_system"].strip(), offsets)
        for p in offsets:
            lesion.offset_lps(p)
        lesions.append(lesion.check())
    if not lesions:
        raise InputError("no lesions listed", path)
    return lesions


def _offsets_text(result) -> str:
    """'none (zero offsets)' or 'PHASE x/y/z; ...' (mm, the lesion list's coordinate system)."""
    offs = result.get("offsets_mm") or {}
    if not offs:
        return "none (zero offsets)"
    return "; ".join(f"{p} " + "/".join(f"{v:g}" for v in xyz) for p, xyz in offs.items())


def write_results_csv(path, results, classes) -> Path:
    """Results as CSV (atomic): one row per lesion with probabilities and provenance."""
    cols = (["lesion_id", "predicted_class"] + [f"p_{c}" for c in classes] +
            ["diameter_mm", "size_bin", "padded", "offsets", "alpha", "phases", "model_sha256",
             "synthetic_training_data", "attention_source", "warnings", "notes", "notice"])
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in results:
                prov = r["provenance"]
                w.writerow([r["lesion_id"], r["predicted_class"]] +
                           [f"{r['probabilities'][c]:.4f}" for c in classes] +
                           [f"{r['diameter_mm']:.1f}", r["size_bin"], r["padded"], _offsets_text(r),
                            prov["parameters"].get("alpha"),
                            " ".join(prov["parameters"].get("phases", [])), prov["model_sha256"],
                            prov["synthetic_training_data"], r.get("attention_source", "diameter"),
                            "; ".join(r["warnings"]), "; ".join(r.get("notes", [])), r["notice"]])
    return Path(path)


def save_overlay_png(path, result, phase: str = "hepatobiliary") -> Path:
    """PNG: the lesion's ROI on ``phase``, its attention map and Grad-CAM side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rois = result["rois"]
    k = rois.phases.index(phase) if phase in rois.phases else 0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    panels = [("ROI " + rois.phases[k], None), ("attention", result["attention"]), ("Grad-CAM", result["cam"])]
    for ax, (title, overlay) in zip(axes, panels):
        ax.imshow(rois.array[k], cmap="gray")
        if overlay is not None:
            ax.imshow(overlay, cmap="inferno", alpha=0.5)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{result['lesion_id']}: {result['predicted_class']} "
                 f"({max(result['probabilities'].values()):.2f}) - SYNTHETIC-trained research model", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)
