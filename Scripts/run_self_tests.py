"""Run the modules' in-Slicer self tests (``<Module>Test``) and exit with their status.

From a build tree (``slicercad`` and ``SlicerCADLib`` sit beside the modules there)::

    Slicer --no-splash --no-main-window --testing \\
        --additional-module-paths <build>/lib/Slicer-5.12/qt-scripted-modules \\
        --python-script Scripts/run_self_tests.py [Module ...]

From a source checkout, pass the module folders and put the repository root on ``PYTHONPATH`` (the
modules import ``slicercad`` and ``SlicerCADLib`` when Slicer loads them at startup, before this script)::

    PYTHONPATH=<repo> Slicer --no-splash --no-main-window --testing \\
        --additional-module-paths <repo>/LiverLesionCAD <repo>/CardiacTICorrector ... \\
        --python-script Scripts/run_self_tests.py [Module ...]

Run from a source checkout, this script also puts the repository root and the module folders on
``sys.path`` itself, so the self tests import even where ``PYTHONPATH`` was not set.

``--testing``: Slicer's testing mode; ``pip_ensure`` then installs nothing, so a test whose dependencies
(torch, MONAI, ...) are missing is reported as skipped, never as passed. Without it, the first test that
needs them asks to install them. Uses only data the tests generate (SYNTHETIC phantom studies), in
temporary folders they remove.
"""
import importlib
import sys
import unittest
from pathlib import Path

import slicer

MODULES = ["LiverLesionCAD", "CardiacTICorrector", "WeakLabelSegmenter", "RenalMassCAD", "AnomalyCT"]
ROOT = Path(__file__).resolve().parents[1]  # Slicer's --python-script sets __file__ (CTK executeFile)


def add_source_checkout_paths(root: Path = ROOT) -> list:
    """Put a source checkout's root (``slicercad``, ``SlicerCADLib``) and module folders on ``sys.path``;
    returns what was added (nothing outside a source checkout)."""
    if not ((root / "slicercad").is_dir() and (root / "SlicerCADLib").is_dir()):
        return []
    added = []
    for path in [root, *(root / m for m in MODULES if (root / m / f"{m}.py").is_file())]:
        if str(path) not in sys.path:
            sys.path.insert(0 if path == root else len(sys.path), str(path))
            added.append(str(path))
    return added


def main(names) -> int:
    add_source_checkout_paths()
    suite = unittest.TestSuite()
    for name in names:
        suite.addTest(getattr(importlib.import_module(name), f"{name}Test")())  # runTest runs every test
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    for test, reason in result.skipped:
        print(f"skipped: {test}: {reason}")
    return 0 if result.wasSuccessful() else 1


slicer.util.exit(main(sys.argv[1:] or MODULES))
