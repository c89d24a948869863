"""Install the core's third-party packages inside Slicer on first use — never at import.

torch comes from the PyTorch extension (``PyTorchUtils``), never from pip over Slicer's
own; SimpleITK ships with Slicer and is never reinstalled.
"""
from __future__ import annotations

import importlib.util

# distribution requirement -> import name (keep in step with pyproject.toml)
REQUIREMENTS = {
    "monai>=1.4": "monai",
    "safetensors>=0.4": "safetensors",
    "scikit-learn>=1.3": "sklearn",
    "pydicom>=3.0": "pydicom",
    "pylibjpeg>=2.0": "pylibjpeg",
    "pylibjpeg-openjpeg>=2.3": "openjpeg",
    "matplotlib>=3.7": "matplotlib",
    "psutil>=5.9": "psutil",
}
SKIP_PACKAGES = ["SimpleITK", "torch", "numpy"]


def missing_requirements() -> list[str]:
    """Requirements whose import name is not importable in this Python."""
    return [req for req, name in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]


def ensure_torch():
    """Return the torch module, installing it through the PyTorch extension when absent."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch
    try:
        import PyTorchUtils
    except ImportError as exc:
        raise RuntimeError("SlicerCAD needs the PyTorch extension: install 'PyTorch' from the Extensions Manager.") from exc
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True)
    if torch is None:
        raise RuntimeError("PyTorch was not installed; SlicerCAD cannot run its models without it.")
    return torch


def ensure_dependencies(requester: str = "SlicerCAD") -> None:
    """Install what is missing (asking the user first inside Slicer); call from an Apply handler."""
    ensure_torch()
    missing = missing_requirements()
    if not missing:
        return
    import slicer

    try:
        from packaging.requirements import Requirement
        from slicer.packaging import pip_ensure  # Slicer >= 5.12
    except ImportError:
        slicer.util.pip_install(" ".join(f'"{r}"' for r in missing))
        return
    pip_ensure([Requirement(r) for r in missing], skip_packages=SKIP_PACKAGES, requester=requester)
