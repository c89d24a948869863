"""Install the core's third-party packages inside Slicer on first use, never at import (Slicer >= 5.12).

One list: ``[project] dependencies`` of the ``pyproject.toml`` installed beside the modules (CMake copies
it), read with ``slicer.packaging.load_pyproject_dependencies`` and passed whole to
``slicer.packaging.pip_ensure``, which asks the user and enforces every version specifier (an old
package is upgraded, not accepted). torch comes from the PyTorch extension (``PyTorchUtils``) with the
same specifier; what Slicer or that extension owns is in ``SKIP_PACKAGES``. Under ``--testing``
nothing is installed and ``DependencyError`` says what is missing, so self tests can skip, not pass.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slicercad.errors import SlicerCADError

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# owned by Slicer (numpy, SimpleITK, pydicom, pyjpegls) or by the PyTorch extension (torch)
SKIP_PACKAGES = ["torch", "numpy", "SimpleITK", "pydicom", "pyjpegls"]
REQUESTER = "SlicerCAD"
PYTORCH_HELP = ("Install the 'PyTorch' extension from the Extensions Manager (View > Extensions Manager), "
                "restart Slicer, and try again.")


class DependencyError(SlicerCADError):
    """A package SlicerCAD needs is missing or too old, and was not (or could not be) installed."""


def requirements(pyproject=PYPROJECT) -> list[Requirement]:
    """Every ``[project] dependencies`` entry of ``pyproject``, with its version specifier."""
    try:
        from slicer.packaging import load_pyproject_dependencies
    except ImportError:  # the slicer-core wheel has no slicer.packaging: same reading, by hand
        import tomllib

        with open(pyproject, "rb") as f:
            return [Requirement(d) for d in tomllib.load(f)["project"].get("dependencies", [])]
    return load_pyproject_dependencies(pyproject)


def requirement(name: str, pyproject=PYPROJECT) -> Requirement:
    """The requirement for distribution ``name``."""
    wanted = canonicalize_name(name)
    return next(r for r in requirements(pyproject) if canonicalize_name(r.name) == wanted)


def installed_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or None."""
    importlib.invalidate_caches()
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet(reqs) -> list[str]:
    """'name: installed X, needs SPEC' (or 'not installed') for each requirement this Python does not meet."""
    problems = []
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = installed_version(req.name)
        if version is None:
            problems.append(f"{req.name}: not installed, needs {req}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: installed {version}, needs {req} (upgrade)")
    return problems


def _testing() -> bool:
    import slicer

    app = getattr(slicer, "app", None)
    return bool(app is not None and hasattr(app, "testingEnabled") and app.testingEnabled())


def ensure_torch(pytorch_utils=None, pyproject=PYPROJECT):
    """Return torch at the pyproject's version, installing it through the PyTorch extension (asking first)."""
    req = requirement("torch", pyproject)
    if not unmet([req]):
        return importlib.import_module("torch")
    if pytorch_utils is None:
        try:
            import PyTorchUtils as pytorch_utils
        except ImportError:
            raise DependencyError(f"SlicerCAD needs PyTorch ({req}) from the PyTorch extension, which is not "
                                  f"installed. {PYTORCH_HELP}") from None
    if _testing():
        raise DependencyError(f"skipped: dependencies missing ({'; '.join(unmet([req]))}); testing mode installs "
                              "nothing")
    torch = pytorch_utils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                           torchVersionRequirement=str(req.specifier))
    if torch is None:
        raise DependencyError(f"PyTorch ({req}) was not installed, so SlicerCAD cannot run its models. Install it "
                              "from the PyTorch Utils module (Utilities > PyTorch Utils) or accept the prompt.")
    still = unmet([req])
    if still:
        raise DependencyError(f"{still[0]}: an older PyTorch is still loaded; restart Slicer and try again.")
    return torch


def ensure_dependencies(requester: str = REQUESTER, packaging=None, pytorch_utils=None, pyproject=PYPROJECT):
    """Make every requirement of ``pyproject`` importable at its version; call from an Apply handler.

    Raises DependencyError with what to install and how when the user declines, pip fails, or (testing
    mode) nothing could be installed."""
    ensure_torch(pytorch_utils, pyproject)
    reqs = requirements(pyproject)
    if packaging is None:
        import slicer.packaging as packaging
    try:
        packaging.pip_ensure(reqs, skip_packages=SKIP_PACKAGES, requester=requester)
    except RuntimeError as exc:  # pip_ensure raises RuntimeError when the user declines
        raise DependencyError(f"{requester} needs these Python packages, which were not installed ({exc}): "
                              f"{'; '.join(unmet(reqs))}. Accept the installation prompt, or install them from "
                              "Slicer's Python console with slicer.packaging.pip_install(...).") from None
    except subprocess.CalledProcessError as exc:
        raise DependencyError(f"installing {requester}'s Python packages failed (pip exit code {exc.returncode}); "
                              "check the network connection and the log (View > Error Log), then try again.") from None
    still = unmet(r for r in reqs if canonicalize_name(r.name) not in {canonicalize_name(s) for s in SKIP_PACKAGES})
    if still:
        raise DependencyError(f"skipped: dependencies missing ({'; '.join(still)})" + (
            "; testing mode installs nothing" if _testing() else "; restart Slicer and try again"))


def ready_or_explain(requester: str, status_label=None, packaging=None) -> bool:
    """``ensure_dependencies`` for a panel button: True when ready; else the message goes into
    ``status_label`` (any object with a ``text`` property) and a warning dialog, and False is returned."""
    try:
        ensure_dependencies(requester, packaging)
        return True
    except DependencyError as exc:
        import slicer.util

        if status_label is not None:
            status_label.text = str(exc)
        slicer.util.warningDisplay(str(exc), windowTitle=requester)
        return False
