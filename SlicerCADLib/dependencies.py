"""Install the core's third-party packages inside Slicer on first use, never at import (Slicer >= 5.12).

One list: ``[project] dependencies`` of the ``pyproject.toml`` installed beside the modules (CMake copies
it), read with ``slicer.packaging.load_pyproject_dependencies`` and passed whole to
``slicer.packaging.pip_ensure``, which asks the user and enforces every version specifier (an old
package is upgraded, not accepted). torch comes from the PyTorch extension (``PyTorchUtils``) with the
same specifier; what Slicer or that extension owns is in ``SKIP_PACKAGES``. Under ``--testing``
nothing is installed and ``DependencyError`` says what is missing, so self tests can skip, not pass.

Slicer's own packages are never upgraded (or downgraded) by these installs: ``pip_ensure`` gets a
constraints file (``constraints_file``) pinning every package Slicer bundles that SlicerCAD touches
(the names of ``Resources/slicer-5.12-bundled.txt``, installed beside the modules by CMake) at the
version the running Slicer has. With ``skip_packages`` each package is installed ``--no-deps`` at the
newest version meeting its specifier, so the constraints stop a newer scikit-learn or matplotlib from
pulling a newer scipy/numpy/pillow into Slicer's Python; MONAI is capped in ``pyproject.toml``
because our torch floor (given to the PyTorch extension, outside pip's check) must meet its torch floor.
"""
from __future__ import annotations

import importlib
import logging
import importlib.metadata
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slicercad.errors import SlicerCADError

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# what Slicer 5.12 bundles (name==version lines); CMake installs it beside the modules like the pyproject
BUNDLED = Path(__file__).resolve().parents[1] / "Resources" / "slicer-5.12-bundled.txt"
# owned by Slicer (numpy, SimpleITK, pydicom, pyjpegls, highdicom) or by the PyTorch extension (torch)
SKIP_PACKAGES = ["torch", "numpy", "SimpleITK", "pydicom", "pyjpegls", "highdicom"]
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
        try:
            import tomllib  # Python >= 3.11 (Slicer 5.12 runs 3.12)
        except ImportError:
            try:
                import tomli as tomllib
            except ImportError:
                raise DependencyError(f"reading {pyproject} needs Python 3.11 or later, or the 'tomli' "
                                      "package (pip install tomli)") from None

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


def bundled_names(bundled=BUNDLED) -> list[str]:
    """Distribution names of the ``name==version`` lines of ``bundled`` (comments and blanks left out)."""
    try:
        lines = Path(bundled).read_text(encoding="utf-8").splitlines()
    except OSError:
        raise DependencyError(f"{bundled} is missing, so SlicerCAD cannot keep Slicer's own Python packages at "
                              "their versions while installing; reinstall the SlicerCAD extension.") from None
    return [line.split("==")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def constraints_file(bundled=BUNDLED, directory=None) -> Path | None:
    """A pip constraints file pinning each package of ``bundled`` at the version this Python has (Slicer's
    own, whatever the Slicer version), so no install upgrades or downgrades them; None when none is installed.
    Written into ``directory`` (default: Slicer's temporary folder, else the system's)."""
    pins = [f"{name}=={version}" for name in bundled_names(bundled)
            if (version := installed_version(name)) is not None]
    if not pins:
        return None
    if directory is None:
        import tempfile

        import slicer

        app = getattr(slicer, "app", None)
        directory = getattr(app, "temporaryPath", None) or tempfile.gettempdir()
    path = Path(directory) / "SlicerCAD-constraints.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Slicer's own packages at the versions this Slicer has (SlicerCADLib.dependencies)\n"
                    + "\n".join(pins) + "\n", encoding="utf-8")
    return path


def _testing() -> bool:
    import slicer

    app = getattr(slicer, "app", None)
    return bool(app is not None and hasattr(app, "testingEnabled") and app.testingEnabled())


def _loaded_torch_problem(torch, req) -> str | None:
    """Why the torch module in memory does not meet ``req`` (an older one imported before an upgrade), or None."""
    loaded = str(getattr(torch, "__version__", "") or "")
    if loaded and not req.specifier.contains(loaded.split("+")[0], prereleases=True):
        return (f"PyTorch {loaded} is loaded in this Slicer session but SlicerCAD needs {req}; the new version is "
                "used only after a restart: restart Slicer and try again.")
    return None


def ensure_torch(pytorch_utils=None, pyproject=PYPROJECT):
    """Return torch at the pyproject's version, installing it through the PyTorch extension (asking first).

    Raises DependencyError saying what to do when the PyTorch extension is missing, the user declines, the
    installation fails (pip error, download or file error) or an older torch is still loaded (restart)."""
    req = requirement("torch", pyproject)
    if not unmet([req]):
        torch = importlib.import_module("torch")
        problem = _loaded_torch_problem(torch, req)
        if problem:
            raise DependencyError(problem)
        return torch
    if pytorch_utils is None:
        try:
            import PyTorchUtils as pytorch_utils
        except ImportError:
            raise DependencyError(f"SlicerCAD needs PyTorch ({req}) from the PyTorch extension, which is not "
                                  f"installed. {PYTORCH_HELP}") from None
    if _testing():
        raise DependencyError(f"skipped: dependencies missing ({'; '.join(unmet([req]))}); testing mode installs "
                              "nothing")
    manual = ("install it from the PyTorch Utils module (Utilities > PyTorch Utils), restart Slicer, and try "
              "again")
    try:
        torch = pytorch_utils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                               torchVersionRequirement=str(req.specifier))
    except subprocess.CalledProcessError as exc:
        raise DependencyError(f"installing PyTorch ({req}) failed (pip exit code {exc.returncode}); check the "
                              f"network connection and the log (View > Error Log), or {manual}.") from None
    except ImportError as exc:
        raise DependencyError(f"PyTorch ({req}) could not be installed or imported ({exc}); restart Slicer and "
                              f"try again, or {manual}.") from None
    except OSError as exc:
        raise DependencyError(f"installing PyTorch ({req}) failed ({exc}); check the free disk space and that "
                              f"Slicer's folder is writable, or {manual}.") from None
    if torch is None:
        raise DependencyError(f"PyTorch ({req}) was not installed, so SlicerCAD cannot run its models. Install it "
                              "from the PyTorch Utils module (Utilities > PyTorch Utils) or accept the prompt.")
    problem = _loaded_torch_problem(torch, req)
    if problem:
        raise DependencyError(problem)
    still = unmet([req])
    if still:
        raise DependencyError(f"{still[0]}: the PyTorch installation did not provide it; {manual}.")
    return torch


def ensure_dependencies(requester: str = REQUESTER, packaging=None, pytorch_utils=None, pyproject=PYPROJECT,
                        bundled=BUNDLED):
    """Make every requirement of ``pyproject`` importable at its version; call from an Apply handler.
    Slicer's bundled packages (``bundled``) are held at their versions by a constraints file.

    Raises DependencyError with what to install and how when the user declines, pip fails, or (testing
    mode) nothing could be installed."""
    ensure_torch(pytorch_utils, pyproject)
    reqs = requirements(pyproject)
    if packaging is None:
        import slicer.packaging as packaging
    constraints = constraints_file(bundled)
    try:
        packaging.pip_ensure(reqs, constraints=constraints, skip_packages=SKIP_PACKAGES, requester=requester)
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
    ``status_label`` (any object with a ``text`` property) and a warning dialog, and False is returned.
    A check that itself fails (e.g. a broken pip) is logged and shown as an error, never a traceback."""
    import slicer.util

    try:
        ensure_dependencies(requester, packaging)
        return True
    except DependencyError as exc:
        if status_label is not None:
            status_label.text = str(exc)
        slicer.util.warningDisplay(str(exc), windowTitle=requester)
    except Exception as exc:  # noqa: BLE001 - any failure of the check becomes a message in the panel
        logging.exception("%s: dependency check failed", requester)
        if status_label is not None:
            status_label.text = f"Could not check SlicerCAD's Python packages: {exc}"
        slicer.util.errorDisplay(f"Could not check SlicerCAD's Python packages: {exc}", windowTitle=requester)
    return False
