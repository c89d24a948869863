"""A persistent worker process that runs fuzz inputs under a memory cap; the parent respawns it
after a crash (a signal, an exit, a hang past the timeout) and reports that input as a crash."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import shutil
import tempfile
import warnings
from pathlib import Path

import psutil


def _serve(conn, memory_mb: int, workdir: str) -> None:
    """Worker loop: receive {name: bytes}, reply with the outcome and the peak RSS so far."""
    import SimpleITK as sitk

    from .targets import run_input

    warnings.simplefilter("ignore")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)  # ITK prints SVD diagnostics for degenerate geometry; outcomes are reported instead
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    cap = psutil.Process().memory_info().vms + memory_mb * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    folder = Path(workdir) / f"input_{os.getpid()}"
    while True:
        files = conn.recv()
        if files is None:
            break
        result = run_input(files, folder)
        result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(result)
    shutil.rmtree(folder, ignore_errors=True)


class Worker:
    """``run(files)`` -> outcome dict; respawns the process after any crash of it."""

    def __init__(self, memory_mb: int = 1024, timeout_s: float = 30.0):
        self.memory_mb, self.timeout_s = int(memory_mb), float(timeout_s)
        self._ctx = multiprocessing.get_context("spawn")
        self._workdir = tempfile.mkdtemp(prefix="slicercad-fuzz-")
        self.respawns = 0
        self.peak_rss_mb = 0.0
        self._proc = None
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.memory_mb, self._workdir), daemon=True)
        self._proc.start()
        child.close()

    def _restart(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join()
        self._conn.close()
        self.respawns += 1
        self._start()

    def run(self, files: dict) -> dict:
        try:
            self._conn.send(files)
            ready = self._conn.poll(self.timeout_s)
            if ready:
                result = self._conn.recv()
                self.peak_rss_mb = max(self.peak_rss_mb, result.get("maxrss_mb", 0.0))
                return result
            crash = {"type": "Hang", "where": "timeout", "message": f"no answer within {self.timeout_s:g} s"}
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._proc.join(5)
            code = self._proc.exitcode
            kind = f"Signal{-code}" if code is not None and code < 0 else f"Exit{code}"
            crash = {"type": kind, "where": "worker", "message": f"worker process ended ({kind})"}
        self._restart()
        return {"status": "crash", "calls": [dict(crash, target="worker", status="crash")]}

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
                self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        self.peak_rss_mb = max(self.peak_rss_mb, children)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
