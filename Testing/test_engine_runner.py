"""Job runner with plain Python children: progress parsing, output, exit codes, tree-wide cancel."""
import os
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from slicercad.engine import runner
from slicercad.engine.runner import JobRunner, run_blocking, slicercad_command
from slicercad.errors import InputError

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
ENV.pop("SLICERCAD_PROGRESS", None)  # the runner itself asks its children for progress lines

EMITTER = textwrap.dedent("""
    from slicercad.engine.progress import emit
    print("starting")
    for epoch in range(1, 4):
        emit("train", epoch=epoch, total=3, loss=1.0 / epoch, fraction=epoch / 3)
        print(f"epoch {epoch} done")
    raise SystemExit(3)
""")

TREE = textwrap.dedent("""
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print("grandchild", grandchild.pid, flush=True)
    time.sleep(120)
""")


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_progress_lines_parsed_and_other_lines_passed_on():
    progress, lines = [], []
    job = JobRunner([sys.executable, "-c", EMITTER], on_progress=progress.append, on_line=lines.append, env=ENV)
    assert job.start() is job
    assert job.wait(timeout=60) == 3 and job.returncode == 3
    assert [p["epoch"] for p in progress] == [1, 2, 3]
    assert progress[-1] == {"stage": "train", "epoch": 3, "total": 3, "loss": pytest.approx(1 / 3), "fraction": 1.0}
    assert job.progress == progress[-1]
    assert lines == ["starting", "epoch 1 done", "epoch 2 done", "epoch 3 done"] == list(job.lines)
    assert not job.cancelled


def test_cancel_kills_child_and_grandchild():
    job = JobRunner([sys.executable, "-c", TREE], env=ENV).start()
    deadline = time.monotonic() + 60
    while not job.lines and time.monotonic() < deadline:
        job.wait(timeout=0.1)
    grandchild = int(job.lines[0].split()[1])
    child = job.pid
    assert psutil.pid_exists(child) and psutil.pid_exists(grandchild) and not _gone(grandchild)
    job.cancel()
    assert job.cancelled and job.returncode is not None and job.returncode != 0
    deadline = time.monotonic() + 10
    while not (_gone(child) and _gone(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child) and _gone(grandchild)
    assert not psutil.pid_exists(child) or _gone(child)


def test_blocking_mode_and_timeout():
    seen = []
    assert run_blocking([sys.executable, "-c", EMITTER], on_progress=seen.append, env=ENV, timeout=60) == 3
    assert len(seen) == 3
    with pytest.raises(InputError, match="cancelled"):
        run_blocking([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    with pytest.raises(InputError, match="cannot start"):
        JobRunner(["/nonexistent/PythonSlicer", "-m", "slicercad"]).start()


def test_slicercad_command_picks_python(tmp_path, monkeypatch):
    assert slicercad_command("train", "liver", 3) == [sys.executable, "-m", "slicercad", "train", "liver", "3"]
    fake = tmp_path / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    fake.write_text("")
    monkeypatch.setattr(runner.sys, "executable", str(tmp_path / "SlicerApp-real"))
    assert slicercad_command("evaluate") == [str(fake), "-m", "slicercad", "evaluate"]
