"""LiverLesionCAD core: multi-phase EOB-MRI lesion ROIs, Gaussian attention, classifier.

No Slicer imports. Coordinates are LPS millimetres unless a ``coordinate_system`` says RAS.
"""
from .phases import PHASES, REFERENCE_PHASE

__all__ = ["PHASES", "REFERENCE_PHASE"]
