"""Machine-readable progress lines: ``@@progress {json}`` on stdout, one per event.

Long jobs (training, evaluation, export) call :func:`emit`; the job runner in Slicer
reads the child's stdout and turns each such line back into a dict with :func:`parse_line`.
"""
from __future__ import annotations

import json
import math
import sys

PREFIX = "@@progress "
FIELDS = ("stage", "epoch", "step", "total", "loss", "eta_s", "fraction", "message")


def _clean(value):
    """JSON-safe scalar: numpy scalars to Python, NaN/inf to None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_line(stage: str, **fields) -> str:
    """Return the progress line (without newline) for ``stage`` and the given fields only.

    Known fields come first in a fixed order; ``fraction`` is clipped to [0, 1].
    """
    record = {"stage": str(stage)}
    for key in FIELDS[1:]:
        if key in fields and fields[key] is not None:
            record[key] = _clean(fields[key])
    for key, value in fields.items():
        if key not in record and value is not None:
            record[key] = _clean(value)
    if isinstance(record.get("fraction"), (int, float)):
        record["fraction"] = min(1.0, max(0.0, float(record["fraction"])))
    return PREFIX + json.dumps(record, separators=(",", ":"), default=str)


def emit(stage: str, stream=None, **fields) -> None:
    """Print one progress line to ``stream`` (stdout by default) and flush it."""
    stream = sys.stdout if stream is None else stream
    stream.write(format_line(stage, **fields) + "\n")
    stream.flush()


def parse_line(line) -> dict | None:
    """Return the progress dict carried by ``line``, or None for any other output line."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith(PREFIX.strip()):
        return None
    try:
        record = json.loads(line[len(PREFIX.strip()):].strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "stage" not in record:
        return None
    return record
