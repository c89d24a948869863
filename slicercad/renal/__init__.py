"""RenalMassCAD core (seed 004): small renal mass benign vs malignant on 4-phase CT.

Light at import (constants only): the Slicer panel may import this package at load. Coordinates are
LPS millimetres unless a ``coordinate_system`` says RAS; sizes are millimetres (KiTS23's radiographic
size is in centimetres and is converted where it is read).
"""
from .constants import PHASES, SIZE_LIMIT_MM

__all__ = ["PHASES", "SIZE_LIMIT_MM"]
