"""The extension's layout matches what Slicer's build expects (checked without Slicer)."""
import ast
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["LiverLesionCAD", "CardiacTICorrector", "WeakLabelSegmenter", "RenalMassCAD", "AnomalyCT"]


def test_top_level_cmake_adds_every_module_and_depends_on_pytorch():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"project\(SlicerCAD\)", text)
    assert re.search(r"set\(EXTENSION_DEPENDS\s+PyTorch\)", text)
    for module in MODULES:
        assert f"add_subdirectory({module})" in text


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_every_lib_file(module):
    """Slicer installs only listed files: a Lib file missing from CMakeLists is missing in Slicer."""
    text = (ROOT / module / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in text and "WITH_GENERIC_TESTS" in text
    listed = set(re.findall(r"\$\{MODULE_NAME\}(Lib/[\w/]+\.py)", text))
    present = {f"Lib/{p.relative_to(ROOT / module / (module + 'Lib')).as_posix()}"
               for p in (ROOT / module / f"{module}Lib").rglob("*.py")}
    assert present == listed, f"{module}/CMakeLists.txt lists {sorted(listed)} but the folder has {sorted(present)}"


@pytest.mark.parametrize("module", MODULES)
def test_module_file_has_template_classes(module):
    tree = ast.parse((ROOT / module / f"{module}.py").read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {module, f"{module}ParameterNode", f"{module}Widget", f"{module}Logic", f"{module}Test"} <= classes


@pytest.mark.parametrize("module", MODULES)
def test_module_icon_is_128_png(module):
    data = (ROOT / module / "Resources" / "Icons" / f"{module}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_core_never_imports_slicer_or_qt():
    bad = []
    for path in (ROOT / "slicercad").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad += [f"{path}: {n}" for n in names if n.split(".")[0] in {"slicer", "qt", "ctk", "SlicerCADLib"}]
    assert not bad


def test_mrml_layers_never_import_qt():
    bad = []
    for path in list((ROOT / "SlicerCADLib").rglob("*.py")) + list(ROOT.glob("*/*Lib/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad += [f"{path}: {n}" for n in names if n.split(".")[0] in {"qt", "ctk"}]
    assert not bad

