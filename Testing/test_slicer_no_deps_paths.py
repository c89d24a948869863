"""What a user can do before any dependency is installed works in a fresh Slicer: Load study (every
module), Load TI scout (CardiacTICorrector) and Show phases (LiverLesionCAD) run in a Python where torch,
MONAI, safetensors, scikit-learn, psutil, matplotlib, ... cannot be imported (the meta-path blocker of
``test_slicer_load_imports``), on real MRML (slicer-core). The data is written beforehand, in this
process, so only the panel's own path runs blocked."""
import json
import subprocess
import sys

import numpy as np
import pytest

from test_slicer_load_imports import BLOCKER, MODULES, NOT_IN_FRESH_SLICER, ROOT

BLOCKED_SCRIPT = BLOCKER + """
import slicer
from SlicerCADLib.app import ensure_scene
scene = ensure_scene(slicer.vtkMRMLScene())
folder = sys.argv[3]
exec(sys.argv[4])
print("heavy", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""

LOAD_STUDY = """
from SlicerCADLib.study import load_study
result = load_study(scene, folder)
assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") > 0, result.summary()
print("study", result.summary())
"""

LOAD_SCOUT = """
from CardiacTICorrectorLib import load_study  # the module's package, as the panel imports it
from CardiacTICorrectorLib.scout import load_scout
((seq, browser, scout),) = load_scout(scene, folder)
assert seq.GetNumberOfDataNodes() == 16 and browser.GetMasterSequenceNode() is seq
print("scout", scout.n_frames)
"""

PHASE_STRIP = """
from types import SimpleNamespace
from SlicerCADLib.study import load_study
from LiverLesionCADLib import workflow
load_study(scene, folder)
p = SimpleNamespace(lesionPoints=None, phaseOffsets="", **{f: None for f in workflow.PHASE_FIELDS})
workflow.fill_phases(scene, p)
points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
centre = json.loads(sys.argv[5])
points.AddControlPoint(centre, "L1")
line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L1 diameter")
line.AddControlPoint([centre[0] - 6.0, centre[1], centre[2]])
line.AddControlPoint([centre[0] + 6.0, centre[1], centre[2]])
p.lesionPoints = points
path, titles = workflow.panel_phase_strip(p, "L1", sys.argv[6])
import os
assert os.path.getsize(path) > 0 and len(titles) >= 2, titles
print("strip", titles)
"""


def run_blocked(body, folder, *extra):
    paths = [str(ROOT), *(str(ROOT / m) for m in MODULES)]
    return subprocess.run([sys.executable, "-c", BLOCKED_SCRIPT, json.dumps(NOT_IN_FRESH_SLICER), json.dumps(paths),
                           str(folder), body, *extra], capture_output=True, text=True, timeout=300)


def check(done, word):
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"\n{word} " in "\n" + done.stdout and done.stdout.strip().endswith("heavy []"), done.stdout


@pytest.fixture(scope="module")
def liver_study(tmp_path_factory):
    from slicercad.synth.study import write_phantom_study

    folder = tmp_path_factory.mktemp("liver")
    truth = write_phantom_study(folder, kind="liver_mri", seed=0)
    return folder, truth


def test_load_study_without_the_heavy_packages(liver_study):
    folder, _truth = liver_study
    check(run_blocked(LOAD_STUDY, folder), "study")


def test_load_ti_scout_without_the_heavy_packages(tmp_path):
    from slicercad.ti.phantom import make_scout, write_scout_dicom

    write_scout_dicom(make_scout(8, snr=50, n_frames=16, shape=(64, 64)), tmp_path, ti_in="InversionTime", seed=4)
    check(run_blocked(LOAD_SCOUT, tmp_path), "scout")


def test_liver_phase_strip_without_the_heavy_packages(liver_study, tmp_path):
    from slicercad.geometry import lps_to_ras

    folder, truth = liver_study
    centre = [float(c) for c in lps_to_ras(np.asarray(truth["lesions"][0]["center_lps"], float))]
    check(run_blocked(PHASE_STRIP, folder, json.dumps(centre), str(tmp_path / "strip.png")), "strip")


def test_blocker_catches_the_classifier():
    """Control: the classifier itself still needs torch, so the same run fails there."""
    done = run_blocked("from slicercad.liver.inference import classify_lesions", ROOT)
    assert done.returncode != 0 and "is not in a fresh Slicer" in done.stderr


def test_memory_check_without_psutil(monkeypatch):
    """No psutil: the free memory comes from the OS (/proc/meminfo, sysconf, GlobalMemoryStatusEx); where the
    platform says nothing the check is skipped, never an error."""
    import builtins

    from slicercad import resources
    from slicercad.errors import InputError

    real_import = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError("no psutil")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    free = resources.available_memory()
    if sys.platform.startswith("linux"):
        assert free is not None and free > 0
    with pytest.raises(InputError, match="available"):
        resources.check_memory((1 << 20, 1 << 20, 1 << 10), np.float64, "absurd grid")
    monkeypatch.setattr(resources, "available_memory", lambda: None)
    assert resources.check_memory((1 << 20, 1 << 20, 1 << 10), np.float64, "absurd grid") == 8 * (1 << 50)
