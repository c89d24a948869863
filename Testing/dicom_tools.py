"""The external DICOM checkers the results tests run: dciodvfy (Debian dicom3tools) and dcmqi's converters
(PyPI dcmqi: the programs Slicer 5.12's SEG, Parametric Map and TID 1500 plugins run). A missing tool fails
the test under CI=true (``.ci/run`` installs them) and skips it elsewhere - never a silent pass."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from required import missing

_DCMQI = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of ``name`` (dciodvfy, or a dcmqi converter beside the interpreter)."""
    found = shutil.which(name) or (str(_DCMQI / name) if (_DCMQI / name).exists() else None)
    if found:
        return found
    missing(name, "apt-get install dicom3tools / pip install dcmqi")


def dciodvfy_errors(path) -> list:
    """dciodvfy's 'Error' lines for a file."""
    out = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


def dcmqi(name: str, path, out: Path) -> Path:
    """Run a dcmqi converter as Slicer 5.12's plugin does; returns its output folder."""
    out.mkdir(parents=True)
    args = {"segimage2itkimage": ["--outputDirectory", str(out), "--mergeSegments"],
            "tid1500reader": ["--outputMetadata", str(out / "meta.json")]}.get(name, ["--outputDirectory", str(out)])
    subprocess.run([tool(name), "--inputDICOM", str(path), *args], check=True, capture_output=True, timeout=120)
    return out
