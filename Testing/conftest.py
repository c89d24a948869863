"""Shared pytest fixtures: a fresh MRML scene brought up the way SlicerCADLib expects, test grids."""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def scene():
    """A new ``vtkMRMLScene`` with application logic and module logics; ``slicer.mrmlScene`` is set."""
    import slicer

    from SlicerCADLib.app import close_scene, ensure_scene

    mrml_scene = ensure_scene(slicer.vtkMRMLScene())
    yield mrml_scene
    close_scene(mrml_scene)


def oblique_direction(angles_deg=(20.0, -35.0, 50.0)) -> np.ndarray:
    """A proper rotation (det +1) about x, then y, then z; no axis is aligned with LPS."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def oblique_image():
    """Factory: an oblique, anisotropic float32 image (LPS) with distinct voxel values."""

    def make(size=(20, 16, 12), spacing=(0.8, 1.3, 2.7), origin=(-31.5, 12.25, 40.0), seed=0):
        rng = np.random.default_rng(seed)
        array = rng.normal(100.0, 30.0, size=size[::-1]).astype(np.float32)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(oblique_direction().ravel().tolist())
        return image

    return make
