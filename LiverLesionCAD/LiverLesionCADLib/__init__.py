"""Liver Lesion CAD logic helpers: MRML <-> slicercad core. Imports slicer, never qt.

Import the submodules themselves: this package imports nothing, so loading the module in a fresh
Slicer (before torch and MONAI are installed) stays light."""
