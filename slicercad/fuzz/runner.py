"""The fuzz run: hypothesis draws inputs, the worker runs them, crashes are minimised and saved.

``run_fuzz`` returns (and writes to ``out/summary.json``) the figures the README reports: inputs
by level, outcomes, typed errors by class, crash classes with their minimal inputs, peak memory
and runtime. Each crashing input is written under ``out/crashes/<class>/`` (files + spec.json).
"""
from __future__ import annotations

import collections
import json
import re
import resource
import time
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings

from ..atomic import write_bytes, write_json
from .mutations import build_file, build_series
from .strategies import inputs
from .worker import Worker

MAX_MINIMISE_TRIES = 40


def build(level: str, spec: dict) -> dict:
    """{relative name: bytes} of an input."""
    return {"input.dcm": build_file(spec)} if level == "file" else build_series(spec)


def crash_key(result: dict) -> str | None:
    """Crash class of an outcome: '<ExceptionType>@<file:line>' of its first crashing call."""
    for call in result["calls"]:
        if call["status"] == "crash":
            return f"{call['type']}@{call['where']}"
    return None


def _smaller(level: str, spec: dict):
    """Specs with one part removed (greedy minimisation candidates)."""
    if level == "file":
        for field in ("edits", "bytes"):
            for k in range(len(spec[field])):
                yield dict(spec, **{field: spec[field][:k] + spec[field][k + 1:]})
    else:
        for k in range(len(spec["ops"])):
            yield dict(spec, ops=spec["ops"][:k] + spec["ops"][k + 1:])
        if spec["n"] > 1:
            yield dict(spec, n=spec["n"] - 1)


def minimise(worker: Worker, level: str, spec: dict, key: str) -> dict:
    """Greedy: drop parts of the spec while the input still crashes with the same class."""
    tries = 0
    improved = True
    while improved and tries < MAX_MINIMISE_TRIES:
        improved = False
        for candidate in _smaller(level, spec):
            tries += 1
            if crash_key(worker.run(build(level, candidate))) == key:
                spec, improved = candidate, True
                break
            if tries >= MAX_MINIMISE_TRIES:
                break
    return spec


def _save_crash(out: Path, key: str, level: str, spec: dict, minimal: dict, result: dict) -> Path:
    folder = out / "crashes" / re.sub(r"[^A-Za-z0-9._-]", "_", key)
    for name, data in build(level, minimal).items():
        write_bytes(folder / "files" / name, data)
    write_json(folder / "spec.json", {"class": key, "level": level, "spec": spec, "minimal_spec": minimal,
                                      "calls": [c for c in result["calls"] if c["status"] == "crash"]})
    return folder


class _Tally:
    def __init__(self):
        self.inputs = collections.Counter()
        self.outcomes = {"file": collections.Counter(), "series": collections.Counter()}
        self.typed = collections.Counter()
        self.typed_by_target = collections.Counter()
        self.crashes: dict = {}

    def add(self, level: str, result: dict) -> None:
        self.inputs[level] += 1
        self.outcomes[level][result["status"]] += 1
        for call in result["calls"]:
            if call["status"] == "typed":
                self.typed[call["type"]] += 1
                self.typed_by_target[call["target"]] += 1


def run_fuzz(n_inputs: int, seed: int, out, timeout_s: float = 30.0, memory_mb: int = 1024,
             report=None) -> dict:
    """Run ``n_inputs`` inputs drawn by hypothesis from ``seed``; returns the summary (see module doc)."""
    out = Path(out)
    tally = _Tally()
    start = time.monotonic()

    with Worker(memory_mb=memory_mb, timeout_s=timeout_s) as worker:
        def one(item):
            if sum(tally.inputs.values()) >= n_inputs:
                return
            level, spec = json.loads(json.dumps(item))  # the JSON form is what gets saved and replayed
            result = worker.run(build(level, spec))
            tally.add(level, result)
            key = crash_key(result)
            if key is not None:
                entry = tally.crashes.setdefault(key, {"count": 0, "level": level})
                entry["count"] += 1
                if entry["count"] == 1:
                    minimal = minimise(worker, level, spec, key)
                    entry["input"] = str(_save_crash(out, key, level, spec, minimal, result))
                    entry["message"] = next(c.get("message", "") for c in result["calls"] if c["status"] == "crash")
            if report is not None:
                report(tally)

        round_seed = seed
        while sum(tally.inputs.values()) < n_inputs:
            before = sum(tally.inputs.values())
            remaining = n_inputs - before
            drive = settings(max_examples=remaining, database=None, deadline=None, phases=[Phase.generate],
                             suppress_health_check=list(HealthCheck))(given(inputs)(one))
            hypothesis.seed(round_seed)(drive)()
            round_seed += 1
            if sum(tally.inputs.values()) == before:
                break
        worker_peak, respawns = worker.peak_rss_mb, worker.respawns
    runtime = time.monotonic() - start
    crashes = sum(v["count"] for v in tally.crashes.values())
    summary = {
        "seed": seed, "inputs": sum(tally.inputs.values()), "file_inputs": tally.inputs["file"],
        "series_inputs": tally.inputs["series"],
        "outcomes": {level: dict(c) for level, c in tally.outcomes.items()},
        "typed_errors": sum(tally.typed.values()), "typed_errors_by_class": dict(tally.typed),
        "typed_errors_by_target": dict(tally.typed_by_target),
        "crashes": crashes, "crash_classes": tally.crashes, "worker_respawns": respawns,
        "peak_worker_rss_mb": round(max(worker_peak, worker.peak_rss_mb), 1),
        "peak_runner_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_cap_mb": memory_mb, "timeout_s": timeout_s, "runtime_s": round(runtime, 1),
        "hypothesis": hypothesis.__version__,
    }
    write_json(out / "summary.json", summary)
    return summary
