"""MRML brought up without Slicer: application logic, colour nodes, module logics; Slicer's own inside it."""
import types

import pytest
import slicer

from slicercad.errors import SlicerCADError
from SlicerCADLib.app import MODULE_LOGICS, application_logic, ensure_scene, module_logic


def test_scene_has_logics_colours_and_is_the_global_scene(scene):
    assert slicer.mrmlScene is scene and ensure_scene(scene) is scene and ensure_scene() is scene
    for name, class_name in MODULE_LOGICS.items():
        assert module_logic(name, scene).GetClassName() == class_name
        assert module_logic(name, scene).GetMRMLScene() is scene
    for table in ("Grey", "Iron", "PET-Heat", "Labels"):
        assert scene.GetFirstNodeByName(table) is not None
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert segmentation.GetSegmentation().AddEmptySegment("", "x")  # needs the segmentations logic
    with pytest.raises(SlicerCADError, match="NoSuchModule"):
        module_logic("NoSuchModule", scene)


def test_inside_slicer_nothing_is_created(scene, monkeypatch):
    """With ``slicer.app`` present the application's scene and application logic are used as they are."""
    own_logic = application_logic(scene)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(applicationLogic=lambda: own_logic), raising=False)
    other = slicer.vtkMRMLScene()
    assert ensure_scene() is scene
    assert ensure_scene(other) is other and other.GetNumberOfNodes() == 0  # not brought up a second time
    assert module_logic("Markups") is own_logic.GetModuleLogic("Markups")
