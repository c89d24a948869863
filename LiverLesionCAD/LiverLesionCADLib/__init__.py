"""Liver Lesion CAD logic helpers: MRML <-> slicercad core. Imports slicer, never qt."""
from SlicerCADLib.study import load_study

from .classify import classify_scene, lesions_from_nodes, load_liver_model, phase_images, show_lesion_overlay

__all__ = ["load_study", "classify_scene", "lesions_from_nodes", "load_liver_model", "phase_images",
           "show_lesion_overlay"]
