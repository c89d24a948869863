"""Renal Mass CAD logic helpers: MRML <-> slicercad core. Imports slicer, never qt.

``load_study`` is the shared DICOM study loader; the renal logic lives in ``RenalMassCADLib.assess`` (Assess) and
``RenalMassCADLib.training`` (Add to training set) -- import them explicitly: torch is imported only inside the
functions that run a model)."""
from SlicerCADLib.study import load_study

__all__ = ["load_study"]
