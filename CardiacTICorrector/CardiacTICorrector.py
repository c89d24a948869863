"""Cardiac TI Corrector: Chooses the inversion time that nulls normal myocardium from a TI-scout series (CNN on frames plus inversion-recovery physics).

Thin Slicer module: the panel binds to the parameter node and every line of logic
lives in ``CardiacTICorrectorLib`` (MRML <-> core) and ``slicercad`` (algorithms)."""
import pathlib

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
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

import CardiacTICorrectorLib


class CardiacTICorrector(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cardiac TI Corrector")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "SlicerCAD")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerCAD developers"]
        self.parent.helpText = _("Chooses the inversion time that nulls normal myocardium from a TI-scout series (CNN on frames plus inversion-recovery physics). Research use only.")
        self.parent.acknowledgementText = _("Methods from the SlicerCAD source reports; see the extension README.")


@parameterNodeWrapper
class CardiacTICorrectorParameterNode:
    """Panel state, saved with the scene."""

    dicomFolder: pathlib.Path
    strictGeometry: bool = False


class CardiacTICorrectorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CardiacTICorrector.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CardiacTICorrectorLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
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

    def onLoadStudy(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the DICOM study."), waitCursor=True):
            summary = self.logic.loadStudy(self._parameterNode.dicomFolder, self._parameterNode.strictGeometry)
            self.ui.studyStatusLabel.text = summary


class CardiacTICorrectorLogic(ScriptedLoadableModuleLogic):
    """Delegates to CardiacTICorrectorLib; usable from batch scripts without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return CardiacTICorrectorParameterNode(super().getParameterNode())

    def loadStudy(self, folder, strict=False) -> str:
        """Load every volume of a DICOM folder with its phase assignment; return a summary line."""
        return CardiacTICorrectorLib.load_study(slicer.mrmlScene, folder, strict=strict).summary()


class CardiacTICorrectorTest(ScriptedLoadableModuleTest):
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
        result = CardiacTICorrectorLogic().loadStudy(folder)
        self.assertIn("volume", result)
        self.assertGreater(len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")), 0)
