"""DICOM fuzzing: mutations of real files (``mutations``), hypothesis strategies (``strategies``),
the targets and crash definition (``targets``), a persistent worker respawned after crashes
(``worker``) and the run with its summary (``runner``). Run it with ``python -m slicercad.fuzz``."""
