"""Liver Lesion CAD: Benign vs malignant liver lesion classification on multi-phase EOB-MRI/CT with a lesion-sized Gaussian attention map and Grad-CAM.

Thin Slicer module: the panel binds to the parameter node and every line of logic
lives in ``LiverLesionCADLib`` (MRML <-> core) and ``slicercad`` (algorithms)."""
import pathlib
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

import LiverLesionCADLib


class LiverLesionCAD(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Liver Lesion CAD")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "SlicerCAD")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerCAD developers"]
        self.parent.helpText = _("Benign vs malignant liver lesion classification on multi-phase EOB-MRI/CT with a lesion-sized Gaussian attention map and Grad-CAM. Research use only.")
        self.parent.acknowledgementText = _("Methods from the SlicerCAD source reports; see the extension README.")


@parameterNodeWrapper
class LiverLesionCADParameterNode:
    """Panel state, saved with the scene."""

    dicomFolder: pathlib.Path
    strictGeometry: bool = False
    t1Pre: slicer.vtkMRMLScalarVolumeNode
    arterial: slicer.vtkMRMLScalarVolumeNode
    portal: slicer.vtkMRMLScalarVolumeNode
    transitional: slicer.vtkMRMLScalarVolumeNode
    hepatobiliary: slicer.vtkMRMLScalarVolumeNode
    t2: slicer.vtkMRMLScalarVolumeNode
    dwi: slicer.vtkMRMLScalarVolumeNode
    adc: slicer.vtkMRMLScalarVolumeNode
    lesionPoints: slicer.vtkMRMLMarkupsFiducialNode
    lesionLines: slicer.vtkMRMLMarkupsLineNode
    modelPath: pathlib.Path
    device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"
    alpha: Annotated[float, WithinRange(0.0, 1.0)] = 0.1
    overrideAlpha: bool = False
    overlay: Annotated[str, Choice(["Grad-CAM", "Attention"])] = "Grad-CAM"
    resultsTable: slicer.vtkMRMLTableNode


# parameter-node field -> core phase name
PHASE_FIELDS = {"t1Pre": "t1_pre", "arterial": "arterial", "portal": "portal", "transitional": "transitional",
                "hepatobiliary": "hepatobiliary", "t2": "t2", "dwi": "dwi", "adc": "adc"}


class LiverLesionCADWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LiverLesionCAD.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LiverLesionCADLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
        self.ui.classifyButton.connect("clicked(bool)", self.onClassify)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        folder = self._parameterNode.dicomFolder if self._parameterNode else None
        self.ui.loadStudyButton.enabled = bool(folder and str(folder) not in ("", "."))
        p = self._parameterNode
        ready = bool(p and p.hepatobiliary and p.lesionPoints and p.modelPath and str(p.modelPath) not in ("", "."))
        self.ui.classifyButton.enabled = ready
        self.ui.classifyButton.toolTip = _("Classify every lesion in the list.") if ready else _(
            "Select the phases, the lesion centres and diameters, and a model card.")

    def onLoadStudy(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the DICOM study."), waitCursor=True):
            summary = self.logic.loadStudy(self._parameterNode.dicomFolder, self._parameterNode.strictGeometry)
            self.ui.studyStatusLabel.text = summary

    def onClassify(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Classification failed."), waitCursor=True):
            message = self.logic.classify(self._parameterNode)
            self.ui.classifyStatusLabel.text = message


class LiverLesionCADLogic(ScriptedLoadableModuleLogic):
    """Delegates to LiverLesionCADLib; usable from batch scripts without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return LiverLesionCADParameterNode(super().getParameterNode())

    def loadStudy(self, folder, strict=False) -> str:
        """Load every volume of a DICOM folder with its phase assignment; return a summary line."""
        return LiverLesionCADLib.load_study(slicer.mrmlScene, folder, strict=strict).summary()

    def classify(self, parameterNode) -> str:
        """Classify every marked lesion; append rows to the results table, show the overlay, return a summary."""
        from LiverLesionCADLib.classify import classify_scene, lesions_from_nodes, load_liver_model

        p = parameterNode
        model, card = load_liver_model(p.modelPath, p.device)
        volumes = {phase: getattr(p, field) for field, phase in PHASE_FIELDS.items() if getattr(p, field)}
        lesions = lesions_from_nodes(p.lesionPoints, p.lesionLines)
        alpha = p.alpha if p.overrideAlpha else "card"
        overlay = "cam" if p.overlay == "Grad-CAM" else "attention"
        results, table, _node = classify_scene(model, card, volumes, lesions, p.resultsTable, overlay=overlay,
                                               alpha=alpha, device=card["device"])
        p.resultsTable = table
        lines = [f"{r['lesion_id']}: {r['predicted_class']} ({max(r['probabilities'].values()):.2f})"
                 + (f" - {'; '.join(r['warnings'])}" if r["warnings"] else "") for r in results]
        notice = results[0]["notice"] if results else ""
        return "\n".join(lines + ([notice] if notice else []))


class LiverLesionCADTest(ScriptedLoadableModuleTest):
    """In-Slicer self test: a synthetic DICOM study loads with its phases."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_load_synthetic_study()

    def test_load_synthetic_study(self):
        import tempfile

        from slicercad.synth.study import write_phantom_study

        folder = pathlib.Path(tempfile.mkdtemp())
        write_phantom_study(folder, kind="liver_mri", seed=0)
        result = LiverLesionCADLogic().loadStudy(folder)
        self.assertIn("volume", result)
        self.assertGreater(len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")), 0)
