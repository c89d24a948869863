"""Typed errors: every expected failure names the input and what was wrong with it."""
from __future__ import annotations


class SlicerCADError(Exception):
    """Base class. ``source`` names the offending file, field, lesion or row."""

    def __init__(self, message: str, source: str | None = None):
        self.source = None if source is None else str(source)
        super().__init__(f"{self.source}: {message}" if self.source else message)


class DicomError(SlicerCADError):
    """A DICOM file cannot be read or lacks something required."""


class SeriesError(SlicerCADError):
    """A series cannot form a consistent volume (missing slice, mixed orientation...)."""


class GeometryError(SlicerCADError):
    """Coordinates or grids are inconsistent (point outside image, bad direction matrix...)."""


class ImageIOError(SlicerCADError):
    """An image file (NRRD, NIfTI) cannot be read or written."""


class PhaseError(SlicerCADError):
    """Phase assignment is impossible or a required phase is missing."""


class ManifestError(SlicerCADError):
    """A dataset manifest row is invalid."""


class ModelError(SlicerCADError):
    """A model file or card is missing, tampered with, or does not fit the input."""


class InputError(SlicerCADError):
    """A user-supplied value (lesion, diameter, parameter) is out of range."""
