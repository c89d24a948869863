"""The LiverLesionCAD panel's lesion logic against real MRML (slicer-core, no Qt): one diameter line per
lesion, the events the lesion list follows, 'Add to training set' refusing an unnamed lesion, the
overlays kept out of the phase selectors, and the phase strip leaving the scene's nodes alone."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib import workflow  # noqa: E402
from LiverLesionCADLib.phase_nodes import phase_strip_rgb  # noqa: E402
from slicercad.errors import InputError  # noqa: E402
from slicercad.liver.roi import Lesion  # noqa: E402
from SlicerCADLib.markups import POINT_EVENTS  # noqa: E402
from SlicerCADLib.overlays import show_float_overlay  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node  # noqa: E402

SECRET = b"site-secret-for-tests-0123456789"
CENTRES = {"L1": [10.0, 20.0, 30.0], "L2": [-40.0, 0.0, 5.0], "L3": [0.0, -50.0, -10.0]}
DIAMETERS = {"L1": 9.0, "L2": 15.0, "L3": 23.0}


def panel(points=None, **values):
    fields = dict(lesionPoints=points, phaseOffsets="", modelPath=Path(), datasetFolder=Path(),
                  label="metastasis", annotator="", **{f: None for f in workflow.PHASE_FIELDS})
    fields.update(values)
    return SimpleNamespace(**fields)


def add_line(scene, name, centre, length, axis=0):
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    half = np.eye(3)[axis] * length / 2
    line.AddControlPoint((np.array(centre) - half).tolist())
    line.AddControlPoint((np.array(centre) + half).tolist())
    return line


@pytest.fixture
def marked(scene):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    for name, ras in CENTRES.items():
        points.AddControlPoint(ras, name)
    for axis, name in enumerate(CENTRES):
        add_line(scene, f"{name} diameter", np.array(CENTRES[name]) + [1.0, 0.0, 0.0], DIAMETERS[name], axis)
    return points


def test_every_line_in_the_scene_gives_its_lesion_a_diameter(scene, marked):
    p = panel(marked)
    lesions = workflow.panel_lesions(p)
    assert {x.lesion_id: x.diameter_mm for x in lesions} == pytest.approx(DIAMETERS)
    assert workflow.lesion_names(p) == list(CENTRES)
    add_line(scene, "L2 longer", CENTRES["L2"], 18.0, axis=2)           # the longest line at a point wins
    lone = add_line(scene, "lone", [200.0, 200.0, 0.0], 12.0)           # far from every point: its own lesion
    placing = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "placing")
    placing.AddControlPoint([0.0, 0.0, 0.0])                           # being placed: left out
    by_name = {x.lesion_id: x.diameter_mm for x in workflow.panel_lesions(p)}
    assert by_name == pytest.approx(dict(DIAMETERS, L2=18.0, lone=12.0))
    assert workflow.lesion_names(p) == [*CENTRES, "lone"]
    lone.SetNthControlPointPosition(1, 200.0, 200.0, 0.0)
    lone.SetNthControlPointPosition(0, 200.0, 200.0, 0.0)              # zero length: Classify names it
    assert workflow.lesion_names(p) == []
    with pytest.raises(InputError) as info:
        workflow.panel_lesions(p)
    assert info.value.source == "lone"
    assert workflow.lesion_names(panel(None)) == []


def test_the_lesion_list_follows_placed_moved_renamed_and_deleted_points(scene):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    seen = []
    for event in POINT_EVENTS:
        points.AddObserver(event, lambda caller, _name, event=event: seen.append(event))
    points.AddControlPoint([1.0, 2.0, 3.0], "L1")
    assert POINT_EVENTS[0] in seen
    for change in (lambda: points.SetNthControlPointPosition(0, 4.0, 5.0, 6.0),
                   lambda: points.SetNthControlPointLabel(0, "renamed")):
        seen.clear()
        change()
        assert POINT_EVENTS[1] in seen
    seen.clear()
    points.RemoveNthControlPoint(0)
    assert POINT_EVENTS[2] in seen


def test_add_to_training_set_refuses_an_unnamed_lesion(scene, marked, tmp_path):
    p = panel(marked, datasetFolder=tmp_path / "ds", annotator="reader-1")
    for name in ("", "  "):
        with pytest.raises(InputError, match="choose a lesion") as info:
            workflow.add_panel_lesion(p, name, SECRET, {})
        assert info.value.source == workflow.LESION_FIELD
    assert not (tmp_path / "ds").exists()


def test_overlays_are_not_offered_as_phases(scene):
    image = sitk.Image(8, 8, 4, sitk.sitkFloat32)
    phase = sitk_to_volume_node(image, scene, name="T2")
    overlay = show_float_overlay(np.zeros((4, 8, 8), np.float32), phase, "LiverLesionCAD attention")
    assert workflow.overlay_node_ids(scene) == [overlay.GetID()]


def test_phase_strip_adds_no_node_to_the_scene(scene):
    k, j, i = np.indices((12, 40, 40))
    image = sitk.GetImageFromArray((i + j + k).astype(np.float32))
    volumes = {phase: sitk_to_volume_node(image, scene, name=phase) for phase in ("arterial", "hepatobiliary")}
    before = scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"), scene.GetNumberOfNodes()
    lesion = Lesion("L1", (-20.0, -20.0, 6.0), 10.0, "LPS")
    strip = phase_strip_rgb(volumes, lesion, size_px=32)
    assert strip.shape[0] == 32 and strip.any()
    assert (scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"), scene.GetNumberOfNodes()) == before


@pytest.mark.parametrize("agent, warned", [("Gd-EOB-DTPA (gadoxetate)", False), ("gadobutrol (Gadovist)", True),
                                           (None, True)])
def test_filling_phases_warns_when_the_agent_is_not_gadoxetate(scene, tmp_path, agent, warned):
    """A ~20-min volume after an extracellular agent shows no hepatocyte uptake: the panel says so."""
    import pydicom

    from slicercad.synth.study import write_phantom_study
    from SlicerCADLib.study import load_study

    write_phantom_study(tmp_path, "liver_mri", seed=1)
    for path in tmp_path.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        if "ContrastBolusAgent" in ds:
            if agent is None:
                del ds.ContrastBolusAgent
            else:
                ds.ContrastBolusAgent = agent
            ds.save_as(path)
    load_study(scene, tmp_path)
    summary = workflow.fill_phases(scene, panel())
    assert ("Warning: contrast agent" in summary) is warned, summary


def test_a_stored_result_is_only_for_the_lesion_as_it_was_classified(scene, marked):
    """"Add to training set" exports the stored prediction only while the lesion is where it was classified:
    a moved point, a changed offset or another points node (the next patient's "L1") finds none."""
    p = panel(marked)
    stored = {}
    for lesion in workflow.panel_lesions(p):
        stored[workflow.result_key(p, lesion)] = {"lesion_id": lesion.lesion_id}
    l1 = workflow.pick_lesion(workflow.panel_lesions(p), "L1")
    assert workflow.stored_result(p, l1, stored) == {"lesion_id": "L1"}
    marked.SetNthControlPointPosition(0, 12.0, 20.0, 30.0)             # L1's point moved by 2 mm
    moved = workflow.pick_lesion(workflow.panel_lesions(p), "L1")
    assert workflow.stored_result(p, moved, stored) is None
    assert workflow.stored_result(p, workflow.pick_lesion(workflow.panel_lesions(p), "L2"), stored) is not None
    marked.SetNthControlPointPosition(0, *CENTRES["L1"])
    p.phaseOffsets = workflow.with_offset("", "L1", "T2", (0.0, 3.0, 0.0))
    assert workflow.stored_result(p, workflow.pick_lesion(workflow.panel_lesions(p), "L1"), stored) is None
    p.phaseOffsets = ""
    assert workflow.stored_result(p, workflow.pick_lesion(workflow.panel_lesions(p), "L1"), stored) is not None
    other = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Next patient")  # same names, same places
    for name, ras in CENTRES.items():
        other.AddControlPoint(ras, name)
    q = panel(other)
    assert workflow.stored_result(q, workflow.pick_lesion(workflow.panel_lesions(q), "L1"), stored) is None
