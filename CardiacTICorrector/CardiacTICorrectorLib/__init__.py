"""Cardiac TI Corrector logic helpers: MRML <-> slicercad core. Imports slicer, never qt.

Package level stays light (no torch): ``scout`` loads a TI scout as a sequence over TI and runs
Estimate; a model is passed in by the caller after ``SlicerCADLib.dependencies.ensure_dependencies``."""
from SlicerCADLib.study import load_study

__all__ = ["load_study"]
