"""DICOM fuzzing: a short run has no crashes, every crash class found so far stays fixed (its
minimal input is in Testing/regressions/), and the worker, minimiser and mutations behave."""
import json
from pathlib import Path

import numpy as np
import pytest

from slicercad.fuzz import cli
from slicercad.fuzz.mutations import build_file, build_series, decode, encode
from slicercad.fuzz.runner import build, crash_key, minimise, run_fuzz
from slicercad.fuzz.seeds import elements, seed_bytes
from slicercad.fuzz.worker import Worker

REGRESSIONS = Path(__file__).parent / "regressions"
CRASHES = json.loads((REGRESSIONS / "crashes.json").read_text())


@pytest.fixture(scope="module")
def worker():
    with Worker(memory_mb=1024, timeout_s=60) as w:
        yield w


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_every_crash_found_by_fuzzing_is_now_a_typed_error(worker, name):
    files = {p.name: p.read_bytes() for p in (REGRESSIONS / name).iterdir()}
    result = worker.run(files)
    assert crash_key(result) is None, (CRASHES[name]["class"], [c for c in result["calls"] if c["status"] == "crash"])
    assert result["status"] in ("typed", "ok")  # a typed error naming the input, or a sane load
    assert {c["type"] for c in result["calls"] if c["status"] == "typed"} <= {"DicomError", "SeriesError", "InputError"}


def test_regression_inputs_are_what_their_specs_build():
    for name, entry in CRASHES.items():
        assert build(entry["level"], entry["spec"])["input.dcm"] == (REGRESSIONS / name / "input.dcm").read_bytes()


def test_short_fuzz_run_has_no_crashes(tmp_path):
    summary = run_fuzz(250, seed=11, out=tmp_path, timeout_s=60)
    assert summary["crashes"] == 0, summary["crash_classes"]
    assert summary["inputs"] == 250 == summary["file_inputs"] + summary["series_inputs"]
    assert summary["file_inputs"] > 50 and summary["series_inputs"] > 50
    assert summary["typed_errors"] > 0 and summary["outcomes"]["file"].get("ok", 0) > 0
    assert summary["peak_worker_rss_mb"] > 0
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_cli_prints_the_figures(tmp_path, capsys):
    assert cli.main(["--inputs", "12", "--seed", "5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "inputs:        12 (" in out and "crashes:       0" in out and "peak memory:" in out


def test_worker_is_respawned_after_a_hang_and_keeps_working(worker):
    files = {"input.dcm": seed_bytes("CT_small.dcm")}
    worker.timeout_s = 0.001
    hung = worker.run(files)
    worker.timeout_s = 60
    assert crash_key(hung) == "Hang@timeout" and worker.respawns >= 1
    assert worker.run(files)["status"] == "ok"


def test_memory_cap_breach_counts_as_a_crash():
    ds = decode(seed_bytes("CT_small.dcm"))
    ds.Rows = ds.Columns = 1024                     # a real 1024 x 1024 slice: 8 MiB as float64
    ds.PixelData = np.zeros((1024, 1024), np.int16).tobytes()
    files = {"input.dcm": encode(ds)}
    with Worker(memory_mb=64, timeout_s=60) as roomy:
        assert roomy.run(files)["status"] == "ok"
    with Worker(memory_mb=1, timeout_s=60) as tiny:
        result = tiny.run(files)
    # a MemoryError inside a target, or the worker dying of it, both count as crashes
    assert result["status"] == "crash" and crash_key(result).split("@")[0] in ("MemoryError", "Exit1")


class _FakeWorker:
    """Crashes whenever the file is shorter than the seed (i.e. a truncation is in the spec)."""

    def run(self, files):
        short = len(files["input.dcm"]) < len(seed_bytes("MR_small.dcm"))
        call = {"target": "scan_folder", "status": "crash", "type": "Boom", "where": "x.py:1"} if short \
            else {"target": "scan_folder", "status": "ok"}
        return {"status": call["status"], "calls": [call]}


def test_minimiser_keeps_only_what_causes_the_crash():
    spec = {"seed": "MR_small.dcm", "edits": [["set", "Modality", 1]],
            "bytes": [["flip", 0.5, 3], ["truncate", 0.7], ["insert", 0.2, 0]]}
    minimal = minimise(_FakeWorker(), "file", spec, "Boom@x.py:1")
    assert minimal == {"seed": "MR_small.dcm", "edits": [], "bytes": [["truncate", 0.7]]}


def test_mutations_are_deterministic_and_do_what_they_say():
    data = seed_bytes("CT_small.dcm")
    pixel = [e for e in elements(data) if e.tag == 0x7FE00010]
    assert len(pixel) == 1 and pixel[0].length == 128 * 128 * 2
    assert len(build_file({"seed": "CT_small.dcm", "edits": [], "bytes": [["truncate", 0.5]]})) == len(data) // 2
    spec = {"seed": "CT_small.dcm", "edits": [["delete", "PixelData"]], "bytes": [["vr", 3, 2]]}
    assert build_file(spec) == build_file(json.loads(json.dumps(spec))) and b"\xe0\x7f\x10\x00" not in build_file(spec)
    series = {"seed": "MR_small.dcm", "n": 4, "mode": "volume", "spacing": 2.5,
              "ops": [["drop", 1], ["junk", "text"], ["subdir", 0], ["shuffle", 3]]}
    files = build_series(series)
    assert len(files) == 4 and "junk_text" in files and any(n.startswith("sub/") for n in files)
    assert build_series(series) == files
