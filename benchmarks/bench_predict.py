"""Time ``slicercad.engine.predict.predict`` on CPU for 2D 64x64 stacks (8 phases, 3 classes).

Run: ``python benchmarks/bench_predict.py [--threads N] [--repeats R]``; prints one JSON
line per (network, batch size) with median / p90 milliseconds per call and per sample.
Randomly initialised weights: speed does not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slicercad.engine.predict import predict  # noqa: E402
from slicercad.engine.tasks import TinyCNN  # noqa: E402
from slicercad.phases import LIVER_MRI_PHASES  # noqa: E402

PHASES = list(LIVER_MRI_PHASES)


def card(name: str) -> dict:
    return {"name": name, "task": "bench", "kind": "classification", "temperature": 1.0,
            "classes": ["cyst", "hemangioma", "metastasis"], "sha256": "0" * 64,
            "input_spec": {"phases": PHASES, "roi_px": [64, 64]}, "training_data": {"synthetic": True}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {"tinycnn": TinyCNN(2, len(PHASES), 3, (16, 32)),
            "densenet121": DenseNet121(spatial_dims=2, in_channels=len(PHASES), out_channels=3)}
    for name, net in nets.items():
        for batch in (1, 8, 64):
            x = torch.randn(batch, len(PHASES), 64, 64)
            predict(net, card(name), x)                      # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                predict(net, card(name), x)
                times.append((time.perf_counter() - t0) * 1000.0)
            times.sort()
            median = statistics.median(times)
            print(json.dumps({"network": name, "batch": batch, "threads": args.threads,
                              "median_ms": round(median, 2),
                              "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
                              "median_ms_per_sample": round(median / batch, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
