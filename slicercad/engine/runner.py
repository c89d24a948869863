"""Long jobs as subprocesses: ``PythonSlicer -m slicercad ...`` inside Slicer, ``python -m slicercad ...`` outside.

The child's stdout and stderr are read line by line on a background thread into a queue;
:meth:`JobRunner.poll` hands them to the callbacks on the caller's thread (call it from a
``qt.QTimer`` in Slicer: GUI objects must not be touched from other threads). The child is asked
for ``@@progress`` lines (``SLICERCAD_PROGRESS=machine``, see :mod:`.progress`); they update
:attr:`JobRunner.progress`. :meth:`JobRunner.cancel` ends the whole process tree with psutil.
:func:`run_blocking` is the same for batch scripts.
"""
from __future__ import annotations

import collections
import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from ..errors import InputError
from .progress import ENV_VAR, MACHINE, parse_line


def slicercad_command(*args) -> list[str]:
    """Command line running ``slicercad`` with ``args`` in the right Python.

    Inside Slicer (a ``PythonSlicer`` beside the running executable, or the Slicer application
    loaded) that is ``PythonSlicer``; elsewhere the current interpreter.
    """
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    sibling = Path(sys.executable).with_name(name)
    if sibling.is_file():
        python = str(sibling)
    elif getattr(sys.modules.get("slicer"), "app", None) is not None and shutil.which("PythonSlicer"):
        python = shutil.which("PythonSlicer")
    else:
        python = sys.executable
    return [python, "-m", "slicercad", *map(str, args)]


class JobRunner:
    """One subprocess job with streamed output, parsed progress and tree-wide cancel."""

    def __init__(self, args: list[str], on_progress=None, on_line=None, cwd=None, env=None, keep_lines=2000):
        if not args or not all(isinstance(a, (str, os.PathLike)) for a in args):
            raise InputError(f"a job needs a non-empty list of command-line strings, got {args!r}", "args")
        self.args = [str(a) for a in args]
        self.on_progress, self.on_line = on_progress, on_line
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", **{ENV_VAR: MACHINE})
        self.progress: dict | None = None
        self.lines = collections.deque(maxlen=keep_lines)
        self.cancelled = False
        self._queue: queue.Queue = queue.Queue()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once finished (negative: killed by that signal on POSIX), else None."""
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "JobRunner":
        if self._process is not None:
            raise InputError("this job was already started; create a new JobRunner", "JobRunner.start")
        try:
            self._process = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace", bufsize=1)
        except OSError as exc:
            raise InputError(f"cannot start {self.args[0]}: {exc.strerror or exc}", "args") from exc
        self._reader = threading.Thread(target=self._read, name=f"JobRunner-{self._process.pid}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            self._queue.put(line.rstrip("\r\n"))
        self._process.stdout.close()

    def poll(self) -> int:
        """Deliver pending lines to the callbacks on this thread; returns how many were delivered."""
        delivered = 0
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return delivered
            delivered += 1
            record = parse_line(line)
            if record is not None:
                self.progress = record
                if self.on_progress:
                    self.on_progress(record)
            else:
                self.lines.append(line)
                if self.on_line:
                    self.on_line(line)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the job (delivering its output); returns the exit status, or None on timeout."""
        if self._process is None:
            raise InputError("the job has not been started", "JobRunner.wait")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            finished = self._process.poll() is not None and not self._reader.is_alive()
            if finished:
                self.poll()
                return self._process.returncode
            if deadline is not None and time.monotonic() >= deadline:
                return None
            self._reader.join(0.05)

    def cancel(self, grace_s: float = 3.0) -> None:
        """Terminate the job and all its descendants; kill those still alive after ``grace_s``."""
        if self._process is None or self._process.poll() is not None:
            return
        self.cancelled = True
        try:
            descendants = psutil.Process(self._process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        for proc in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        self._process.terminate()  # through Popen, so that Popen reaps it and keeps its exit status
        _, alive = psutil.wait_procs(descendants, timeout=grace_s)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        try:
            self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self.wait(timeout=grace_s)


def run_blocking(args: list[str], on_progress=None, on_line=None, timeout: float | None = None, **kwargs) -> int:
    """Run a job to the end in the calling thread (batch scripts); cancels it after ``timeout`` seconds."""
    job = JobRunner(args, on_progress=on_progress, on_line=on_line, **kwargs).start()
    code = job.wait(timeout)
    if code is None:
        job.cancel()
        raise InputError(f"job did not finish within {timeout} s and was cancelled", " ".join(job.args[:4]))
    return code
