"""Lesion class presets of the liver models (light: the Slicer panel reads them at load, before torch)."""
from __future__ import annotations

from ..errors import InputError

PRESETS = {
    "report": ("cyst", "hemangioma", "metastasis"),                    # seed 000's three classes
    "extended": ("cyst", "hemangioma", "metastasis", "hcc", "fnh"),
}


def preset_classes(name: str) -> tuple:
    """Class names of a preset ('report' or 'extended')."""
    if name not in PRESETS:
        raise InputError(f"class preset must be one of {sorted(PRESETS)}, got {name!r}", "classes")
    return PRESETS[name]
