"""Bring up MRML without the Slicer application, or use Slicer's own when it is running.

With the ``slicer-core`` wheel a bare ``vtkMRMLScene`` lacks the application logic, the colour
nodes and the module logics that segmentations, markups and volumes rely on. ``ensure_scene``
creates them once per scene (as KitwareMedical/trame-slicer does) and sets ``slicer.mrmlScene``.
Inside Slicer (``slicer.app`` exists) nothing is created: Slicer's scene and logics are used.
"""
from __future__ import annotations

import slicer
from vtkmodules.vtkCommonCore import vtkCollection

from slicercad.errors import SlicerCADError

# Slicer's module names, as ``vtkSlicerApplicationLogic.GetModuleLogic`` knows them.
MODULE_LOGICS = {
    "Volumes": "vtkSlicerVolumesLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Tables": "vtkSlicerTablesLogic",
}

# scene -> {"app": vtkSlicerApplicationLogic, "logics": {name: logic}}; holds the Python references
# so the logics live as long as the scene is in use.
_BROUGHT_UP: dict = {}


def in_slicer() -> bool:
    """True inside the Slicer application (``slicer.app`` is set), False with slicer-core alone."""
    return getattr(slicer, "app", None) is not None


def ensure_scene(scene=None):
    """Return a scene with application logic and module logics registered; set ``slicer.mrmlScene``.

    ``scene=None`` reuses ``slicer.mrmlScene`` when set, else creates a new ``vtkMRMLScene``.
    Inside Slicer the application's own scene is returned unless another one is passed.
    """
    if in_slicer():
        return scene if scene is not None else slicer.mrmlScene
    if scene is None:
        scene = getattr(slicer, "mrmlScene", None) or slicer.vtkMRMLScene()
    if scene not in _BROUGHT_UP:
        _BROUGHT_UP[scene] = _bring_up(scene)
    slicer.mrmlScene = scene
    return scene


def _bring_up(scene) -> dict:
    """Application logic with default colour nodes plus the module logics, registered on ``scene``."""
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)

    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetSliceLogics(vtkCollection())
    app.SetViewLogics(vtkCollection())
    app.SetModuleLogic("Colors", colors)

    logics = {"Colors": colors}
    for name, class_name in MODULE_LOGICS.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    return {"app": app, "logics": logics}


def application_logic(scene=None):
    """The ``vtkSlicerApplicationLogic`` serving ``scene`` (Slicer's own inside Slicer)."""
    if in_slicer():
        return slicer.app.applicationLogic()
    return _BROUGHT_UP[ensure_scene(scene)]["app"]


def module_logic(name: str, scene=None):
    """A registered module logic by Slicer module name ('Segmentations', 'Markups', 'Volumes', ...)."""
    logic = application_logic(scene).GetModuleLogic(name)
    if logic is None:
        raise SlicerCADError(f"module logic {name!r} is not registered; known: "
                             f"{['Colors', *MODULE_LOGICS]}", "ensure_scene")
    return logic


def close_scene(scene) -> None:
    """Clear a scene brought up by ``ensure_scene`` and drop its logics (plain-Python use only)."""
    scene.Clear(1)
    _BROUGHT_UP.pop(scene, None)  # the logics go with their last reference
    if getattr(slicer, "mrmlScene", None) is scene and not in_slicer():
        slicer.mrmlScene = None
