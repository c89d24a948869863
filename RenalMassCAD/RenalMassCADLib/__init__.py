"""Renal Mass CAD logic helpers: MRML <-> slicercad core. Imports slicer, never qt; nothing at package level.

The renal logic lives in ``RenalMassCADLib.assess`` (Assess) and ``RenalMassCADLib.training`` (Add to training
set) -- import them explicitly (torch is imported only inside the functions that run a model); the DICOM study
loader is the shared ``SlicerCADLib.study.load_study``."""
