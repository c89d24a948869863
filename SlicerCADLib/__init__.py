"""MRML bridge shared by the SlicerCAD modules: imports slicer (Slicer or the slicer-core wheel), never qt."""
