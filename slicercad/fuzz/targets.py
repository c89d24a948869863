"""What the fuzzer exercises, and how each outcome is judged (runs inside the worker process).

Every input is written to a fresh folder and fed to the folder scan (lenient and strict), the load
of every volume found (``VolumeRecord.load``, and ``load_frames`` for time series such as TI
scouts), and the direct loaders ``load_volume`` / ``load_frames`` on all its files. A call ends
``ok``, ``typed`` (a ``SlicerCADError`` that names its input) or ``crash`` (anything else,
including a typed error with no ``source``).
"""
from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path

from ..dicom.scan import load_frames, load_volume, scan_folder
from ..errors import SlicerCADError


def _where(exc: BaseException) -> str:
    """Deepest frame inside slicercad (else the deepest frame), as 'module.py:line'."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}slicercad{os.sep}" in f.filename]
    frame = (ours or frames or [None])[-1]
    return "?" if frame is None else f"{Path(frame.filename).name}:{frame.lineno}"


def _call(name: str, fn, calls: list) -> object:
    try:
        result = fn()
    except SlicerCADError as exc:
        if exc.source is None:
            calls.append({"target": name, "status": "crash", "type": type(exc).__name__, "where": _where(exc),
                          "message": f"typed error without a source: {exc}"[:500]})
        else:
            calls.append({"target": name, "status": "typed", "type": type(exc).__name__})
        return None
    except Exception as exc:  # noqa: BLE001 - anything untyped is a crash, recorded with its traceback
        calls.append({"target": name, "status": "crash", "type": type(exc).__name__, "where": _where(exc),
                      "message": str(exc)[:500], "traceback": traceback.format_exc()[-4000:]})
        return None
    calls.append({"target": name, "status": "ok"})
    return result


def _scan_and_load(folder: Path, strict: bool, calls: list) -> None:
    suffix = "_strict" if strict else ""
    result = _call(f"scan_folder{suffix}", lambda: scan_folder(folder, strict=strict), calls)
    for volume in result.volumes() if result is not None else []:
        _call(f"volume.load{suffix}", lambda v=volume: v.load(strict=strict), calls)
        if volume.kind == "timeseries" and not strict:
            _call("load_frames(scan)", lambda v=volume: load_frames(v.files), calls)


def write_input(folder: Path, files: dict) -> list[Path]:
    """Write {relative name: bytes} under a fresh ``folder``; returns the paths in name order."""
    if folder.exists():
        shutil.rmtree(folder)
    paths = []
    for name, data in sorted(files.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    folder.mkdir(parents=True, exist_ok=True)
    return paths


def run_input(files: dict, folder: Path) -> dict:
    """Run every target on one input: {"status", "calls"} with status the worst call outcome."""
    paths = write_input(Path(folder), files)
    calls: list = []
    _scan_and_load(Path(folder), False, calls)
    _scan_and_load(Path(folder), True, calls)
    if paths:
        _call("load_volume", lambda: load_volume(paths), calls)
        _call("load_frames", lambda: load_frames(paths), calls)
    statuses = {c["status"] for c in calls}
    status = "crash" if "crash" in statuses else "typed" if "typed" in statuses else "ok"
    return {"status": status, "calls": calls}
