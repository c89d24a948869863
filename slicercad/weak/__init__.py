"""Weak labels from a centre and a size (seed 001 part 1): sphere / ellipsoid labels, a semi-automatic
3D U-Net on a lesion-sized canonical crop, classical baselines from the same click, RT dose as a label.

Light at import: the submodules ``shapes``, ``crop``, ``baselines`` and ``rtdose`` need only numpy,
SimpleITK and pydicom; ``model``, ``task``, ``segment``, ``experiment`` import torch / MONAI."""
