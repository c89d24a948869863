"""Liver Lesion CAD: Benign vs malignant liver lesion classification on multi-phase EOB-MRI/CT with a lesion-sized Gaussian attention map and Grad-CAM.

Thin Slicer module: the panel binds to the parameter node and every line of logic
lives in ``LiverLesionCADLib`` (MRML <-> core) and ``slicercad`` (algorithms)."""
import pathlib
import tempfile
from typing import Annotated

import qt
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

from LiverLesionCADLib import workflow
from SlicerCADLib import dependencies, train_job
from SlicerCADLib.dicom_results import default_results_folder, written_summary
from SlicerCADLib.markups import POINT_EVENTS
from SlicerCADLib.study import load_study
from slicercad.liver.phases import PHASES, REFERENCE_PHASE

STRIP_PNG_NAME = "LiverLesionCAD_phases.png"  # in Slicer's own temporary folder (per user), see stripPath
TRAIN_POLL_MS = 500


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
    """Panel state, saved with the scene (the site secret is deliberately not part of it)."""

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
    lesionPoints: slicer.vtkMRMLMarkupsFiducialNode  # diameters: every line of the scene (workflow.diameter_lines)
    modelPath: pathlib.Path
    device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"
    alpha: Annotated[float, WithinRange(0.0, 1.0)] = 0.1
    overrideAlpha: bool = False
    overlay: Annotated[str, Choice(["Grad-CAM", "Attention"])] = "Grad-CAM"
    resultsTable: slicer.vtkMRMLTableNode
    phaseOffsets: str = ""  # JSON {lesion: {phase: [dx, dy, dz] LPS mm}}, parsed by workflow.parse_offsets
    offsetPhase: Annotated[str, Choice(list(PHASES))] = REFERENCE_PHASE
    datasetFolder: pathlib.Path
    label: Annotated[str, Choice(list(workflow.LABEL_CHOICES))] = "metastasis"
    annotator: str = ""
    trainEpochs: Annotated[int, WithinRange(0, 500)] = 0   # 0: the task's training recipe
    resultsFolder: pathlib.Path  # "Save results as DICOM" (one sub-folder per study); unset: the default folder


class LiverLesionCADWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedMarkups = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LiverLesionCAD.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        placeWidget = self.ui.lesionPointsPlaceWidget  # bound to the points selector in the .ui
        placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
        self.logic = LiverLesionCADLogic()
        # nodes added or removed: one deferred update (an overlay is tagged only after it is added)
        self.sceneTimer = qt.QTimer()
        self.sceneTimer.setSingleShot(True)
        self.sceneTimer.setInterval(0)
        self.sceneTimer.connect("timeout()", self.onSceneNodesChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAddedOrRemoved)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onNodeAddedOrRemoved)
        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
        self.ui.fillPhasesButton.connect("clicked(bool)", self.onFillPhases)
        self.ui.classifyButton.connect("clicked(bool)", self.onClassify)
        self.ui.saveDicomButton.connect("clicked(bool)", self.onSaveDicom)
        self.ui.offsetLesionComboBox.connect("currentIndexChanged(int)", self.showOffset)
        self.ui.offsetPhaseComboBox.connect("currentIndexChanged(int)", self.showOffset)
        self.ui.offsetCoordinatesWidget.connect("coordinatesChanged(double*)", self.onOffsetChanged)
        self.ui.showStripButton.connect("clicked(bool)", self.onShowStrip)
        self.ui.addToTrainingSetButton.connect("clicked(bool)", self.onAddToTrainingSet)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.trainTimer = qt.QTimer()
        self.trainTimer.setInterval(TRAIN_POLL_MS)
        self.trainTimer.connect("timeout()", self.onTrainTimer)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.trainTimer.stop()
        self.sceneTimer.stop()
        self.logic.training.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self.logic.training.job is not None:
            self.onTrainTimer()  # one poll: a job that finished while the user was elsewhere is picked up now
            if self.logic.training.running:
                self._showTraining(True)
                self.trainTimer.start()

    def exit(self) -> None:
        # the job lives in the logic and keeps running; polling resumes (and picks up its card) on enter
        self.trainTimer.stop()
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.clearResults()  # the next patient's "L1" must never export this patient's prediction

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onNodeAddedOrRemoved(self, caller, event) -> None:
        self.sceneTimer.start()

    def onSceneNodesChanged(self) -> None:
        """Hide SlicerCAD's overlays from the phase selectors; follow added or removed diameter lines."""
        hidden = workflow.overlay_node_ids(slicer.mrmlScene)
        for field in workflow.PHASE_FIELDS:
            getattr(self.ui, f"{field}Selector").sortFilterProxyModel().hiddenNodeIDs = hidden
        self._observeMarkups()
        self._refreshLesionNames()

    def _observeMarkups(self) -> None:
        """Observe the centre points and every diameter line (only those) for placed, moved, deleted points."""
        p = self._parameterNode
        nodes = [p.lesionPoints, *workflow.diameter_lines(p)] if p and p.lesionPoints else []
        if nodes == self._observedMarkups:
            return
        self.removeObservers(self.onMarkupsChanged)
        for node in nodes:
            for event in POINT_EVENTS:
                self.addObserver(node, event, self.onMarkupsChanged)
        self._observedMarkups = nodes

    def onMarkupsChanged(self, caller, event) -> None:
        self._refreshLesionNames()

    def initializeParameterNode(self) -> None:
        p = self.logic.getParameterNode()
        if not workflow.is_set(p.resultsFolder):
            p.resultsFolder = default_results_folder("LiverLesionCAD")
        self.setParameterNode(p)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()
            self.showOffset()
        self.onSceneNodesChanged()

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self.ui.loadStudyButton.enabled = bool(p) and workflow.is_set(p.dicomFolder)
        ready = workflow.ready_to_classify(p)
        self.ui.classifyButton.enabled = ready
        self.ui.classifyButton.toolTip = _("Classify every lesion in the list.") if ready else _(
            "Select the phases, the lesion centres and diameters, and a model card.")
        self.ui.saveDicomButton.enabled = ready and bool(self.logic.lastResults)
        notice = self.logic.modelNotice(p.modelPath) if p else ""
        self.ui.researchNoticeLabel.text = notice
        self.ui.researchNoticeLabel.visible = bool(notice)
        allowed = workflow.label_choices(p.modelPath) if p else ()
        for row, label in enumerate(workflow.LABEL_CHOICES):
            self.ui.labelComboBox.view().setRowHidden(row, label not in allowed)
        self._observeMarkups()
        self._refreshLesionNames()

    def _refreshLesionNames(self) -> None:
        combo = self.ui.offsetLesionComboBox
        names = workflow.lesion_names(self._parameterNode) if self._parameterNode else []
        if [combo.itemText(i) for i in range(combo.count)] != names:
            current = combo.currentText
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            combo.setCurrentIndex(max(0, combo.findText(current)))
            combo.blockSignals(False)
            self.showOffset()
        self.ui.offsetCoordinatesWidget.enabled = bool(names)

    def onLoadStudy(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the DICOM study."), waitCursor=True):
            summary = self.logic.loadStudy(self._parameterNode.dicomFolder, self._parameterNode.strictGeometry)
            filled = self.logic.fillPhases(self._parameterNode)
            self.ui.studyStatusLabel.text = f"{summary}\n{filled}"

    def onFillPhases(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not assign phases."), waitCursor=True):
            self.ui.studyStatusLabel.text = self.logic.fillPhases(self._parameterNode)

    def showOffset(self, _index=None) -> None:
        """Show the stored offset of the chosen lesion and phase (signals blocked: showing is not editing)."""
        if not self._parameterNode:
            return
        xyz = workflow.offset_of(self._parameterNode.phaseOffsets, self.ui.offsetLesionComboBox.currentText,
                                 self.ui.offsetPhaseComboBox.currentText)
        self.ui.offsetCoordinatesWidget.blockSignals(True)
        self.ui.offsetCoordinatesWidget.coordinates = workflow.coordinates_text(xyz)
        self.ui.offsetCoordinatesWidget.blockSignals(False)

    def onOffsetChanged(self, _coords=None) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not set the offset.")):
            p = self._parameterNode
            p.phaseOffsets = workflow.with_offset(p.phaseOffsets, self.ui.offsetLesionComboBox.currentText,
                                                  self.ui.offsetPhaseComboBox.currentText,
                                                  self.ui.offsetCoordinatesWidget.coordinates)

    def onShowStrip(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the phases."), waitCursor=True):
            self._refreshLesionNames()
            path, titles = self.logic.phaseStrip(self._parameterNode, self.ui.offsetLesionComboBox.currentText)
            self.ui.stripLabel.setPixmap(qt.QPixmap(str(path)))
            self.ui.stripLabel.toolTip = " | ".join(titles)

    def _dependenciesReady(self, statusLabel) -> bool:
        """Install torch, MONAI, ... on first use (asking first); on refusal say what to do, in the panel."""
        return dependencies.ready_or_explain(_("Liver Lesion CAD"), statusLabel)

    def onAddToTrainingSet(self) -> None:
        if not self._dependenciesReady(self.ui.classifyStatusLabel):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not add the lesion to the training set."), waitCursor=True):
            self.ui.classifyStatusLabel.text = self.logic.addToTrainingSet(
                self._parameterNode, self.ui.offsetLesionComboBox.currentText,
                self.ui.siteSecretLineEdit.text.encode("utf-8"))

    def onTrain(self) -> None:
        if not self._dependenciesReady(self.ui.trainStatusLabel):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start training."), waitCursor=True):
            self.logic.startTraining(self._parameterNode)
            self.ui.trainProgressBar.value = 0
            self._showTraining(True)
            self.trainTimer.start()

    def onCancelTraining(self) -> None:
        self.logic.training.cancel()
        self.onTrainTimer()

    def onTrainTimer(self) -> None:
        """Show the job's progress; when it ends, stop polling (a finished job's card is now the model, in the
        module's own parameter node, so this works while the user is in another module)."""
        percent, text, running = self.logic.training.poll(self.logic.getParameterNode())
        self.ui.trainProgressBar.value = percent
        self.ui.trainStatusLabel.text = text
        if not running:
            self.trainTimer.stop()
            self._showTraining(False)

    def _showTraining(self, running: bool) -> None:
        self.ui.trainButton.enabled = not running
        self.ui.cancelTrainingButton.enabled = running

    def onClassify(self) -> None:
        if not self._dependenciesReady(self.ui.classifyStatusLabel):
            return
        with slicer.util.tryWithErrorDisplay(_("Classification failed."), waitCursor=True):
            self.ui.classifyStatusLabel.text = self.logic.classify(self._parameterNode)
            self._refreshLesionNames()
            self._checkCanApply()

    def onSaveDicom(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not save the results as DICOM."), waitCursor=True):
            self.ui.saveDicomStatusLabel.text = self.logic.saveDicom(self._parameterNode)


class LiverLesionCADLogic(ScriptedLoadableModuleLogic):
    """Delegates to LiverLesionCADLib.workflow; usable from batch scripts without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # workflow.result_key (points node, lesion name, centre, diameter, offsets) -> last classification
        # result, for the training export: a moved point or another points node finds none
        self.lastResults = {}
        self.training = train_job.PanelTraining()  # the background training job (one at a time)

    @staticmethod
    def ensureDependencies() -> None:
        """Install what classification and training need (asking first); raises DependencyError."""
        dependencies.ensure_dependencies(requester=_("Liver Lesion CAD"))

    def getParameterNode(self):
        return LiverLesionCADParameterNode(super().getParameterNode())

    @staticmethod
    def modelNotice(cardPath) -> str:
        return workflow.model_notice(cardPath)

    @staticmethod
    def loadStudy(folder, strict=False) -> str:
        return load_study(slicer.mrmlScene, folder, strict=strict).summary()

    @staticmethod
    def fillPhases(parameterNode) -> str:
        return workflow.fill_phases(slicer.mrmlScene, parameterNode)

    @staticmethod
    def volumes(parameterNode) -> dict:
        return workflow.phase_volumes(parameterNode)

    def clearResults(self) -> None:
        """Forget every stored classification result (the scene is closing: another patient comes next)."""
        self.lastResults.clear()

    @staticmethod
    def stripPath() -> pathlib.Path:
        """Where "Show phases" writes its picture: Slicer's temporary folder (per user), not a shared /tmp."""
        app = getattr(slicer, "app", None)
        return pathlib.Path(getattr(app, "temporaryPath", None) or tempfile.gettempdir()) / STRIP_PNG_NAME

    @classmethod
    def phaseStrip(cls, parameterNode, lesionName=""):
        return workflow.panel_phase_strip(parameterNode, lesionName, cls.stripPath())

    def addToTrainingSet(self, parameterNode, lesionName, siteSecret) -> str:
        return workflow.add_panel_lesion(parameterNode, lesionName, siteSecret, self.lastResults)

    def classify(self, parameterNode) -> str:
        return workflow.classify_panel(parameterNode, self.lastResults)

    def saveDicom(self, parameterNode) -> str:
        """The stored results of the lesions as marked now as SEG + SR, in the DICOM database; the status text."""
        return written_summary(workflow.save_panel_dicom(parameterNode, self.lastResults))

    def startTraining(self, parameterNode) -> None:
        """Train on the panel's dataset folder in the background (``self.training``: one job at a time)."""
        from LiverLesionCADLib import train_job as liver_train_job

        self.training.start(lambda: liver_train_job.start_panel_training(parameterNode), "training")


class LiverLesionCADTest(ScriptedLoadableModuleTest):
    """In-Slicer self test: a SYNTHETIC DICOM study loads, its phases fill, and a lesion classifies."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_load_fill_classify()

    def test_load_fill_classify(self):
        try:
            LiverLesionCADLogic.ensureDependencies()
        except dependencies.DependencyError as exc:  # --testing installs nothing: skip, never a false pass
            self.delayDisplay(str(exc))
            self.skipTest(str(exc))
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # removed after the test
            self._load_fill_classify(pathlib.Path(tmp))

    def _load_fill_classify(self, folder) -> None:
        import torch

        from slicercad.engine.registry import save_model
        from slicercad.geometry import lps_to_ras
        from slicercad.liver.task import LIVER_LESION, build_model, model_card
        from slicercad.synth.study import write_phantom_study

        truth = write_phantom_study(folder / "study", kind="liver_mri", seed=0)
        logic = LiverLesionCADLogic()
        self.assertIn("volume", logic.loadStudy(folder / "study"))
        p = logic.getParameterNode()
        logic.fillPhases(p)
        self.assertEqual(set(logic.volumes(p)), set(PHASES))
        cfg = {"channels": [8, 16, 16], "roi_px": 32}
        torch.manual_seed(0)
        p.modelPath = save_model(build_model(LIVER_LESION.config(cfg)), model_card(cfg, 1.0, "self-test", {}),
                                 folder / "model")
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
        for i, lesion in enumerate(truth["lesions"], 1):  # a centre point and a diameter line per lesion
            ras = lps_to_ras(lesion["center_lps"])
            points.AddControlPoint(list(ras), f"L{i}")
            line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"L{i} diameter")
            line.AddControlPoint(list(ras - [lesion["diameter_mm"] / 2, 0, 0]))
            line.AddControlPoint(list(ras + [lesion["diameter_mm"] / 2, 0, 0]))
        p.lesionPoints = points
        p.phaseOffsets = workflow.with_offset(p.phaseOffsets, "L1", "T2", (0.0, 4.0, 0.0))
        lesions = workflow.panel_lesions(p)
        for lesion, marked in zip(lesions, truth["lesions"], strict=True):
            self.assertAlmostEqual(lesion.diameter_mm, marked["diameter_mm"], places=3)
        self.assertEqual(list(lesions[0].offset_lps("T2")), [0.0, 4.0, 0.0])
        message = logic.classify(p)
        self.assertTrue(message.startswith("L1: "))
        self.assertEqual(p.resultsTable.GetNumberOfRows(), len(truth["lesions"]))
        self.assertIn("L1", [key[1] for key in logic.lastResults])
        p.resultsFolder = folder / "dicom"  # Save results as DICOM (the database is the application's: not here)
        files = workflow.save_panel_dicom(p, logic.lastResults, database=False)
        self.assertEqual([f.name for f in files], ["lesions.seg.dcm", "report.sr.dcm"])
        position = [0.0, 0.0, 0.0]
        points.GetNthControlPointPosition(0, position)
        points.SetNthControlPointPosition(0, position[0] + 1.0, position[1], position[2])
        moved = workflow.pick_lesion(workflow.panel_lesions(p), "L1")
        self.assertIsNone(workflow.stored_result(p, moved, logic.lastResults))  # a moved point: no stale result
