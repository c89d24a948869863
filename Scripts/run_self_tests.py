"""Run the modules' in-Slicer self tests (``<Module>Test``) and exit with their status.

    Slicer --no-splash --no-main-window --additional-module-paths <build or source module dirs> \\
        --python-script Scripts/run_self_tests.py [Module ...]

Uses only data the tests generate (SYNTHETIC phantom studies). A test whose dependencies are missing
(``--testing`` installs nothing) is reported as skipped, never as passed.
"""
import importlib
import sys
import unittest

import slicer

MODULES = ["LiverLesionCAD", "CardiacTICorrector", "WeakLabelSegmenter", "RenalMassCAD", "AnomalyCT"]


def main(names) -> int:
    suite = unittest.TestSuite()
    for name in names:
        suite.addTest(getattr(importlib.import_module(name), f"{name}Test")())  # runTest runs every test
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    for test, reason in result.skipped:
        print(f"skipped: {test}: {reason}")
    return 0 if result.wasSuccessful() else 1


slicer.util.exit(main(sys.argv[1:] or MODULES))
