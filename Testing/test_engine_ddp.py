"""DDP: `torchrun --nproc_per_node 2 -m slicercad train` (gloo, CPU) ends with the same weights as a
single-process run with the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from slicercad.engine.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
ARGS = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "val_fraction": 0.25, "seed": 3}


def test_two_process_ddp_matches_single_process(tmp_path):
    torch.set_num_threads(1)
    single = train(TrainConfig(task="toy2d", out=tmp_path / "single", device="cpu",
                               task_config={"n_samples": 64}, **ARGS))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, SLICERCAD_PROGRESS="machine")  # @@progress lines
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "slicercad", "train", "toy2d", "--out", str(tmp_path / "ddp"), "--device", "cpu",
           "--set", "n_samples=64", "--epochs", "2", "--batch-size", "16", "--lr", "0.01",
           "--val-fraction", "0.25", "--seed", "3"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only rank 0 writes and reports: one card, one "training finished" line
    assert proc.stdout.count('"message":"training finished"') == 1
    a = load_file(str(single["card_path"].with_suffix(".safetensors")))
    b = load_file(str(tmp_path / "ddp" / "model" / "toy2d-seed3.safetensors"))
    assert a.keys() == b.keys()
    moved = 0.0
    start = train(TrainConfig(task="toy2d", out=tmp_path / "zero", device="cpu", lr=0.0,
                              task_config={"n_samples": 64}, **{k: v for k, v in ARGS.items() if k != "lr"}))
    init = load_file(str(start["card_path"].with_suffix(".safetensors")))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
        moved = max(moved, float((a[key] - init[key]).abs().max()))
    assert moved > 1e-3   # training did change the weights, so agreement is not trivial
