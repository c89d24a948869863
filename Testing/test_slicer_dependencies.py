"""SlicerCADLib.dependencies: one requirement list (pyproject.toml), passed whole to pip_ensure with its
version specifiers; torch through the PyTorch extension; refusals become DependencyError messages."""
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from SlicerCADLib import dependencies
from SlicerCADLib.dependencies import DependencyError

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT.parent / "shared" / "tools" / "slicer_api_index.json"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


class RecordingPackaging:
    """Stands in for slicer.packaging (slicer-core has none): records what pip_ensure receives."""

    def __init__(self, raises=None):
        self.calls, self.raises = [], raises

    def pip_ensure(self, requirements, constraints=None, skip_packages=None, requester=None, **kwargs):
        self.calls.append({"requirements": [str(r) for r in requirements], "skip": skip_packages,
                           "requester": requester, "constraints": constraints,
                           "pins": Path(constraints).read_text() if constraints else ""})
        if self.raises:
            raise self.raises


def test_pip_ensure_receives_every_pyproject_requirement_with_its_specifier():
    packaging = RecordingPackaging()
    dependencies.ensure_dependencies(requester="Test", packaging=packaging)
    (call,) = packaging.calls
    expected = [str(Requirement(d)) for d in PYPROJECT["project"]["dependencies"]]
    assert call["requirements"] == expected
    assert all(Requirement(r).specifier for r in call["requirements"]), "every requirement carries a version"
    assert {"torch", "numpy", "SimpleITK", "pydicom", "highdicom"} <= set(call["skip"]) and call["requester"] == "Test"


def test_pip_ensure_gets_constraints_holding_slicers_own_packages():
    """--no-deps installs of the newest scikit-learn / matplotlib must not upgrade Slicer's numpy, scipy, ...:
    pip_ensure receives a constraints file pinning each bundled package at the version this Python has."""
    packaging = RecordingPackaging()
    dependencies.ensure_dependencies(requester="Test", packaging=packaging)
    (call,) = packaging.calls
    assert call["constraints"] is not None
    pins = dict(line.split("==") for line in call["pins"].splitlines() if line and not line.startswith("#"))
    for name in ("numpy", "scipy", "SimpleITK", "pydicom", "pillow"):
        assert pins[name] == importlib.metadata.version(name), name
    assert set(pins) <= set(_bundled_pins()), "only Slicer's own packages are held"
    assert dependencies.BUNDLED == ROOT / "Resources" / "slicer-5.12-bundled.txt"
    with pytest.raises(DependencyError, match="reinstall the SlicerCAD extension"):  # never install unconstrained
        dependencies.ensure_dependencies(packaging=RecordingPackaging(), bundled=ROOT / "missing.txt")


def test_too_old_and_missing_are_reported(monkeypatch):
    versions = {"monai": "1.4.0", "scikit-learn": "1.9.1"}
    monkeypatch.setattr(dependencies, "installed_version", versions.get)
    problems = dependencies.unmet([Requirement("monai>=1.6"), Requirement("scikit-learn>=1.6"),
                                   Requirement("safetensors>=0.4")])
    assert problems == ["monai: installed 1.4.0, needs monai>=1.6 (upgrade)",
                        "safetensors: not installed, needs safetensors>=0.4"]


def test_unmet_after_pip_ensure_raises_instead_of_passing(monkeypatch):
    """Testing mode (pip_ensure installs nothing): the caller gets 'dependencies missing', never success."""
    real = dependencies.installed_version
    monkeypatch.setattr(dependencies, "installed_version", lambda n: "1.0.0" if n == "monai" else real(n))
    with pytest.raises(DependencyError, match=r"skipped: dependencies missing \(monai: installed 1.0.0"):
        dependencies.ensure_dependencies(packaging=RecordingPackaging())


def test_declined_install_says_what_to_do(monkeypatch):
    monkeypatch.setattr(dependencies, "installed_version",
                        lambda n: None if n == "safetensors" else "1.6.5" if n == "monai" else "99")
    with pytest.raises(DependencyError, match="not installed .*User declined.*safetensors: not installed"):
        dependencies.ensure_dependencies(packaging=RecordingPackaging(RuntimeError("User declined package "
                                                                                   "installation")))
    with pytest.raises(DependencyError, match="pip exit code 1"):
        dependencies.ensure_dependencies(packaging=RecordingPackaging(subprocess.CalledProcessError(1, "pip")))


def _pyproject_needing_newer_torch(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\ndependencies = ["torch>=99.0"]\n')
    return path


def test_torch_comes_from_the_pytorch_extension_with_the_pyproject_specifier(tmp_path, monkeypatch):
    pyproject = _pyproject_needing_newer_torch(tmp_path)
    asked = []

    class Logic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None):
            asked.append((askConfirmation, torchVersionRequirement))

    fake = type("PyTorchUtils", (), {"PyTorchUtilsLogic": Logic})
    with pytest.raises(DependencyError, match="was not installed"):  # installTorch returns None: declined
        dependencies.ensure_torch(fake, pyproject)
    assert asked == [(True, ">=99.0")]
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # the PyTorch extension is not installed
    with pytest.raises(DependencyError, match="Extensions Manager"):
        dependencies.ensure_torch(None, pyproject)


class FailingLogic:
    """installTorch raising what PyTorchUtils can raise: pip (executePythonModule), import, file errors."""

    error = None

    def installTorch(self, askConfirmation=False, torchVersionRequirement=None):
        raise self.error


@pytest.mark.parametrize("error, says", [
    (subprocess.CalledProcessError(1, "light_the_torch"), "pip exit code 1.*network"),
    (ImportError("No module named 'light_the_torch._patch'"), "could not be installed or imported.*restart Slicer"),
    (OSError(28, "No space left on device"), "disk space"),
])
def test_a_failed_torch_install_is_a_message_not_a_traceback(tmp_path, error, says):
    logic = type("Logic", (FailingLogic,), {"error": error})
    fake = type("PyTorchUtils", (), {"PyTorchUtilsLogic": logic})
    with pytest.raises(DependencyError, match=says) as info:
        dependencies.ensure_torch(fake, _pyproject_needing_newer_torch(tmp_path))
    assert "PyTorch Utils" in str(info.value) and info.value.__cause__ is None


def test_an_old_torch_still_in_memory_says_restart(tmp_path, monkeypatch):
    """The upgrade went to disk but ``import torch`` returns the module already loaded: restart Slicer."""
    old = type("torch", (), {"__version__": "2.1.0+cpu"})
    on_disk = {}

    def install(self, askConfirmation=False, torchVersionRequirement=None):
        on_disk["torch"] = "99.0"  # pip put the new version on disk; the old module stays imported
        return old

    fake = type("PyTorchUtils", (), {"PyTorchUtilsLogic": type("Logic", (), {"installTorch": install})})
    monkeypatch.setattr(dependencies, "installed_version", on_disk.get)
    with pytest.raises(DependencyError, match=r"PyTorch 2.1.0\+cpu is loaded.*restart Slicer"):
        dependencies.ensure_torch(fake, _pyproject_needing_newer_torch(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", old)  # next click: metadata says 99.0 (met), memory holds 2.1.0
    with pytest.raises(DependencyError, match="restart Slicer"):
        dependencies.ensure_torch(fake, _pyproject_needing_newer_torch(tmp_path))


def test_torch_floor_meets_monai_own_floor():
    """skip_packages drops torch from pip's check, so our torch floor must satisfy MONAI's. With skip_packages
    pip installs MONAI ``--no-deps`` at the newest version our specifier admits, so that specifier is capped
    to one minor series (``>=1.6,<1.7``): the installed MONAI (1.6.1 here) is of that series, patch releases
    keep their series' torch floor, and a MONAI 1.7 (which may raise it) is never installed until the cap and
    the torch floor are raised together."""
    ours = dependencies.requirement("torch").specifier
    floor = Version(re.search(r">=\s*([\d.]+)", str(ours)).group(1))
    monai_spec = dependencies.requirement("monai").specifier
    installed = Version(importlib.metadata.version("monai"))
    cap = next(Version(s.version) for s in monai_spec if s.operator == "<")
    assert installed in monai_spec and cap == Version(f"{installed.major}.{installed.minor + 1}"), (
        f"monai{monai_spec} must be capped at the installed MONAI's minor series ({installed})")
    assert not monai_spec.contains("1.7.0") and monai_spec.contains("1.6.9")
    monai_torch = next(Requirement(r) for r in importlib.metadata.requires("monai")
                       if Requirement(r).name == "torch" and Requirement(r).marker is None)
    assert floor in monai_torch.specifier, f"torch{ours} admits versions MONAI rejects ({monai_torch})"


def test_floors_are_versions_that_work():
    reqs = {Requirement(d).name: Requirement(d).specifier for d in PYPROJECT["project"]["dependencies"]}
    assert not reqs["monai"].contains("1.5.9") and reqs["monai"].contains("1.6.0")  # calibration_binning
    assert not reqs["scikit-learn"].contains("1.5.2")  # GroupKFold(shuffle=True)
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"  # pydicom 3
    for name, spec in reqs.items():
        assert spec.contains(importlib.metadata.version(name)), f"the test environment's {name} is outside {spec}"


def test_cmake_installs_the_pyproject_beside_the_modules():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"list\(APPEND SLICERCAD_PACKAGE_RESOURCES pyproject\.toml\)", text)
    assert re.search(r"list\(APPEND SLICERCAD_PACKAGE_RESOURCES Resources/slicer-5\.12-bundled\.txt\)", text)
    assert dependencies.PYPROJECT == ROOT / "pyproject.toml"
    assert "5.12" in text and "5.12" in (ROOT / "README.md").read_text()


def _bundled_pins():
    lines = (ROOT / "Resources" / "slicer-5.12-bundled.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


@pytest.mark.skipif(not INDEX.is_file(), reason="the Slicer API index lives in ../shared/tools")
def test_test_environment_pins_what_slicer_bundles():
    import json

    bundled = {k.lower(): v for k, v in json.loads(INDEX.read_text())["bundled_python_packages"].items()}
    for name, version in _bundled_pins().items():
        assert bundled[name.lower()] == version, f"{name}: pinned {version}, Slicer 5.12 bundles {bundled[name.lower()]}"


def test_installed_versions_are_the_pinned_ones():
    for name, version in _bundled_pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # pinned for when the project uses it
        assert installed == version, f"{name} {installed} is installed; Slicer 5.12 has {version} (make env)"


def test_a_refusal_becomes_a_panel_message_not_a_traceback(monkeypatch):
    import slicer.util

    shown = []
    monkeypatch.setattr(slicer.util, "warningDisplay", lambda text, windowTitle=None: shown.append((windowTitle, text)))
    monkeypatch.setattr(dependencies, "installed_version", lambda n: None if n == "monai" else "99")
    label = type("Label", (), {"text": ""})()
    declined = RecordingPackaging(RuntimeError("User declined package installation"))
    assert dependencies.ready_or_explain("Liver Lesion CAD", label, declined) is False
    assert "monai: not installed" in label.text and shown == [("Liver Lesion CAD", label.text)]
    monkeypatch.setattr(dependencies, "installed_version", lambda n: "1.6.5" if n == "monai" else "99")
    assert dependencies.ready_or_explain("Liver Lesion CAD", label, RecordingPackaging()) is True
