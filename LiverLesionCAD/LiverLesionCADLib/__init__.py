"""Liver Lesion CAD logic helpers: MRML <-> slicercad core. Imports slicer, never qt."""
from SlicerCADLib.study import load_study

__all__ = ["load_study"]
