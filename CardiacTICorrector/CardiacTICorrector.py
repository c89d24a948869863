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
from SlicerCADLib import dependencies


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
    imageTIs: str = ""
    firstTI: float = 0.0
    useModel: bool = True
    inversionsEveryRR: int = 2
    minutesToLGE: float = 2.0
    resultsFolder: pathlib.Path


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
        self.ui.loadScoutButton.connect("clicked(bool)", self.onLoadScout)
        self.ui.estimateButton.connect("clicked(bool)", self.onEstimate)
        self.ui.gradCamButton.connect("clicked(bool)", self.onGradCam)
        self.ui.saveDicomButton.connect("clicked(bool)", self.onSaveDicom)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.clearScout()  # the scout's nodes go with the scene: Estimate must not reach them
        self.ui.estimateButton.enabled = False
        self.ui.gradCamButton.enabled = False
        self.ui.saveDicomButton.enabled = False

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        from SlicerCADLib.dicom_results import default_results_folder

        p = self.logic.getParameterNode()
        if not (p.resultsFolder and str(p.resultsFolder) not in ("", ".")):
            p.resultsFolder = default_results_folder("CardiacTICorrector")
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

    def _checkCanApply(self, caller=None, event=None) -> None:
        folder = self._parameterNode.dicomFolder if self._parameterNode else None
        self.ui.loadStudyButton.enabled = bool(folder and str(folder) not in ("", "."))
        self.ui.loadScoutButton.enabled = self.ui.loadStudyButton.enabled
        self.ui.estimateButton.enabled = self.logic is not None and self.logic.hasScout()
        self.ui.gradCamButton.enabled = self.ui.estimateButton.enabled and bool(
            self._parameterNode and self._parameterNode.useModel)
        self.ui.saveDicomButton.enabled = self.ui.estimateButton.enabled and self.logic.lastRecord is not None

    def onLoadStudy(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the DICOM study."), waitCursor=True):
            summary = self.logic.loadStudy(self._parameterNode.dicomFolder, self._parameterNode.strictGeometry)
            self.ui.studyStatusLabel.text = summary


    def onLoadScout(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to load the TI scout."), waitCursor=True):
            self.ui.studyStatusLabel.text = self.logic.loadScout(self._parameterNode)
            self._checkCanApply()

    def _dependenciesReady(self) -> bool:
        """torch etc. are needed only for the CNN; physics-only estimation works without them."""
        if not self._parameterNode.useModel:
            return True
        return dependencies.ready_or_explain(_("Cardiac TI Corrector"), self.ui.resultLabel)

    def onEstimate(self) -> None:
        if not self._dependenciesReady():
            return
        with slicer.util.tryWithErrorDisplay(_("Estimation failed."), waitCursor=True):
            segmentation = self.ui.roiSegmentSelectorWidget.currentNode()
            segment = self.ui.roiSegmentSelectorWidget.currentSegmentID()
            self.ui.resultLabel.text = self.logic.estimate(self._parameterNode, segmentation, segment)
        self._checkCanApply()

    def onGradCam(self) -> None:
        if not dependencies.ready_or_explain(_("Cardiac TI Corrector"), self.ui.resultLabel):
            return
        with slicer.util.tryWithErrorDisplay(_("Grad-CAM failed."), waitCursor=True):
            self.ui.resultLabel.text = self.logic.showGradCam()

    def onSaveDicom(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not save the results as DICOM."), waitCursor=True):
            self.ui.saveDicomStatusLabel.text = self.logic.saveDicom(self._parameterNode)


class CardiacTICorrectorLogic(ScriptedLoadableModuleLogic):
    """Delegates to CardiacTICorrectorLib; usable from batch scripts without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.sequenceNode = None
        self.browserNode = None
        self.lastRecord = None
        self.scoutFiles = []
        self._model = None

    def clearScout(self) -> None:
        """Forget the loaded scout and its result (the scene is closing, or its nodes are gone)."""
        self.sequenceNode = None
        self.browserNode = None
        self.lastRecord = None
        self.scoutFiles = []

    def hasScout(self) -> bool:
        """Whether a loaded scout is still in the scene (a closed scene or a deleted sequence forgets it)."""
        from CardiacTICorrectorLib.scout import scout_in_scene

        if not scout_in_scene(slicer.mrmlScene, self.sequenceNode):
            self.clearScout()
        return self.sequenceNode is not None

    @staticmethod
    def ensureDependencies() -> None:
        """Install what the CNN needs (asking first); raises DependencyError."""
        dependencies.ensure_dependencies(requester=_("Cardiac TI Corrector"))

    def loadScout(self, parameterNode) -> str:
        """Load the folder's scout(s) as sequences over TI; the first becomes the one Estimate uses."""
        from CardiacTICorrectorLib.scout import load_scout

        tis = parameterNode.imageTIs.strip() or None
        first = parameterNode.firstTI or None
        loaded = load_scout(slicer.mrmlScene, parameterNode.dicomFolder, tis, first)
        self.sequenceNode = loaded[0][0]
        browser = self.browserNode = loaded[0][1]
        proxy = browser.GetProxyNode(self.sequenceNode)
        if proxy is not None:
            slicer.util.setSliceViewerLayers(background=proxy, fit=True)
        scout = loaded[0][2]
        self.scoutFiles = [] if scout.photo else list(scout.files)
        return _("Loaded {n} scout(s); {f} frames, TI {a:g}-{b:g} ms ({src}). {w}").format(
            n=len(loaded), f=scout.n_frames, a=scout.ti_ms[0], b=scout.ti_ms[-1], src=scout.ti_source,
            w=" ".join(scout.warnings))

    def model(self):
        if self._model is None:
            from slicercad.ti.cli import load_default_model

            self._model = load_default_model("bundled")
        return self._model

    def estimate(self, parameterNode, segmentationNode=None, segmentId=None) -> str:
        from CardiacTICorrectorLib.scout import estimate

        if not self.hasScout():
            raise ValueError(_("Load a TI scout first."))
        model, card = self.model() if parameterNode.useModel else (None, None)
        rule = {"every_rr": parameterNode.inversionsEveryRR, "minutes_to_lge": parameterNode.minutesToLGE}
        result = estimate(slicer.mrmlScene, self.sequenceNode, model, card, segmentationNode, segmentId, rule)
        self.lastRecord = result["record"]
        if result["chart"] is not None:
            slicer.modules.plots.logic().ShowChartInLayout(result["chart"])
        r = result["record"]
        return _("Myocardial null on the scout: {n} ± {u} ms ({m}); blood null {b} ms; recommended LGE TI {t} ± {ru} ms. "
                 "{w}").format(n=r["null_ti_ms"], u=r["uncertainty_ms"], m=r["method"], b=r["blood_null_ti_ms"],
                               t=r["recommended_ti_ms"], ru=r["recommended_uncertainty_ms"], w=" ".join(r["warnings"]))

    def showGradCam(self, item=None) -> str:
        """Grad-CAM of sequence item ``item`` (default: the browser's displayed frame) as an overlay."""
        from CardiacTICorrectorLib.gradcam import show_frame_cam

        if not self.hasScout():
            raise ValueError(_("Load a TI scout first."))
        if item is None:
            item = self.browserNode.GetSelectedItemNumber() if self.browserNode is not None else 0
        model, card = self.model()
        shown = show_frame_cam(slicer.mrmlScene, self.sequenceNode, model, card, item, self.browserNode)
        return _("Grad-CAM of the frame at TI {t:g} ms: category {c} (p = {p:.2f}); SYNTHETIC-trained CNN.").format(
            t=shown["ti_ms"], c=shown["category"], p=shown["probability"])

    def saveDicom(self, parameterNode) -> str:
        """The last estimate as a TID 1500 SR on the scout's DICOM files, added to the DICOM database."""
        from SlicerCADLib.dicom_results import results_folder, ti_record_to_dicom, written_summary

        if self.lastRecord is None or not self.hasScout():
            raise ValueError(_("Estimate the TI first."))
        if not self.scoutFiles:
            raise ValueError(_("The scout was loaded from images, not DICOM: there is no series to put the report on."))
        card = self.model()[1] if self.lastRecord.get("model") else None
        folder = results_folder(parameterNode.resultsFolder, "CardiacTICorrector", self.scoutFiles)
        return written_summary(ti_record_to_dicom(self.lastRecord, folder, card, scout_files=self.scoutFiles))

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
        self.setUp()
        self.test_estimate_synthetic_scout()

    def test_estimate_synthetic_scout(self):
        """A SYNTHETIC DICOM scout (shuffled files) loads as a sequence; Estimate finds the null within 10 ms."""
        import tempfile

        from SlicerCADLib import dependencies
        from slicercad.ti.phantom import make_scout, write_scout_dicom

        try:
            dependencies.ensure_dependencies()
            use_model = True
        except dependencies.DependencyError as exc:
            self.delayDisplay(f"CNN skipped: dependencies missing ({exc}); physics only")
            use_model = False
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # removed after the test
            folder = pathlib.Path(tmp)
            phantom = make_scout(8, snr=50, n_frames=16, shape=(96, 96))
            write_scout_dicom(phantom, folder, seed=4)
            logic = CardiacTICorrectorLogic()
            node = logic.getParameterNode()
            node.dicomFolder = folder
            node.useModel = use_model
            logic.loadScout(node)
            logic.estimate(node)
            if use_model:
                self.assertIn("Grad-CAM", logic.showGradCam(3))
        self.assertLess(abs(logic.lastRecord["null_ti_ms"] - phantom.myo_null_ms), 10.0)

    def test_load_synthetic_study(self):
        import tempfile

        from slicercad.synth.study import write_phantom_study

        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # removed after the test
            folder = pathlib.Path(tmp)
            write_phantom_study(folder, kind="liver_mri", seed=0)
            result = CardiacTICorrectorLogic().loadStudy(folder)
        self.assertIn("volume", result)
        self.assertGreater(len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")), 0)
