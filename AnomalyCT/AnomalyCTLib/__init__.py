"""Anomaly CT logic helpers: MRML <-> slicercad core. Imports slicer, never qt."""
from SlicerCADLib.study import load_study

from . import logic

__all__ = ["load_study", "logic"]
