"""Per-series correction: CNN on every frame, the physics fit, their fusion, and the output record.

* Frame correction (the report's form): ``null = TI_frame - centre(most probable bin)``.
* Series CNN estimate: over candidate nulls t (1 ms grid), log-likelihood
  ``CNN_LOGLIK_TEMPER * sum_i log p_i(bin(TI_i - t))`` with offsets beyond the trained range counted
  in the extreme bin (closed model) or the open bins; estimate = posterior mean, sd = posterior sd
  floored at ``CNN_SIGMA_FLOOR_MS``.
* Fusion (documented rule): inverse-variance weighting of physics (sd: fit, ROI pixel bootstrap, ROI
  halves, model floor; slicercad/ti/uncertainty.py) and CNN. A physics fit flagged bad (residual,
  uncertainty, ROI halves disagreeing) is left out; no model -> physics only; no fit -> CNN only. They
  disagree by > FUSION_DISAGREE_SIGMAS combined sd -> a warning. A good fit's sd is >= the 4.5 ms
  floor against the CNN's >= 8 ms, so the physics carries >= ~76 % of the weight when the fit is good.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from . import constants as C
from .features import frames_input
from .physics import estimate_physics, lge_rule

RECORD_FIELDS = ("series_instance_uid", "null_ti_ms", "blood_null_ti_ms", "recommended_ti_ms",
                 "recommended_uncertainty_ms", "uncertainty_ms", "method", "warnings")


def bin_centres(card_or_classes) -> np.ndarray:
    classes = card_or_classes["classes"] if isinstance(card_or_classes, dict) else list(card_or_classes)
    if list(classes) == list(C.OPEN_CLASSES):
        return np.array(C.OPEN_BIN_CENTRES_MS)
    if list(classes) == list(C.OFFSET_CLASSES):
        return np.array(C.OFFSET_BIN_CENTRES_MS)
    raise InputError(f"model classes {classes} are not the TI offset bins", "card.classes")


_INFERENCE = {}   # id(model) -> (weights fingerprint, model, inference copy)


def _fingerprint(model) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def inference_model(model):
    """An eval-mode copy of ``model`` for CPU inference: every Conv2d followed by a BatchNorm2d in a
    Sequential folded into one conv (same function to float rounding), channels-last memory layout.
    Cached per model; rebuilt when its weights change (in-place updates bump the tensors' versions)."""
    import copy

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    key, fp = id(model), _fingerprint(model)
    hit = _INFERENCE.get(key)
    if hit is not None and hit[0] == fp and hit[1] is model:
        return hit[2]
    net = copy.deepcopy(model).eval()
    for seq in [m for m in net.modules() if isinstance(m, torch.nn.Sequential)]:
        mods, out = list(seq), []
        while mods:
            m = mods.pop(0)
            if isinstance(m, torch.nn.Conv2d) and mods and isinstance(mods[0], torch.nn.BatchNorm2d):
                m = fuse_conv_bn_eval(m, mods.pop(0))
            out.append(m)
        seq._modules.clear()
        for i, m in enumerate(out):
            seq.add_module(str(i), m)
    net = net.to(memory_format=torch.channels_last)
    _INFERENCE.clear()   # one model at a time in practice; never hold stale copies
    _INFERENCE[key] = (fp, model, net)
    return net


def check_input_spec(card) -> None:
    """A model trained on another input than ``features.frame_input`` makes (a card without the crop
    is a whole-frame model) is refused rather than fed the wrong input."""
    crop = card["input_spec"].get("crop_fraction", 1.0)
    if crop != C.CNN_CROP_FRACTION:
        raise InputError(f"the model was trained on the central {crop:g} of each frame; this version feeds the "
                         f"central {C.CNN_CROP_FRACTION:g} (rebuild it: make ti-model)",
                         "card.input_spec.crop_fraction")


def frame_probabilities(model, card, frames) -> np.ndarray:
    """Calibrated probabilities [n, classes] for each frame (one batched forward)."""
    import torch

    check_input_spec(card)
    size = int(card["input_spec"]["roi_px"][0])
    x = torch.from_numpy(frames_input(frames, size)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = inference_model(model)(x).float() / float(card.get("temperature", 1.0))
    return torch.softmax(logits, 1).numpy()


def frame_nulls(proba, ti_ms, centres) -> np.ndarray:
    """Null estimated from each frame alone: TI - centre of the most probable bin."""
    return np.asarray(ti_ms, float) - centres[np.argmax(proba, 1)]


def _offset_bins(offsets, n_classes) -> np.ndarray:
    from .task import offset_class

    return offset_class(offsets, open_bins=n_classes == len(C.OPEN_CLASSES))


def series_cnn(proba, ti_ms) -> dict:
    """Posterior over the null from all frames (see module docstring)."""
    ti = np.asarray(ti_ms, float)
    grid = np.arange(math.floor(ti.min() - 80), math.ceil(ti.max() + 80) + 1, 1.0)
    offsets = ti[None, :] - grid[:, None]                             # (G, n)
    bins = _offset_bins(offsets, proba.shape[1])
    logp = np.log(np.clip(proba, 1e-6, 1.0))
    ll = C.CNN_LOGLIK_TEMPER * logp[np.arange(len(ti))[None, :], bins].sum(1)
    post = np.exp(ll - ll.max())
    post /= post.sum()
    mean = float((post * grid).sum())
    sd = max(float(math.sqrt((post * (grid - mean) ** 2).sum())), C.CNN_SIGMA_FLOOR_MS)
    return {"null_ms": mean, "sd_ms": sd, "grid_ms": grid, "posterior": post}


def physics_entry(est, frames, ti_ms) -> dict:
    """{null_ms, sd_ms, good, reasons, spread} of a physics estimate (sd: slicercad/ti/uncertainty.py);
    ROI halves further apart than ROI_HALVES_FLAG_MS flag the fit."""
    from .uncertainty import physics_sd, roi_spread

    fit = est.myocardium
    reasons, good = list(fit.reasons), bool(fit.good)
    if not math.isfinite(fit.null_sd_ms):
        return {"null_ms": fit.null_ms, "sd_ms": float("inf"), "good": False, "reasons": reasons, "spread": None}
    spread = roi_spread(frames, ti_ms, est.myo_mask, fit)
    if spread["halves_gap_ms"] > C.ROI_HALVES_FLAG_MS:
        good = False
        reasons.append(f"the two halves of the myocardial ROI null {spread['halves_gap_ms']:.0f} ms apart (partial "
                       "volume, scar or a misplaced ROI): check or draw the ROI")
    return {"null_ms": fit.null_ms, "sd_ms": physics_sd(fit.null_sd_ms, spread), "good": good, "reasons": reasons,
            "spread": spread}


def fuse(physics: dict | None, cnn: dict | None) -> dict:
    """{null_ms, sd_ms, method, warnings} from physics {null_ms, sd_ms, good} and cnn {null_ms, sd_ms}."""
    warnings = []
    phys_ok = physics is not None and physics.get("good") and math.isfinite(physics["sd_ms"])
    if physics is not None and not phys_ok:
        warnings.append("physics fit flagged (see its reasons): left out of the fusion")
    if phys_ok and cnn is not None:
        wp, wc = 1 / physics["sd_ms"] ** 2, 1 / cnn["sd_ms"] ** 2
        null = (wp * physics["null_ms"] + wc * cnn["null_ms"]) / (wp + wc)
        gap = abs(physics["null_ms"] - cnn["null_ms"])
        if gap > C.FUSION_DISAGREE_SIGMAS * math.hypot(physics["sd_ms"], cnn["sd_ms"]):
            warnings.append(f"CNN ({cnn['null_ms']:.0f} ms) and physics ({physics['null_ms']:.0f} ms) disagree by "
                            f"{gap:.0f} ms: check the ROI and the frames")
        return {"null_ms": null, "sd_ms": math.sqrt(1 / (wp + wc)), "method": "fused", "warnings": warnings}
    if phys_ok:
        return {"null_ms": physics["null_ms"], "sd_ms": physics["sd_ms"], "method": "physics", "warnings": warnings}
    if cnn is not None:
        return {"null_ms": cnn["null_ms"], "sd_ms": cnn["sd_ms"], "method": "cnn", "warnings": warnings}
    if physics is not None and math.isfinite(physics.get("null_ms", float("nan"))):
        warnings.append("only a flagged physics fit is available: LOW CONFIDENCE")
        return {"null_ms": physics["null_ms"], "sd_ms": physics["sd_ms"], "method": "physics (flagged)",
                "warnings": warnings}
    raise InputError("no estimate: the physics fit failed and no CNN model is loaded", "estimate")


def model_fits_input(card, meta) -> list:
    """Warnings for a model used outside its card: field strength outside ``valid_ranges`` (the CNN is
    then left out: ModelError message), a real vendor's data with a SYNTHETIC-trained model."""
    from ..engine.registry import check_input
    from ..errors import ModelError

    meta = meta or {}
    out = []
    fs = meta.get("field_strength_t")
    if fs:
        try:
            check_input(card, {"field_strength_t": float(fs)}, "card.valid_ranges")
        except ModelError as exc:
            raise InputError(f"CNN left out: {exc}", "card.valid_ranges") from None
    vendor = str(meta.get("manufacturer") or "")
    if vendor and "SYNTHETIC" not in vendor.upper() and card["training_data"].get("synthetic"):
        out.append(f"the CNN was trained on SYNTHETIC phantoms only; not validated on {vendor} scouts")
    return out


def correct_frames(frames, ti_ms, spacing_mm=None, model=None, card=None, myo_mask=None, blood_mask=None,
                   meta=None, relative=False, rule: dict | None = None, use_physics: bool = True,
                   photo: bool = False) -> dict:
    """Everything the record, the table and the plot need, for one scout's frames. ``photo``: frames
    are screenshots / photos (display window, gamma, clipping): the physics fit is flagged, not fused."""
    frames = np.asarray(frames, np.float32)
    ti = np.asarray(ti_ms, float)
    warnings, details = [], {}
    if model is not None:
        try:
            warnings += model_fits_input(card, meta)
        except InputError as exc:
            warnings.append(str(exc))
            model = None
    phys, est = None, None
    if use_physics:
        try:
            est = estimate_physics(frames, ti, spacing_mm, myo_mask, blood_mask)
            phys = physics_entry(est, frames, ti)
            if photo:
                phys["good"] = False
                phys["reasons"].append("frames are images (window/level, gamma, clipping distort |A - B exp(-TI/T1*)|"
                                       "): the fit is not trusted")
            warnings += [f"physics: {r}" for r in phys["reasons"]]
            if est.roi_source == "found" and est.roi_confidence < 0.3:
                warnings.append(f"myocardial ROI found automatically with low confidence {est.roi_confidence:.2f}: "
                                "draw the ROI for a reliable physics estimate")
        except InputError as exc:
            warnings.append(f"physics: {exc}")
    cnn, proba = None, None
    if model is not None:
        proba = frame_probabilities(model, card, frames)
        cnn = series_cnn(proba, ti)
        details["frame_nulls_ms"] = frame_nulls(proba, ti, bin_centres(card)).tolist()
    fused = fuse(phys, cnn)
    warnings += fused["warnings"]
    blood = est.blood if est is not None else None
    record_rule = None
    if relative:
        warnings.append("TIs are RELATIVE (TriggerTime only): null on that scale; no absolute LGE TI recommended")
    else:
        good = est is not None and phys and phys["good"]
        t1 = est.myocardium.t1_ms if good else None
        record_rule = lge_rule(fused["null_ms"], t1, meta, **(rule or {}),
                               physics_null_ms=est.myocardium.null_ms if good else None, null_sd_ms=fused["sd_ms"])
        warnings += record_rule["assumptions"]
    return {"null_ti_ms": fused["null_ms"], "uncertainty_ms": fused["sd_ms"], "method": fused["method"],
            "blood_null_ti_ms": None if blood is None or not math.isfinite(blood.null_ms) else blood.null_ms,
            "recommended_ti_ms": None if record_rule is None else record_rule["recommended_ti_ms"],
            "rule": record_rule, "physics": phys, "cnn": None if cnn is None else
            {"null_ms": cnn["null_ms"], "sd_ms": cnn["sd_ms"]}, "proba": proba, "estimate": est,
            "posterior": cnn, "warnings": warnings, "ti_ms": ti, **details}


def correct_scout(scout, model=None, card=None, myo_mask=None, blood_mask=None, rule=None) -> dict:
    """The JSON-ready record of one scout (fields RECORD_FIELDS and more)."""
    out = correct_frames(scout.frames, scout.ti_ms, scout.pixel_spacing_mm, model, card, myo_mask, blood_mask,
                         scout.meta, scout.relative, rule, use_physics=True, photo=scout.photo)
    record = record_of(scout, out, card)
    return record


def record_of(scout, out: dict, card=None) -> dict:
    est = out["estimate"]
    round1 = lambda v: None if v is None or not math.isfinite(v) else round(float(v), 1)  # noqa: E731
    return {
        "series_instance_uid": scout.series_instance_uid, "series_description": scout.series_description,
        "null_ti_ms": round1(out["null_ti_ms"]), "null_ti_is": "myocardial null on the scout (Look-Locker)",
        "blood_null_ti_ms": round1(out["blood_null_ti_ms"]),
        "recommended_ti_ms": round1(out["recommended_ti_ms"]),
        "recommended_uncertainty_ms": round1(out["rule"]["recommended_uncertainty_ms"]) if out["rule"] else None,
        "uncertainty_ms": round1(out["uncertainty_ms"]), "method": out["method"],
        "physics_null_ti_ms": round1(out["physics"]["null_ms"]) if out["physics"] else None,
        "physics_uncertainty_ms": round1(out["physics"]["sd_ms"]) if out["physics"] else None,
        "cnn_null_ti_ms": round1(out["cnn"]["null_ms"]) if out["cnn"] else None,
        "cnn_uncertainty_ms": round1(out["cnn"]["sd_ms"]) if out["cnn"] else None,
        "roi_source": est.roi_source if est else None,
        "roi_confidence": round(est.roi_confidence, 3) if est else None,
        "ti_scale": "relative" if scout.relative else "absolute", "ti_source": scout.ti_source,
        "n_frames": scout.n_frames, "ti_ms": [float(v) for v in scout.ti_ms],
        "rule": out["rule"], "model": None if card is None else card.get("name"),
        "synthetic_model": None if card is None else card["training_data"]["synthetic"],
        "warnings": list(scout.warnings) + list(out["warnings"]),
    }
