"""Liver Lesion CAD: Benign vs malignant liver lesion classification on multi-phase EOB-MRI/CT with a lesion-sized Gaussian attention map and Grad-CAM.

Thin Slicer module: the panel binds to the parameter node and every line of logic
lives in ``LiverLesionCADLib`` (MRML <-> core) and ``slicercad`` (algorithms)."""
import pathlib
from typing import Annotated

import ctk
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

import LiverLesionCADLib
from slicercad.liver.phases import PHASES


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
PHASE_FIELDS = {"t1Pre": "T1_pre", "arterial": "arterial", "portal": "portal", "transitional": "transitional",
                "hepatobiliary": "hepatobiliary", "t2": "T2", "dwi": "DWI", "adc": "ADC"}


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
        self._addWorkflowWidgets(uiWidget.layout())
        self.initializeParameterNode()

    def _addWorkflowWidgets(self, layout) -> None:
        """Research notice, Fill phases, per-phase offsets with the phase strip, Add to training set."""
        self.noticeLabel = qt.QLabel()
        self.noticeLabel.setStyleSheet("QLabel { color: white; background: #a33; padding: 4px; font-weight: bold; }")
        self.noticeLabel.wordWrap = True
        self.noticeLabel.visible = False
        layout.insertWidget(0, self.noticeLabel)
        self.fillPhasesButton = qt.QPushButton(_("Fill phases from the scene"))
        self.fillPhasesButton.toolTip = _("Assign phases to the loaded volumes (also from Slicer's DICOM browser).")
        self.fillPhasesButton.connect("clicked(bool)", self.onFillPhases)
        layout.addWidget(self.fillPhasesButton)
        box = ctk.ctkCollapsibleButton()
        box.text = _("Per-phase centre offsets and all phases at the lesion")
        form = qt.QFormLayout(box)
        self.lesionCombo, self.offsetPhaseCombo = qt.QComboBox(), qt.QComboBox()
        self.offsetPhaseCombo.addItems(list(PHASES))
        self.offsetWidget = ctk.ctkCoordinatesWidget()
        self.offsetWidget.coordinates = "0,0,0"
        self.offsetWidget.connect("coordinatesChanged(double*)", self.onOffsetChanged)
        self.offsetPhaseCombo.connect("currentIndexChanged(int)", self.onOffsetPhaseChanged)
        self.lesionCombo.connect("currentIndexChanged(int)", self.onOffsetPhaseChanged)
        self.stripButton = qt.QPushButton(_("Show all phases at the lesion"))
        self.stripButton.connect("clicked(bool)", self.onShowStrip)
        self.stripLabel = qt.QLabel()
        form.addRow(_("Lesion:"), self.lesionCombo)
        form.addRow(_("Phase:"), self.offsetPhaseCombo)
        form.addRow(_("Offset (LPS mm):"), self.offsetWidget)
        form.addRow(self.stripButton)
        form.addRow(self.stripLabel)
        layout.addWidget(box)
        train = ctk.ctkCollapsibleButton()
        train.text = _("Add to training set")
        train.collapsed = True
        tform = qt.QFormLayout(train)
        self.datasetButton = ctk.ctkDirectoryButton()
        self.labelCombo = qt.QComboBox()
        self.labelCombo.addItems(["cyst", "hemangioma", "metastasis", "hcc", "fnh"])
        self.annotatorEdit, self.secretEdit = qt.QLineEdit(), qt.QLineEdit()
        self.secretEdit.echoMode = qt.QLineEdit.Password
        self.addTrainingButton = qt.QPushButton(_("Add to training set"))
        self.addTrainingButton.connect("clicked(bool)", self.onAddToTrainingSet)
        for label, widget in ((_("Dataset folder:"), self.datasetButton), (_("Label:"), self.labelCombo),
                              (_("Annotator:"), self.annotatorEdit), (_("Site secret:"), self.secretEdit)):
            tform.addRow(label, widget)
        tform.addRow(self.addTrainingButton)
        layout.addWidget(train)
        self.offsets = {}   # lesion name -> {phase: (x, y, z) LPS mm}

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
        notice = self.logic.modelNotice(p.modelPath) if p and p.modelPath else ""
        self.noticeLabel.text = notice
        self.noticeLabel.visible = bool(notice)

    def onLoadStudy(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the DICOM study."), waitCursor=True):
            summary = self.logic.loadStudy(self._parameterNode.dicomFolder, self._parameterNode.strictGeometry)
            filled = self.logic.fillPhases(self._parameterNode)
            self.ui.studyStatusLabel.text = f"{summary}\n{filled}"

    def onFillPhases(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not assign phases."), waitCursor=True):
            self.ui.studyStatusLabel.text = self.logic.fillPhases(self._parameterNode)

    def _lesions(self):
        return self.logic.lesions(self._parameterNode, self.offsets)

    def onOffsetPhaseChanged(self, _index=None) -> None:
        values = self.offsets.get(self.lesionCombo.currentText, {}).get(self.offsetPhaseCombo.currentText, (0, 0, 0))
        self.offsetWidget.blockSignals(True)
        self.offsetWidget.coordinates = ",".join(str(float(v)) for v in values)
        self.offsetWidget.blockSignals(False)

    def onOffsetChanged(self, _coords=None) -> None:
        if self.lesionCombo.currentText:
            values = tuple(float(v) for v in self.offsetWidget.coordinates.split(","))
            self.offsets.setdefault(self.lesionCombo.currentText, {})[self.offsetPhaseCombo.currentText] = values

    def onShowStrip(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the phases."), waitCursor=True):
            lesions = self._lesions()
            names = [lesion.lesion_id for lesion in lesions]
            if [self.lesionCombo.itemText(i) for i in range(self.lesionCombo.count)] != names:
                current = self.lesionCombo.currentText
                self.lesionCombo.blockSignals(True)
                self.lesionCombo.clear()
                self.lesionCombo.addItems(names)
                self.lesionCombo.setCurrentIndex(max(0, self.lesionCombo.findText(current)))
                self.lesionCombo.blockSignals(False)
            lesion = lesions[max(0, self.lesionCombo.currentIndex)]
            path, titles = self.logic.phaseStrip(self._parameterNode, lesion)
            self.stripLabel.setPixmap(qt.QPixmap(str(path)))
            self.stripLabel.toolTip = " | ".join(titles)

    def onAddToTrainingSet(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the lesion to the training set."), waitCursor=True):
            lesions = self._lesions()
            lesion = next((x for x in lesions if x.lesion_id == self.lesionCombo.currentText), lesions[0])
            self.ui.classifyStatusLabel.text = self.logic.addToTrainingSet(
                self._parameterNode, lesion, self.datasetButton.directory, self.labelCombo.currentText,
                self.annotatorEdit.text, self.secretEdit.text.encode("utf-8"))

    def onClassify(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Classification failed."), waitCursor=True):
            message = self.logic.classify(self._parameterNode, self.offsets)
            self.ui.classifyStatusLabel.text = message


class LiverLesionCADLogic(ScriptedLoadableModuleLogic):
    """Delegates to LiverLesionCADLib; usable from batch scripts without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastResults = {}   # lesion name -> last classification result (for the training export)

    @staticmethod
    def modelNotice(cardPath) -> str:
        """The 'research use' notice when the model card says it was trained on synthetic data."""
        import json

        path = pathlib.Path(cardPath)
        if path.suffix != ".json" or not path.is_file():
            return ""
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            return ""
        synthetic = bool((card.get("training_data") or {}).get("synthetic"))
        return _("Research use only - model trained on synthetic data.") if synthetic else ""

    def fillPhases(self, parameterNode) -> str:
        """Set every phase selector from the phase assignment of the scene's DICOM volumes."""
        from LiverLesionCADLib.phase_nodes import phase_nodes_from_scene

        nodes = phase_nodes_from_scene(slicer.mrmlScene)
        for field, phase in PHASE_FIELDS.items():
            if phase in nodes:
                setattr(parameterNode, field, nodes[phase])
        missing = [p for p in PHASES if p not in nodes]
        return _("Phases filled: {found}").format(found=", ".join(nodes)) + (
            _("; not found: {missing}").format(missing=", ".join(missing)) if missing else "")

    @staticmethod
    def volumes(parameterNode) -> dict:
        return {phase: getattr(parameterNode, field) for field, phase in PHASE_FIELDS.items()
                if getattr(parameterNode, field)}

    @staticmethod
    def lesions(parameterNode, offsets=None) -> list:
        """Core lesions from the markups, with the panel's per-phase offsets {name: {phase: LPS mm}}."""
        from LiverLesionCADLib.classify import lesions_from_nodes

        return lesions_from_nodes(parameterNode.lesionPoints, parameterNode.lesionLines, offsets)

    def phaseStrip(self, parameterNode, lesion):
        """(PNG path, tile titles): every selected phase side by side at ``lesion`` (+ its offsets)."""
        import tempfile

        from LiverLesionCADLib.phase_nodes import phase_strip_png, strip_titles

        volumes = self.volumes(parameterNode)
        path = pathlib.Path(tempfile.gettempdir()) / "LiverLesionCAD_phases.png"
        return phase_strip_png(path, volumes, lesion, size_px=128), strip_titles(volumes)

    def addToTrainingSet(self, parameterNode, lesion, datasetDir, label, annotator, siteSecret) -> str:
        """Export ``lesion`` with the reader's label through the engine's de-identified export."""
        from LiverLesionCADLib.training import add_to_training_set

        result = self.lastResults.get(lesion.lesion_id)
        prediction = None if result is None else {"class": result["predicted_class"],
                                                  "probabilities": dict(result["probabilities"]),
                                                  "model_sha256": result["provenance"]["model_sha256"]}
        edited = prediction is not None and prediction["class"] != label
        row = add_to_training_set(datasetDir, self.volumes(parameterNode), lesion, label, annotator, edited,
                                  prediction, siteSecret)
        return _("{lesion} added to the training set as {label} (case {case}).").format(
            lesion=lesion.lesion_id, label=label, case=row["case_id"])

    def getParameterNode(self):
        return LiverLesionCADParameterNode(super().getParameterNode())

    def loadStudy(self, folder, strict=False) -> str:
        """Load every volume of a DICOM folder with its phase assignment; return a summary line."""
        return LiverLesionCADLib.load_study(slicer.mrmlScene, folder, strict=strict).summary()

    def classify(self, parameterNode, offsets=None) -> str:
        """Classify every marked lesion; append rows to the results table, show the overlay, return a summary."""
        from LiverLesionCADLib.classify import classify_scene, lesions_from_nodes, load_liver_model

        p = parameterNode
        model, card = load_liver_model(p.modelPath, p.device)
        volumes = self.volumes(p)
        lesions = lesions_from_nodes(p.lesionPoints, p.lesionLines, offsets)
        alpha = p.alpha if p.overrideAlpha else "card"
        overlay = "cam" if p.overlay == "Grad-CAM" else "attention"
        results, table, _node = classify_scene(model, card, volumes, lesions, p.resultsTable, overlay=overlay,
                                               alpha=alpha, device=card["device"])
        p.resultsTable = table
        self.lastResults.update({r["lesion_id"]: r for r in results})
        lines = [f"{r['lesion_id']}: {r['predicted_class']} ({max(r['probabilities'].values()):.2f})"
                 + (f" - {'; '.join(r['warnings'])}" if r["warnings"] else "") for r in results]
        notice = results[0]["notice"] if results else ""
        return "\n".join(lines + ([notice] if notice else []))


class LiverLesionCADTest(ScriptedLoadableModuleTest):
    """In-Slicer self test: a SYNTHETIC DICOM study loads, its phases fill, and a lesion classifies."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_load_fill_classify()

    def test_load_fill_classify(self):
        import tempfile

        import torch

        from slicercad.engine.registry import save_model
        from slicercad.geometry import lps_to_ras
        from slicercad.liver.task import LIVER_LESION, build_model, model_card
        from slicercad.synth.study import write_phantom_study

        folder = pathlib.Path(tempfile.mkdtemp())
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
        lesion = truth["lesions"][0]
        ras = lps_to_ras(lesion["center_lps"])
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
        points.AddControlPoint(list(ras), "L1")
        line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L1 diameter")
        line.AddControlPoint(list(ras - [lesion["diameter_mm"] / 2, 0, 0]))
        line.AddControlPoint(list(ras + [lesion["diameter_mm"] / 2, 0, 0]))
        p.lesionPoints, p.lesionLines = points, line
        message = logic.classify(p)
        self.assertTrue(message.startswith("L1: "))
        self.assertEqual(p.resultsTable.GetNumberOfRows(), 1)
        self.assertIn("L1", logic.lastResults)
