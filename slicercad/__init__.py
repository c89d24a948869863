"""SlicerCAD core: algorithms usable without Slicer (no slicer/qt imports anywhere here)."""
__version__ = "0.1.0"
