"""The Segment Editor effect "Lesion (click)" at the logic level, on real MRML (slicer-core) with Slicer's
Qt-free ``vtkSlicerSegmentEditorLogic``: the effect's entry point and the panel give voxel-identical masks
for the same click (masking off); editable area, overwrite and undo behave as the editor's logic says;
bad input changes nothing. The effect file itself needs Qt: ``check_slicer_api.py`` checks its
``scriptedEffect`` calls and ``test_slicer_load_imports.py`` its load-time imports."""
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))

from slicercad.errors import GeometryError, InputError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from SlicerCADLib.segmentations import label_array_to_segment, segment_to_label_array  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node  # noqa: E402
from WeakLabelSegmenterLib import effect_logic as fx  # noqa: E402
from WeakLabelSegmenterLib import logic as weak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unet():
    return fx.load_model()


@pytest.fixture(scope="module")
def lesion():
    from slicercad.synth.weak_lesions import generate_weak_lesions

    return generate_weak_lesions(1, 4, "liver_mri", diameter_range=(14.0, 16.0))[0]


def _setup(scene, lesion):
    volume = sitk_to_volume_node(lesion.image, scene, name="MR")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seg")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    sid = seg.GetSegmentation().AddEmptySegment("", "Lesion")
    logic = fx.editor_logic(scene, seg, volume, sid)
    return volume, seg, sid, logic, fx.EditorLogicTarget(logic)


def _prompt(lesion, **kw):
    return fx.ClickPrompt(tuple(lps_to_ras(lesion.center_lps)), lesion.diameter_mm, **kw)


def test_click_gives_the_panels_voxels_and_undo_restores(scene, lesion, unet):
    model, card = unet
    volume, seg, sid, logic, target = _setup(scene, lesion)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    points.AddControlPoint(list(lps_to_ras(lesion.center_lps)), "L1")
    marks = weak.lesion_marks(points, default_diameter_mm=lesion.diameter_mm)
    _node, ids, _ = weak.segment_lesions(volume, marks, seg, model=model, card=card)      # the panel's path
    panel = segment_to_label_array(seg, ids[0], volume)
    assert panel.sum() > 50
    seg.GetDisplayNode().SetSegmentVisibility(ids[0], False)   # masking off, nothing to overwrite that counts
    target.node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    assert target.node.GetMaskMode() == slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere

    click = fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    effect = segment_to_label_array(seg, sid, volume)
    np.testing.assert_array_equal(effect, panel)                 # voxel-identical
    assert click.written_voxels == int(panel.sum())
    assert logic.CanUndo()
    logic.Undo()
    assert segment_to_label_array(seg, sid, volume).sum() == 0   # Undo: back to the empty segment
    np.testing.assert_array_equal(segment_to_label_array(seg, ids[0], volume), panel)

    sphere = fx.click_to_segment(target, _prompt(lesion), "sphere")
    _n, sphere_ids = weak.add_sphere_segments(volume, marks, seg)
    np.testing.assert_array_equal(segment_to_label_array(seg, sid, volume),
                                  segment_to_label_array(seg, sphere_ids[0], volume))
    assert sphere.written_voxels > 0


def test_editable_area_and_overwrite_follow_the_editor(scene, lesion, unet):
    model, card = unet
    volume, seg, sid, logic, target = _setup(scene, lesion)
    reference = fx.compute_click(target.source_image(), _prompt(lesion), "unet", model, card)
    full = reference.labelmap
    # an "Other" segment: a small sphere at the centre (part of the lesion)
    from slicercad.weak.shapes import ellipsoid_label
    import SimpleITK as sitk

    small = sitk.GetArrayFromImage(ellipsoid_label(lesion.image, lesion.center_lps, [0.6 * lesion.diameter_mm]))
    _n, other = label_array_to_segment(small, volume, seg, "Other")
    truth_full = np.zeros_like(small)
    ext = full.GetExtent()
    truth_full[ext[4]:ext[5] + 1, ext[2]:ext[3] + 1, ext[0]:ext[1] + 1] = reference.mask

    # editable area "inside Other": only the intersection is written
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    target.node.SetMaskSegmentID(other)
    fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    np.testing.assert_array_equal(segment_to_label_array(seg, sid, volume), truth_full & small)
    logic.Undo()
    assert segment_to_label_array(seg, sid, volume).sum() == 0

    # editable area "outside all segments": the click itself is not editable -> message, no change
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    with pytest.raises(InputError, match="editable area"):
        fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    assert segment_to_label_array(seg, sid, volume).sum() == 0
    # ... and a result the editor's mask refuses entirely (editable only inside an empty segment) -> message,
    # no change, even when written past the click check
    empty = seg.GetSegmentation().AddEmptySegment("", "Empty")
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    target.node.SetMaskSegmentID(empty)
    refused = fx.compute_click(target.source_image(), _prompt(lesion), "unet", model, card)
    assert not fx.would_change(target, refused)
    logic.ClearUndoState()
    with pytest.raises(InputError, match="nothing was written"):
        fx.commit(target, refused)
    assert not logic.CanUndo()                     # a refused write leaves no undo step
    assert segment_to_label_array(seg, sid, volume).sum() == 0
    seg.GetSegmentation().RemoveSegment(empty)

    # overwrite: "all segments" takes the lesion's voxels from Other, "none" leaves Other alone
    target.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere)
    target.node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    np.testing.assert_array_equal(segment_to_label_array(seg, other, volume), small)
    logic.Undo()
    target.node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
    fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    np.testing.assert_array_equal(segment_to_label_array(seg, other, volume), small & (1 - truth_full))
    np.testing.assert_array_equal(segment_to_label_array(seg, sid, volume), truth_full)
    logic.Undo()
    np.testing.assert_array_equal(segment_to_label_array(seg, other, volume), small)


def test_bad_clicks_change_nothing(scene, lesion, unet):
    model, card = unet
    volume, seg, sid, logic, target = _setup(scene, lesion)
    outside = fx.ClickPrompt((1e4, 1e4, 1e4), 10.0)
    with pytest.raises(GeometryError, match="outside the source volume"):
        fx.click_to_segment(target, outside, "unet", model, card)
    with pytest.raises(InputError, match="> 0 mm"):
        fx.click_to_segment(target, fx.ClickPrompt(_prompt(lesion).center_ras, 0.0), "unet", model, card)
    seg.GetDisplayNode().SetSegmentVisibility(sid, False)
    with pytest.raises(InputError, match="hidden"):
        fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    seg.GetDisplayNode().SetSegmentVisibility(sid, True)
    target.node.SetSelectedSegmentID("")
    with pytest.raises(InputError, match="no segment selected"):
        fx.click_to_segment(target, _prompt(lesion), "unet", model, card)
    target.node.SetSelectedSegmentID(sid)
    # the model returns nothing: a click in the background far from the lesion with a tiny size
    corner = lesion.image.TransformIndexToPhysicalPoint([2, 2, 2])
    with pytest.raises(InputError):
        fx.click_to_segment(target, fx.ClickPrompt(tuple(lps_to_ras(corner)), 3.0), "unet", model, card,
                            threshold=0.999999)
    assert not logic.CanUndo()                                     # nothing was saved, nothing written
    assert segment_to_label_array(seg, sid, volume).sum() == 0
    # coarse grid relative to the lesion -> a spacing warning with the label
    assert fx.spacing_warning(target.source_image(), 8.0) is not None
    assert fx.spacing_warning(target.source_image(), 40.0) is None


def test_preview_is_a_separate_node(scene, lesion):
    volume, seg, sid, logic, target = _setup(scene, lesion)
    click = fx.compute_click(target.source_image(), _prompt(lesion), "sphere")
    preview = fx.show_preview(scene, seg, click.labelmap)
    assert preview is not seg and preview.GetSegmentation().GetNumberOfSegments() == 1
    np.testing.assert_array_equal(segment_to_label_array(preview, "preview", volume).sum(), click.mask.sum())
    assert segment_to_label_array(seg, sid, volume).sum() == 0    # preview never touches the segmentation
    assert fx.show_preview(scene, seg, click.labelmap, preview) is preview
    assert not preview.GetSaveWithScene()                          # never saved with the scene


def test_nothing_new_is_refused_before_the_undo_state(scene, lesion):
    volume, seg, sid, logic, target = _setup(scene, lesion)
    click = fx.compute_click(target.source_image(), _prompt(lesion), "sphere")
    assert fx.would_change(target, click)
    fx.commit(target, click)
    assert logic.CanUndo()
    logic.ClearUndoState()
    again = fx.compute_click(target.source_image(), _prompt(lesion), "sphere")
    assert not fx.would_change(target, again)                      # all already in the segment
    with pytest.raises(InputError, match="nothing was written"):
        fx.commit(target, again)
    assert not logic.CanUndo()
    # editable intensity range that excludes every voxel -> refused, no undo step
    target.node.SetSourceVolumeIntensityMask(True)
    target.node.SetSourceVolumeIntensityMaskRange(1e9, 2e9)
    assert not fx.would_change(target, again, replace=True)
    with pytest.raises(InputError, match="nothing was written"):
        fx.commit(target, again, replace=True)
    assert not logic.CanUndo()


def test_inside_label_and_prompt_copy(scene, lesion):
    volume, seg, sid, logic, target = _setup(scene, lesion)
    prompt = _prompt(lesion)
    click = fx.compute_click(target.source_image(), prompt, "sphere")
    assert fx.inside_label(click, prompt.center_ras, seg)
    # within one diameter of the centre but outside the label: not a correction of this lesion
    near = tuple(np.asarray(prompt.center_ras) + [0.9 * lesion.diameter_mm, 0, 0])
    assert not fx.inside_label(click, near, seg)
    assert not fx.inside_label(None, prompt.center_ras, seg)
    copy = fx.copy_prompt(prompt, diameter_mm=20.0)
    copy.positives_ras.append((0.0, 0.0, 0.0))
    assert prompt.positives_ras == [] and copy.diameter_mm == 20.0 and prompt.diameter_mm == lesion.diameter_mm


EFFECT_FILE = ROOT / "WeakLabelSegmenter" / "WeakLabelSegmenterEffects" / "SegmentEditorLesionClickEffect.py"


def test_effect_class_is_named_as_slicer_looks_it_up():
    """qSlicerSegmentEditorScriptedEffect::setPythonSource: class name = file base name, + "Effect"
    when it does not end with it; the class must be defined in the file or registration fails."""
    import ast

    class_name = EFFECT_FILE.name.split(".")[0]
    if not class_name.endswith("Effect"):
        class_name += "Effect"
    tree = ast.parse(EFFECT_FILE.read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert class_name in classes, f"{EFFECT_FILE.name} must define class {class_name} (has {sorted(classes)})"
    effect = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    methods = {n.name for n in effect.body if isinstance(n, ast.FunctionDef)}
    assert {"referenceGeometryChanged", "sourceVolumeNodeChanged", "deactivate", "cleanup"} <= methods
    module = (ROOT / "WeakLabelSegmenter" / "WeakLabelSegmenter.py").read_text()
    assert "if not instance.setPythonSource(" in module


def test_cleanup_disconnects_every_connection():
    import ast

    tree = ast.parse(EFFECT_FILE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    connects = [c for c in calls if c.func.attr == "connect"]
    disconnects = [c for c in calls if c.func.attr == "disconnect"]
    # every connection goes through self._connections: one connect and one disconnect loop
    assert len(connects) == 1 and len(disconnects) == 1
    assert ast.unparse(connects[0]) == "widget.connect(signal, slot)"
    assert ast.unparse(disconnects[0]) == "widget.disconnect(signal, slot)"


# ------------------------------------------------------------------------- the effect's mouse handling
class _Fake:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _FakeScriptedEffect:
    def __init__(self, editor_node, params):
        self._node, self._params = editor_node, params

    def parameterSetNode(self):
        return self._node

    def parameter(self, name):
        return self._params.get(name, "")

    def doubleParameter(self, name):
        return float(self._params.get(name, 0.0))

    def integerParameter(self, name):
        return int(self._params.get(name, 0))

    def setParameter(self, name, value):
        self._params[name] = value


@pytest.fixture
def effect_module(monkeypatch):
    """The effect file imported with Qt / CTK / the editor's Python package stubbed (Qt-free)."""
    import importlib.util
    import types

    class _Base:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect

    stubs = {"qt": types.ModuleType("qt"), "ctk": types.ModuleType("ctk"),
             "slicer.i18n": types.ModuleType("slicer.i18n"),
             "SegmentEditorEffects": types.ModuleType("SegmentEditorEffects")}
    stubs["slicer.i18n"].tr = lambda text: text
    stubs["SegmentEditorEffects"].AbstractScriptedSegmentEditorEffect = _Base
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "i18n", stubs["slicer.i18n"], raising=False)
    from slicer import util as slicer_util

    monkeypatch.setattr(slicer_util, "showStatusMessage", lambda *a, **k: None, raising=False)
    spec = importlib.util.spec_from_file_location("lesion_click_effect_under_test", EFFECT_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _effect(module, target, method="unet"):
    params = {"Method": method, "DiameterMm": 15.0, "Preview": 1}
    effect = module.SegmentEditorLesionClickEffect.__new__(module.SegmentEditorLesionClickEffect)
    effect.scriptedEffect = _FakeScriptedEffect(target.node, params)
    effect._press = effect._press3d = effect._prompt = effect._click = effect._preview = None
    effect._connections = []
    effect.statusLabel = _Fake(text="")
    effect.runs, effect.applied = [], []
    effect._run = lambda prompt: effect.runs.append(prompt)
    effect.onApply = lambda: effect.applied.append(effect._prompt) or True
    return effect


def test_clicks_corrections_and_drags_on_the_pending_lesion(scene, lesion, effect_module):
    volume, seg, sid, logic, target = _setup(scene, lesion)
    prompt = _prompt(lesion)
    effect = _effect(effect_module, target)
    effect._prompt, effect._click = prompt, fx.compute_click(target.source_image(), prompt, "sphere")
    centre = np.asarray(prompt.center_ras)

    effect.onClick(tuple(centre + [1.0, 0, 0]))                        # inside the preview: a correction
    assert effect.applied == [] and effect.runs[-1].positives_ras == [tuple(centre + [1.0, 0, 0])]
    assert prompt.positives_ras == []                                   # the pending prompt is not touched
    effect.onClick(tuple(centre + [1.0, 0, 0]), diameter=24.0)        # a drag from on the preview: resize
    assert effect.applied == [] and effect.runs[-1].diameter_mm == 24.0
    assert effect.runs[-1].center_ras == prompt.center_ras
    near = tuple(centre + [0.9 * lesion.diameter_mm, 0, 0])             # within a diameter, outside the mask
    effect.onClick(near)
    assert effect.applied == [prompt] and effect.runs[-1].center_ras == near and not effect.runs[-1].positives_ras

    sphere = _effect(effect_module, target, "sphere")
    sphere._prompt, sphere._click = prompt, effect._click
    sphere.onClick(prompt.center_ras)
    sphere.onClick(prompt.center_ras, negative=True)
    assert sphere.runs == [] and "ignores correction" in sphere.statusLabel.text


def test_press_state_is_per_view_and_cleared(scene, lesion, effect_module):
    import vtk

    volume, seg, sid, logic, target = _setup(scene, lesion)
    effect = _effect(effect_module, target)
    clicks = []
    effect.onClick = lambda ras, diameter=None, negative=False: clicks.append((ras, diameter, negative))
    effect.xyToRas = lambda xy, view: (float(xy[0]), float(xy[1]), 0.0)
    red, green = _Fake(className=lambda: "qMRMLSliceWidget"), _Fake(className=lambda: "qMRMLSliceWidget")
    three_d = _Fake(className=lambda: "qMRMLThreeDWidget")

    def event(eid, view, xy=(10, 10), shift=False, alt=False):
        interactor = _Fake(GetEventPosition=lambda: xy, GetShiftKey=lambda: shift, GetControlKey=lambda: False,
                           GetAltKey=lambda: alt)
        return effect.processInteractionEvents(interactor, eid, view)

    C = vtk.vtkCommand
    assert event(C.LeftButtonPressEvent, red) and event(C.LeftButtonReleaseEvent, red)
    assert clicks == [((10.0, 10.0, 0.0), None, False)]
    event(C.LeftButtonPressEvent, red)
    event(C.LeaveEvent, red)                                             # left the view: no click
    assert effect._press is None and not event(C.LeftButtonReleaseEvent, green)
    event(C.LeftButtonPressEvent, red)
    assert not event(C.LeftButtonReleaseEvent, green)                   # released in another view
    event(C.LeftButtonPressEvent, red)
    event(C.LeftButtonReleaseEvent, red, shift=True)                    # became Slicer's own gesture
    assert effect._press is None and len(clicks) == 1
    event(C.LeftButtonPressEvent, red, alt=True)
    event(C.LeftButtonReleaseEvent, red, xy=(30, 10), alt=True)         # a drag: diameter 2 x 20
    assert clicks[-1] == ((10.0, 10.0, 0.0), 40.0, True)
    assert not event(C.LeftButtonPressEvent, three_d) and not event(C.LeftButtonReleaseEvent, three_d)
    assert "slice view" in effect.statusLabel.text and len(clicks) == 2


def test_effect_file_is_installed_and_registered():
    cmake = (ROOT / "WeakLabelSegmenter" / "CMakeLists.txt").read_text()
    assert "${MODULE_NAME}Effects/SegmentEditorLesionClickEffect.py" in cmake
    source = EFFECT_FILE.read_text()
    assert f'scriptedEffect.name = "{fx.EFFECT_NAME}"' in source
    module = (ROOT / "WeakLabelSegmenter" / "WeakLabelSegmenter.py").read_text()
    assert "startupCompleted()" in module and "SegmentEditorLesionClickEffect.py" in module
