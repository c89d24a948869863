"""Progress of long jobs (training, evaluation, export): they call :func:`emit` for each event.

When the job runner asks for it (``SLICERCAD_PROGRESS=machine`` in the environment, set by
:class:`.runner.JobRunner`) each event is a machine-readable ``@@progress {json}`` line on stdout,
which the runner turns back into a dict with :func:`parse_line`. Otherwise it is for a person,
on stderr: a bar redrawn in place on a terminal, and one line for each event with a ``message``.
"""
from __future__ import annotations

import json
import math
import os
import sys

PREFIX = "@@progress "
FIELDS = ("stage", "epoch", "step", "total", "loss", "eta_s", "fraction", "message")
ENV_VAR, MACHINE = "SLICERCAD_PROGRESS", "machine"
_live = {"width": 0}  # width of the bar now drawn on the terminal (0: none)


def _clean(value):
    """JSON-safe scalar: numpy scalars to Python, NaN/inf to None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def machine_readable() -> bool:
    """True when the job runner asked for ``@@progress`` lines."""
    return os.environ.get(ENV_VAR) == MACHINE


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


def human_line(stage: str, **fields) -> str:
    """A readable line, e.g. ``train: epoch 2 step 5/40 loss 0.2500 ETA 12s 50%``."""
    record = parse_line(format_line(stage, **fields))
    parts = [f"{record['stage']}:"]
    if "message" in record:
        parts.append(str(record["message"]))
    if "epoch" in record and "message" not in record:
        parts.append(f"epoch {record['epoch']}")
    if "step" in record:
        parts.append(f"step {record['step']}" + (f"/{record['total']}" if "total" in record else ""))
    for key in ("loss", "val_loss", "val_accuracy"):
        if isinstance(record.get(key), (int, float)):
            parts.append(f"{key.replace('_', ' ')} {record[key]:.4f}")
    if isinstance(record.get("eta_s"), (int, float)):
        parts.append(f"ETA {record['eta_s']:.0f}s")
    if "fraction" in record:
        parts.append(f"{100 * record['fraction']:.0f}%")
    return " ".join(parts)


def _show(stream, stage: str, fields: dict) -> None:
    """Write one event for a person: redraw the bar (terminal only), or a line for a message."""
    text = human_line(stage, **fields)
    if fields.get("message") is None:
        if getattr(stream, "isatty", lambda: False)():
            filled = int(20 * min(1.0, max(0.0, fields.get("fraction") or 0.0)))
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {text}"
            stream.write("\r" + text.ljust(_live["width"]))
            _live["width"] = len(text)
        return
    if _live["width"]:
        stream.write("\r" + " " * _live["width"] + "\r")
        _live["width"] = 0
    stream.write(text + "\n")


def emit(stage: str, stream=None, **fields) -> None:
    """Report one event: a ``@@progress`` line on ``stream`` (default stdout) when the runner asked
    for them, else a readable one on ``stream`` (default stderr); then flush."""
    if machine_readable():
        stream = sys.stdout if stream is None else stream
        stream.write(format_line(stage, **fields) + "\n")
    else:
        stream = sys.stderr if stream is None else stream
        _show(stream, stage, fields)
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
