"""Weak Label Segmenter logic helpers: MRML <-> slicercad core. Imports slicer, never qt; nothing heavy
at package level (``logic`` imports torch only inside the U-Net call)."""
from SlicerCADLib.study import load_study

__all__ = ["load_study"]
