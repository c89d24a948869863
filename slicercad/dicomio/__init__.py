"""Results as DICOM and the PACS: SEG (``seg``), Parametric Map (``pmap``), TID 1500 SR (``sr``), the coded
terminology and algorithm identification they share (``terms``), source-series handling (``sources``) and
the PACS clients over DICOMweb and DIMSE (``pacs``). Nothing is imported at package level: highdicom and
dicomweb-client are Slicer 5.12's own, pynetdicom is imported inside the functions that need it."""
