"""AnomalyCT: score + per-voxel map for one 3D head CT on the CPU (goal <= 5 s at the documented grid,
HEAD_GRID_SIZE = 36 x 44 x 32 voxels of 5 mm), with the memory peak, against a naive baseline timed in the same
run: the same Glow run on the phantom's native 2.5 mm grid (no fixed-grid reduction, 8x the voxels).

Product path = ``Detector.score_image`` on a SYNTHETIC 180 x 220 x 160 mm head (72 x 88 x 64 voxels): HU check,
intracranial mask, resample to the grid, windows, one Glow pass under no_grad, map standardisation, plus the
map resampled back onto the input grid (what the panel shows / the CLI writes).

The phantom is a toy input (5.6 M voxels at 2.5 mm): ``--clinical`` also times the product path once on the
same head resampled to a clinical grid (0.5 x 0.5 x 1.25 mm, ~20 M voxels), per stage (HU check + intracranial
mask, smoothing + resample to the model grid, Glow score + map), with its memory peak.

Run: ``python benchmarks/bench_anomaly.py [--threads N] [--repeats R] [--clinical]``; prints one JSON line. Uses the bundled
SYNTHETIC model when present (randomly initialised otherwise: speed does not depend on the values).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slicercad.anomaly import task as T  # noqa: E402
from slicercad.anomaly.detector import Detector, bundled_card, load_detector  # noqa: E402
from slicercad.anomaly.scoring import AnomalyGlow  # noqa: E402
from slicercad.engine.tasks import get_task  # noqa: E402
from slicercad.synth.anomaly_head import PHANTOM_SIZE, normal_head  # noqa: E402
from timing import timed_runs  # noqa: E402


def _time(fn, repeats):
    return statistics.median(timed_runs(fn, repeats))


def _peak_mb(fn):
    """Peak resident memory above the level before ``fn`` (psutil sampled every 2 ms: torch allocations too)."""
    import psutil

    proc = psutil.Process()
    base, peak, done = proc.memory_info().rss, [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    fn()
    done.set()
    t.join()
    return max(0, peak[0] - base) / 1e6


CLINICAL_SPACING_MM = (0.5, 0.5, 1.25)


def clinical_stages(det, image) -> dict:
    """One product-path pass on ``image`` resampled to CLINICAL_SPACING_MM, timed per stage (seconds)."""
    import numpy as np
    import SimpleITK as sitk

    sp = CLINICAL_SPACING_MM
    size = [int(round(n * o / s)) for n, o, s in zip(image.GetSize(), image.GetSpacing(), sp)]
    big = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), sp,
                        image.GetDirection(), -1000.0, sitk.sitkInt16)
    out = {"clinical_size_xyz": size, "clinical_spacing_mm": list(sp), "clinical_voxels": int(np.prod(size))}
    t0 = time.perf_counter()
    hu = sitk.GetArrayViewFromImage(big).astype(np.float32)
    T.pp.check_hu(hu, "bench")
    T.pp.intracranial_mask(hu, sp[::-1])
    out["clinical_mask_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    sample = T.pp.head_ct_sample(big, "bench")          # mask again + smoothing + resample (the whole sample path)
    out["clinical_sample_s"] = round(time.perf_counter() - t0, 2)
    out["clinical_resample_s_approx"] = round(out["clinical_sample_s"] - out["clinical_mask_s"], 2)
    t0 = time.perf_counter()
    det.score_sample(sample).map_image(big)
    out["clinical_glow_map_s"] = round(time.perf_counter() - t0, 2)
    out["clinical_total_s"] = round(out["clinical_sample_s"] + out["clinical_glow_map_s"], 2)
    out["clinical_rss_peak_above_start_mb"] = round(_peak_mb(lambda: det.score_image(big, "bench")), 1)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clinical", action="store_true", help="also time one clinical-size input per stage")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    head = normal_head(2024)
    if bundled_card(T.HEAD).is_file():
        det, source = load_detector(None, T.HEAD), "bundled"
    else:
        spec = get_task("anomaly_glow_head3d")
        det, source = Detector(spec.build_model(spec.config()), {"task": spec.name, "input_spec": spec.spec_for(
            spec.config())}), "random"

    def product():
        r = det.score_image(head.image, "bench")
        r.map_image(head.image)

    cfg = det.card.get("model_config") or get_task("anomaly_glow_head3d").config()
    # the positional top prior is tied to the model grid: the native-grid copy keeps one prior for all positions
    native = AnomalyGlow(2, 3, PHANTOM_SIZE[::-1], int(cfg["levels"]), int(cfg["steps"]), int(cfg["hidden"]),
                         positional_prior=False).eval()
    native.load_state_dict({k: v for k, v in det.model.state_dict().items()
                            if not k.startswith("map_") and k != "glow.top_prior"}, strict=False)
    x_native = torch.rand(1, 3, *PHANTOM_SIZE[::-1])
    x_native[:, -1] = 1.0

    def naive():
        native.score(x_native)

    m_prod = _peak_mb(product)          # first (cold) call of each: its allocations are not cached yet
    m_naive = _peak_mb(naive)
    t_prod, t_naive = _time(product, args.repeats), _time(naive, args.repeats)
    clinical = clinical_stages(det, head.image) if args.clinical else {}
    print(json.dumps({"bench": "anomaly_head3d_score_map", "model": source, "threads": args.threads,
                      "grid_xyz": list(T.pp.HEAD_GRID_SIZE), "spacing_mm": T.pp.HEAD_SPACING_MM,
                      "input_voxels": int(torch.tensor(PHANTOM_SIZE).prod()),
                      "product_s_median": round(t_prod, 3), "goal_s": 5.0, "meets_goal": t_prod <= 5.0,
                      "naive_native_grid_s_median": round(t_naive, 3), "speedup_vs_naive": round(t_naive / t_prod, 2),
                      "rss_peak_above_start_mb_product": round(m_prod, 1), "rss_peak_above_start_mb_naive": round(m_naive, 1),
                      "memory_ratio_naive_over_product": round(m_naive / max(m_prod, 1e-6), 2),
                      "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "naive_note": "the naive baseline times the Glow only (no preprocessing): the ratio compares "
                                    "the model pass, not the whole path",
                      **clinical}))


if __name__ == "__main__":
    main()
