"""Renal Mass CAD logic helpers: MRML <-> slicercad core. Imports slicer, never qt.

``load_study`` is the shared DICOM study loader; the renal logic lives in ``RenalMassCADLib.assess`` (import
it explicitly: torch is imported only inside its functions that run a model)."""
from SlicerCADLib.study import load_study

__all__ = ["load_study"]
