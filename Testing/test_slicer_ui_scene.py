"""Every MRML widget of every module's .ui gets the scene the way Slicer's templates do it: a
``mrmlSceneChanged(vtkMRMLScene*)`` -> ``setMRMLScene(vtkMRMLScene*)`` connection from the top
``qMRMLWidget`` (``uiWidget.setMRMLScene(slicer.mrmlScene)`` in setup() then reaches them all). Without
it a qMRMLNodeComboBox or qMRMLSegmentSelectorWidget stays empty forever."""
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted(ROOT.glob("*/Resources/UI/*.ui"))
SCENE_SIGNAL, SCENE_SLOT = "mrmlSceneChanged(vtkMRMLScene*)", "setMRMLScene(vtkMRMLScene*)"


def mrml_widgets_without_scene(path: Path) -> list:
    ui = ET.parse(path).getroot()
    top = ui.find("widget")
    fed = {c.findtext("receiver") for c in ui.iter("connection")
           if c.findtext("sender") == top.get("name") and c.findtext("signal") == SCENE_SIGNAL
           and c.findtext("slot") == SCENE_SLOT}
    return [(w.get("name"), w.get("class")) for w in top.iter("widget")
            if w is not top and w.get("class", "").startswith(("qMRML", "qSlicer")) and w.get("name") not in fed]


def test_there_are_ui_files():
    assert len(UI_FILES) >= 5


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.parent.parent.parent.name)
def test_every_mrml_widget_gets_the_scene(path):
    assert ET.parse(path).getroot().find("widget").get("class") == "qMRMLWidget"
    assert mrml_widgets_without_scene(path) == []
