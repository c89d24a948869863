"""Loading a module in a fresh Slicer imports only what Slicer has: every project module a module file
reaches at load imports in a Python where torch, MONAI, safetensors, scikit-learn, psutil, matplotlib and
the other installed-on-first-use packages (filelock, threadpoolctl, pylibjpeg, openjpeg, joblib,
statsmodels) cannot be imported (a meta-path blocker). The module files themselves need Qt: the Slicer API checker
covers them."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["LiverLesionCAD", "CardiacTICorrector", "WeakLabelSegmenter", "RenalMassCAD", "AnomalyCT"]
# top-level import names a fresh Slicer 5.12 lacks (highdicom, pydicom, pyjpegls, scipy... it bundles)
NOT_IN_FRESH_SLICER = ("torch", "monai", "safetensors", "sklearn", "psutil", "matplotlib", "filelock",
                       "threadpoolctl", "pylibjpeg", "openjpeg", "joblib", "statsmodels")

# a fresh Slicer's Python: argv[1] = blocked top-level names, argv[2] = paths to prepend
BLOCKER = """
import importlib, importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in a fresh Slicer")
sys.meta_path.insert(0, Blocker())
sys.path[:0] = json.loads(sys.argv[2])
"""
BLOCKED_RUN = BLOCKER + """
for module, names in json.loads(sys.argv[3]):
    mod = importlib.import_module(module)
    for name in names:
        if not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")
print("loaded", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


# Segment Editor effect files a module registers (Slicer loads them by path, at startup): same rule.
EFFECT_FILES = {"WeakLabelSegmenter": "WeakLabelSegmenter/WeakLabelSegmenterEffects/SegmentEditorLesionClickEffect.py"}


def load_time_imports(module: str, path=None) -> list:
    """[(project module, [names])] that ``<module>.py`` (or the module's file ``path``) imports at module level."""
    project = {"slicercad", "SlicerCADLib", f"{module}Lib"}
    tree = ast.parse((ROOT / path if path else ROOT / module / f"{module}.py").read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] in project]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in project:
            found.append((node.module, [a.name for a in node.names]))
    return found


def run_blocked(imports, blocked=NOT_IN_FRESH_SLICER):
    paths = [str(ROOT), *(str(ROOT / m) for m in MODULES)]
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, json.dumps(blocked), json.dumps(paths),
                           json.dumps(imports)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", MODULES)
def test_module_load_imports_nothing_slicer_lacks(module):
    imports = load_time_imports(module)
    assert imports, f"{module}.py imports no project module: the test would check nothing"
    done = run_blocked(imports)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded []"


@pytest.mark.parametrize("module", sorted(EFFECT_FILES))
def test_effect_load_imports_nothing_slicer_lacks(module):
    assert (ROOT / EFFECT_FILES[module]).is_file()
    imports = load_time_imports(module, EFFECT_FILES[module])
    assert imports, f"{EFFECT_FILES[module]} imports no project module: the test would check nothing"
    done = run_blocked(imports)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded []"


def test_blocker_catches_a_heavy_import():
    """Control: the same run fails for a module that does import torch at load."""
    done = run_blocked([["slicercad.liver.model", []]])
    assert done.returncode != 0 and "torch is not in a fresh Slicer" in done.stderr


def test_liver_panel_constants_come_without_torch():
    """What the panel's parameter node needs at load (phases, label choices) is defined without torch."""
    done = run_blocked([["LiverLesionCADLib.workflow", ["LABEL_CHOICES", "PHASE_FIELDS"]],
                        ["slicercad.liver.phases", ["PHASES", "REFERENCE_PHASE"]]])
    assert done.returncode == 0, done.stderr[-3000:]
