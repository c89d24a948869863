"""Evaluation in the report's form on the SYNTHETIC phantom (``slicercad ti reproduce``).

Outcome of a corrected TI (on the scout scale): the recommendation ``null_est + RECOMMEND_MARGIN_MS``
is *in range* when it lies in ``true null + OPTIMAL_RANGE_MS`` ([-10, +30] ms), *under* when shorter
(too short: contrast-inversion risk), *over* when longer. Scenarios: clean frames (per frame, the
report's form, and per series), monitor photos (two profiles, per frame), out-of-trained-range frames
(≤ -60 / ≥ +60 ms: share put in the extreme bin on their side, and in range after correction),
operator scenario (operator's LGE TI = null + an error model CALIBRATED to the report's operators-alone
shares — an input, not a result — then corrected by the CNN from the frame nearest the operator's TI;
a sweep over error models shows the sensitivity). All rows are on the SCOUT scale. CIs: percentile bootstrap over patients (one scout
per patient; frames of a patient resampled together). Controls that must fail: randomised CNN
weights; scouts with shuffled TIs (physics fit flagged bad).
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import constants as C
from .phantom import make_scout

TEST_SEED = 7_000_000
VALIDATION_SEED = 5_000_000        # choices (physics sd floor) are made here, never on TEST_SEED
# CALIBRATED INPUT, not a result: operator LGE TI - null ~ N(+15.5, 17.7) ms reproduces all three of the
# report's operator-alone shares (under 7.5 / in range 72.0 / over 20.6 % for the range [-10, +30]).
OPERATOR_ERROR_MS = (15.5, 17.7)
# sensitivity of "after correction" to that choice (mean, sd of the operator's error, ms)
OPERATOR_SWEEP_MS = ((0.0, 18.0), (10.0, 18.0), (15.5, 17.7), (15.5, 30.0), (-10.0, 18.0), (30.0, 25.0))


def outcome(null_est, true_null) -> np.ndarray:
    """-1 under, 0 in range, +1 over, for recommended = null_est + margin."""
    rec = np.asarray(null_est, float) + C.RECOMMEND_MARGIN_MS
    lo, hi = np.asarray(true_null, float) + C.OPTIMAL_RANGE_MS[0], np.asarray(true_null, float) + C.OPTIMAL_RANGE_MS[1]
    return np.where(~np.isfinite(rec), -2, np.where(rec < lo, -1, np.where(rec > hi, 1, 0)))


def rates(codes, groups, n_boot=1000, seed=0) -> dict:
    """% in range / under / over with patient-grouped bootstrap 95 % CIs (and % failed)."""
    codes = np.asarray(codes)
    out = {"n": int(len(codes)), "n_patients": int(len(set(groups)))}
    if not len(codes):
        return out
    uniq, inv = np.unique(np.asarray(groups, str), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), (n_boot, len(uniq)))
    counts = np.stack([np.bincount(d, minlength=len(uniq)) for d in draws])[:, inv]   # (B, n)
    for name, value in (("in_range", 0), ("under", -1), ("over", 1), ("failed", -2)):
        hit = (codes == value).astype(float)
        boot = (counts * hit).sum(1) / np.maximum(counts.sum(1), 1)
        out[name] = round(100 * float(hit.mean()), 1)
        out[f"{name}_ci"] = [round(100 * float(np.percentile(boot, 2.5)), 1), round(100 * float(np.percentile(boot, 97.5)), 1)]
    return out


def test_scouts(n: int, seed: int = TEST_SEED):
    rng = np.random.default_rng(seed)
    return [make_scout(seed + i, field_strength_t=float(rng.choice(C.FIELD_STRENGTHS_T))) for i in range(n)]


def evaluate_cnn_quick(model, card, n_test: int = 40, seed: int = TEST_SEED) -> dict:
    """Per-frame (within ±60 ms) in-range share and frame accuracy, through the product path."""
    from .correct import bin_centres, frame_probabilities
    from .task import offset_class

    codes, groups, correct = [], [], []
    for ph in test_scouts(n_test, seed):
        off = ph.offsets_ms()
        keep = np.abs(off) <= 60
        p = frame_probabilities(model, card, ph.frames[keep])
        est = ph.ti_ms[keep] - bin_centres(card)[np.argmax(p, 1)]
        codes += outcome(est, ph.myo_null_ms).tolist()
        correct += (np.argmax(p, 1) == offset_class(off[keep], len(card["classes"]) > 6)).tolist()
        groups += [ph.patient_id] * int(keep.sum())
    r = rates(codes, groups)
    r["frame_accuracy"] = round(float(np.mean(correct)), 3)
    r["test_data"] = f"SYNTHETIC phantom, {n_test} scouts, seed {seed}"
    return r


def _randomised(model, seed=0):
    import copy

    import torch

    bad = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bad.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return bad.eval()


def evaluate(model, card, scouts, photo_profiles=("4k", "3mp"), open_model=None, open_card=None, seed=0,
             n_boot=1000) -> dict:
    """Every scenario of the module docstring on the given phantom scouts."""
    from .capture import simulate_photo
    from .correct import bin_centres, frame_probabilities, fuse, physics_entry, series_cnn
    from .physics import estimate_physics

    rng = np.random.default_rng(seed)
    centres = bin_centres(card)
    acc = {k: ([], []) for k in ("frame_clean", "series_cnn", "series_physics", "series_fused", "operator_alone",
                                 "operator_cnn", "out_low_extreme_bin", "out_high_extreme_bin", "out_low_in_range",
                                 "out_high_in_range", "open_out_low_in_range", "open_out_high_in_range",
                                 "random_weights_frame")} | {f"photo_{p}": ([], []) for p in photo_profiles}
    phys_err, phys_sd, shuffled_flagged, sweep = [], [], [], {}
    bad_model = _randomised(model, seed)

    def add(key, codes, pid):
        codes = np.atleast_1d(codes)
        acc[key][0].extend(codes.tolist())
        acc[key][1].extend([pid] * len(codes))

    for ph in scouts:
        pid, null, off = ph.patient_id, ph.myo_null_ms, ph.offsets_ms()
        p = frame_probabilities(model, card, ph.frames)
        est = ph.ti_ms - centres[np.argmax(p, 1)]
        inr = np.abs(off) <= 60
        add("frame_clean", outcome(est[inr], null), pid)
        pb = frame_probabilities(bad_model, card, ph.frames[inr])
        add("random_weights_frame", outcome(ph.ti_ms[inr] - centres[np.argmax(pb, 1)], null), pid)
        lo, hi = off <= -60, off >= 60
        add("out_low_extreme_bin", np.where(np.argmax(p[lo], 1) == 0, 0, 1), pid)
        add("out_high_extreme_bin", np.where(np.argmax(p[hi], 1) == len(centres) - 1, 0, 1), pid)
        add("out_low_in_range", outcome(est[lo], null), pid)
        add("out_high_in_range", outcome(est[hi], null), pid)
        if open_model is not None:
            po = frame_probabilities(open_model, open_card, ph.frames)
            eo = ph.ti_ms - bin_centres(open_card)[np.argmax(po, 1)]
            add("open_out_low_in_range", outcome(eo[lo], null), pid)
            add("open_out_high_in_range", outcome(eo[hi], null), pid)
        for prof in photo_profiles:
            photos = [simulate_photo(f, prof, int(rng.integers(0, 2**31))) for f in ph.frames[inr]]
            if photos:
                pp = frame_probabilities(model, card, np.stack(photos).astype(np.float32))
                add(f"photo_{prof}", outcome(ph.ti_ms[inr] - centres[np.argmax(pp, 1)], null), pid)
        cnn = series_cnn(p, ph.ti_ms)
        add("series_cnn", outcome(cnn["null_ms"], null), pid)
        phys = None
        try:
            e = estimate_physics(ph.frames, ph.ti_ms, ph.pixel_spacing_mm)
            phys = physics_entry(e, ph.frames, ph.ti_ms)
            add("series_physics", outcome(phys["null_ms"] if phys["good"] else np.nan, null), pid)
            if phys["good"]:
                phys_err.append(e.myocardium.null_ms - null)
                phys_sd.append(phys["sd_ms"])
        except Exception:
            add("series_physics", -2, pid)
        add("series_fused", outcome(fuse(phys, cnn)["null_ms"], null), pid)
        op_ti = null + rng.normal(*OPERATOR_ERROR_MS)
        add("operator_alone", outcome(op_ti - C.RECOMMEND_MARGIN_MS, null), pid)
        k = int(np.argmin(np.abs(ph.ti_ms - op_ti)))
        add("operator_cnn", outcome(est[k], null), pid)
        for m, s_ in OPERATOR_SWEEP_MS:
            t_op = null + rng.normal(m, s_)
            sweep.setdefault((m, s_), ([], [], []))
            sweep[(m, s_)][0].append(int(outcome(t_op - C.RECOMMEND_MARGIN_MS, null)))
            sweep[(m, s_)][1].append(int(outcome(est[int(np.argmin(np.abs(ph.ti_ms - t_op)))], null)))
            sweep[(m, s_)][2].append(pid)
        perm = np.random.default_rng(int(rng.integers(0, 2**31))).permutation(len(ph.ti_ms))
        try:
            es = estimate_physics(ph.frames, ph.ti_ms[perm], ph.pixel_spacing_mm)
            shuffled_flagged.append(not es.myocardium.good)
        except Exception:
            shuffled_flagged.append(True)
    table = {k: rates(v[0], v[1], n_boot, seed) for k, v in acc.items() if v[0]}
    perr = np.array(phys_err)
    table["physics_error"] = {"median_abs_ms": float(np.median(np.abs(perr))) if perr.size else None,
                              "within_10ms": float(np.mean(np.abs(perr) <= 10)) if perr.size else None,
                              "median_sd_ms": float(np.median(phys_sd)) if phys_sd else None,
                              "coverage_1sd": float(np.mean(np.abs(perr) <= np.array(phys_sd))) if phys_sd else None,
                              "coverage_2sd": float(np.mean(np.abs(perr) <= 2 * np.array(phys_sd))) if phys_sd else None,
                              "n_good_fits": int(perr.size)}
    table["operator_sweep"] = [{"error_mean_ms": m, "error_sd_ms": s_, "alone": rates(v[0], v[2], n_boot, seed),
                                "after_cnn": rates(v[1], v[2], n_boot, seed)} for (m, s_), v in sweep.items()]
    table["control_shuffled_ti_flagged"] = float(np.mean(shuffled_flagged)) if shuffled_flagged else None
    return table


ROWS = [("frame_clean", "CNN, per frame (report's form), clean frames within ±60 ms"),
        ("photo_4k", "CNN, per frame, SYNTHETIC phone photo of a 4K monitor"),
        ("photo_3mp", "CNN, per frame, SYNTHETIC phone photo of a 3-MP monitor"),
        ("series_cnn", "CNN, per series (all frames combined)"),
        ("series_physics", "physics, per series (ROI found automatically; flagged fits count as failed)"),
        ("series_fused", "fused CNN + physics, per series"),
        ("out_low_in_range", "CNN, frames ≤ -60 ms (outside the trained range), in range after correction"),
        ("out_high_in_range", "CNN, frames ≥ +60 ms, in range after correction"),
        ("out_low_extreme_bin", "CNN, frames ≤ -60 ms put in the extreme bin (in-range column = in the extreme "
                                "bin, over column = not; not an over/under TI)"),
        ("out_high_extreme_bin", "CNN, frames ≥ +60 ms put in the extreme bin (in-range column = in the extreme "
                                 "bin, over column = not; not an over/under TI)"),
        ("open_out_low_in_range", "open-bin model (separate), frames ≤ -60 ms, in range after correction"),
        ("open_out_high_in_range", "open-bin model (separate), frames ≥ +60 ms, in range after correction"),
        ("operator_alone", f"CALIBRATED INPUT (not a result): operator's own TI, null + N({OPERATOR_ERROR_MS[0]:g}, "
                           f"{OPERATOR_ERROR_MS[1]:g}) ms fitted to the report's 7.5 / 72.0 / 20.6 %"),
        ("operator_cnn", "operator's TI -> nearest frame, corrected by the CNN from that frame alone"),
        ("random_weights_frame", "CONTROL: randomised CNN weights, per frame (must fail)")]


def markdown(result: dict) -> str:
    t = result["table"]
    lines = ["# CardiacTICorrector — SYNTHETIC phantom evaluation (`make reproduce-ti`)", "",
             "All numbers are on SYNTHETIC Look-Locker phantoms (slicercad.ti.phantom), not patients. "
             f"Optimal range: recommended TI within [null{C.OPTIMAL_RANGE_MS[0]:+g}, null{C.OPTIMAL_RANGE_MS[1]:+g}] ms; "
             "under = shorter (contrast-inversion risk), over = longer. 95 % CIs: bootstrap over patients. "
             "SCOUT SCALE: every row scores the estimated scout null + "
             f"{C.RECOMMEND_MARGIN_MS:g} ms against the phantom's true scout null; the product's recommended_ti_ms "
             "(LGE scale, after the scout->LGE rule) is not scored (the phantom has no LGE null).", "",
             f"Setup: {result['setup']}", "",
             "| scenario | n (patients) | in range % [95% CI] | under % | over % | failed % |", "|---|---|---|---|---|---|"]
    for key, label in ROWS:
        r = t.get(key)
        if not r:
            continue
        lines.append(f"| {label} | {r['n']} ({r['n_patients']}) | {r['in_range']} [{r['in_range_ci'][0]}, "
                     f"{r['in_range_ci'][1]}] | {r['under']} | {r['over']} | {r['failed']} |")
    pe = t["physics_error"]
    fmt = lambda v, scale=1.0, unit="": "n/a" if v is None else f"{scale * v:.1f}{unit}"  # noqa: E731
    lines += ["", f"Physics fit: median |error| {fmt(pe['median_abs_ms'], unit=' ms')}, within ±10 ms "
                  f"{fmt(pe['within_10ms'], 100, ' %')} of the scouts, median reported sd "
                  f"{fmt(pe['median_sd_ms'], unit=' ms')}; calibration (good fits, n {pe['n_good_fits']}): |error| "
                  f"<= 1 sd in {fmt(pe['coverage_1sd'], 100, ' %')}, <= 2 sd in {fmt(pe['coverage_2sd'], 100, ' %')} "
                  "(nominal 68 / 95 %).",
              "", "Operator sensitivity (in range %, alone -> after CNN correction of the nearest frame):",
              *[f"- error N({r['error_mean_ms']:g}, {r['error_sd_ms']:g}) ms: {r['alone'].get('in_range')} -> "
                f"{r['after_cnn'].get('in_range')}" for r in t.get("operator_sweep", [])],
              "",
              f"CONTROL shuffled TIs: physics fit flagged bad in {fmt(t['control_shuffled_ti_flagged'], 100, ' %')} "
              "of the scouts.",
              f"Report anchors (real patients, not comparable): 96.4 % PC, 93.5 % 4K photo, 89.6 % 3-MP photo; "
              "operators 72.0 % -> 91.6 % after correction.", ""]
    return "\n".join(lines)


def reproduce(out, n_train=None, n_test=100, epochs=None, smoke=False, seed=0) -> dict:
    """Train the closed and the open-bin model with the task's recipe (None: its data size / epochs),
    evaluate on ``n_test`` held-out SYNTHETIC scouts, write results.json and results.md."""
    from ..atomic import write_json, write_text
    from ..engine.metrics import jsonable
    from .task import DEFAULT_CONFIG, RECIPE
    from .training import train_ti_model

    t0 = time.time()
    if smoke:
        n_train, n_test, epochs = 6, 3, 1
    n_train = DEFAULT_CONFIG["n_patients"] if n_train is None else n_train
    epochs = RECIPE["epochs"] if epochs is None else epochs
    model, card, _ = train_ti_model(n_train, epochs, seed=seed)
    open_model, open_card, _ = train_ti_model(n_train, epochs, seed=seed, open_bins=True)
    scouts = test_scouts(n_test)
    table = evaluate(model, card, scouts, open_model=open_model, open_card=open_card, seed=seed,
                     n_boot=200 if smoke else 1000)
    result = {"synthetic": True, "table": table, "runtime_s": round(time.time() - t0, 1),
              "setup": f"{n_train} training / {n_test} test SYNTHETIC patients (test seed {TEST_SEED}), {epochs} "
                       f"epochs, CNN channels {card['model_config']['channels']}, input the central "
                       f"{C.CNN_CROP_FRACTION:g} of each frame at {C.CNN_INPUT_PX} px, augmentation "
                       f"{'on' if DEFAULT_CONFIG['augment'] else 'off'}; runtime {time.time() - t0:.0f} s"}
    write_json(f"{out}/results.json", jsonable(result))
    write_text(f"{out}/results.md", markdown(result))
    return result
