"""Crash safety by deterministic fault injection: a subprocess is SIGKILLed between the write of a
temporary file and its rename (``os.replace`` inside ``slicercad.atomic``). The previous version of
checkpoints, exports and manifests must stay intact, ``--resume`` must continue, and concurrent
exports into one dataset must not corrupt its manifest."""
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import load_file

from slicercad.cli import main as cli_main
from slicercad.engine.checkpoint import load_checkpoint, save_checkpoint
from slicercad.engine.export import export_lesion
from slicercad.engine.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"reliability-site-secret-42"
TAGS = {"PatientID": "MRN-RELIABILITY", "StudyInstanceUID": "1.2.826.0.1.3680043.2.1125.7",
        "SeriesInstanceUID": "1.2.826.0.1.3680043.2.1125.8", "PatientAge": "050Y", "PatientSex": "M"}

# Runs ``JOB`` in a fresh interpreter; the KILL_AT-th rename whose target is named KILL_NAME
# ("*": any) sends SIGKILL to the process after the temporary file is complete.
HARNESS = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {testing!r})
    import slicercad.atomic as atomic
    KILL_NAME, KILL_AT, seen = {name!r}, {at}, [0]

    class _OS:
        def __getattr__(self, attr):
            return getattr(os, attr)

        def replace(self, src, dst):
            if KILL_NAME in ("*", os.path.basename(dst)):
                seen[0] += 1
                if seen[0] == KILL_AT:
                    os.kill(os.getpid(), signal.SIGKILL)
            return os.replace(src, dst)

    atomic.os = _OS()
    {job}
""")


def _run_killed(job: str, name: str = "*", at: int = 1) -> subprocess.CompletedProcess:
    script = HARNESS.format(testing=str(Path(__file__).parent), name=name, at=at, job=job)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)


def _volume(offset):
    arr = np.full((12, 40, 40), offset, np.int16)
    arr[5:8, 15:25, 15:25] += 100
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 2.0))
    return img


def export_one(root, key):
    """Export lesion ``key`` (an int) into the dataset at ``root``."""
    ref = _volume(10)
    lesion = {"center_lps": ref.TransformIndexToPhysicalPoint((12 + key, 20, 6)), "diameter_mm": 6.0,
              "label": "cyst", "mask": sitk.Cast(_volume(0) > 50, sitk.sitkUInt8), "lesion_key": f"K{key}"}
    return export_lesion(Path(root), {"hbp": ref, "t2": _volume(20)}, lesion, TAGS, SECRET, "reader", False,
                         None, crop_mm=16.0)


def _rows(root):
    return load_manifest(Path(root) / "manifest.jsonl", check_voxels=False).cases


def test_checkpoint_survives_a_kill_during_the_next_save(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    save_checkpoint(path, model, torch.optim.SGD(model.parameters(), lr=0.1), {"epoch": 1})
    before = path.read_bytes()
    proc = _run_killed(textwrap.dedent(f"""
        import torch
        from slicercad.engine.checkpoint import save_checkpoint
        model = torch.nn.Linear(3, 2)
        save_checkpoint({str(path)!r}, model, torch.optim.SGD(model.parameters(), lr=0.1), {{"epoch": 2}})
    """))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert path.read_bytes() == before
    tensors, meta = load_checkpoint(path)
    assert meta["state"] == {"epoch": 1}
    torch.testing.assert_close(tensors["model.weight"], model.weight.detach())
    assert [p.name for p in tmp_path.iterdir() if p.name != path.name][0].startswith(".checkpoint.safetensors.")


def test_training_killed_while_writing_a_checkpoint_resumes_to_the_same_model(tmp_path):
    args = ["train", "toy2d", "--epochs", "3", "--set", "n_samples=64", "--device", "cpu", "--seed", "3"]
    assert cli_main(args + ["--out", str(tmp_path / "full")]) == 0
    cut = tmp_path / "cut"
    proc = _run_killed(f"from slicercad.cli import main; main({args + ['--out', str(cut)]!r})",
                       name="checkpoint.safetensors", at=2)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    _, meta = load_checkpoint(cut / "checkpoint.safetensors")
    assert meta["state"]["epoch"] == 1            # epoch 2 was being written when the process died
    assert not (cut / "model").exists()
    assert cli_main(args + ["--out", str(cut), "--resume"]) == 0
    full = load_file(str(next((tmp_path / "full" / "model").glob("*.safetensors"))))
    resumed = load_file(str(next((cut / "model").glob("*.safetensors"))))
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("at", [1, 3, 6])
def test_export_killed_at_each_atomic_write_keeps_the_previous_dataset(tmp_path, at):
    # an export writes hbp.nrrd, t2.nrrd, mask.nrrd, metadata.json, dataset_description.json, manifest.jsonl
    export_one(tmp_path, 0)
    manifest = (tmp_path / "manifest.jsonl").read_bytes()
    proc = _run_killed(f"from test_reliability_crash_safety import export_one; export_one({str(tmp_path)!r}, 1)",
                       at=at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (tmp_path / "manifest.jsonl").read_bytes() == manifest
    assert len(_rows(tmp_path)) == 1
    json.loads((tmp_path / "dataset_description.json").read_text())
    export_one(tmp_path, 1)                        # the retry completes and the lock was released
    cases = _rows(tmp_path)
    assert len(cases) == 2 and all(all(Path(p).is_file() for p in c.images.values()) for c in cases)


def test_manifest_append_killed_before_rename_keeps_every_previous_row(tmp_path):
    export_one(tmp_path, 0)
    export_one(tmp_path, 1)
    before = (tmp_path / "manifest.jsonl").read_bytes()
    row = json.loads(before.decode().splitlines()[0])
    job = textwrap.dedent(f"""
        import json
        from slicercad.engine.manifest import append_cases
        row = json.loads({json.dumps(row)!r})
        append_cases({str(tmp_path / "manifest.jsonl")!r}, [dict(row, case_id="C-new")])
    """)
    proc = _run_killed(job, name="manifest.jsonl")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (tmp_path / "manifest.jsonl").read_bytes() == before
    assert [c.case_id for c in _rows(tmp_path)] == [json.loads(x)["case_id"] for x in before.decode().splitlines()]


def _export_many(job):
    root, worker = job
    for k in range(3):
        export_one(root, 10 * worker + k)


def test_concurrent_exports_to_one_dataset_keep_a_valid_manifest(tmp_path):
    with mp.get_context("spawn").Pool(3) as pool:
        pool.map(_export_many, [(str(tmp_path), w) for w in range(3)])
    cases = _rows(tmp_path)
    assert len(cases) == 9 and len({c.case_id for c in cases}) == 9
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line)["schema"] for line in lines) and len(lines) == 9
    assert not [p for p in tmp_path.rglob(".*") if ".tmp" in p.name]
