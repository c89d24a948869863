"""Segment Editor effect "Lesion (click)": click a lesion's centre in a slice view -> the WeakLabelSegmenter
U-Net (or a sphere) label goes into the selected segment, through the editor's masking and undo.

Thin: every check, the label and the write live in ``WeakLabelSegmenterLib.effect_logic`` (Qt-free, tested
with slicer-core); the label itself comes from ``WeakLabelSegmenterLib.logic.lesion_label``, the call the
panel and batch mode make. Registered by the WeakLabelSegmenter module at startup. torch / MONAI are
imported on the first U-Net click (after the installer), never when the effect loads.

Mouse (slice views): click = a lesion at that point with the size option; click-drag from the centre =
a lesion whose radius is the drag (a drag starting on the previewed lesion resizes it); further clicks
inside the previewed lesion = positive corrections, Alt+click = negative correction (Shift moves the
crosshair and Ctrl blends layers in Slicer, so neither is used). Clicking elsewhere applies the pending
preview first (Undo reverts it) and starts a new lesion. Sphere ignores correction clicks.

The class name must be the file name (Slicer's ``setPythonSource`` looks the class up by it)."""
import logging
import os

import ctk
import qt
import vtk

import slicer
from slicer.i18n import tr as _
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from SlicerCADLib import dependencies
from slicercad.errors import SlicerCADError
from WeakLabelSegmenterLib import effect_logic as fx

DRAG_PIXELS = 5   # a press-release shorter than this is a click, longer sets the size


class _EffectTarget:
    """The editor through this effect's C++ adaptor (same interface as ``fx.EditorLogicTarget``)."""

    def __init__(self, scriptedEffect):
        self.scriptedEffect = scriptedEffect
        self.node = scriptedEffect.parameterSetNode()

    def source_image(self):
        return self.scriptedEffect.sourceVolumeImageData()

    def save_state(self):
        self.scriptedEffect.saveStateForUndo()

    def modify(self, labelmap, replace=False):
        mode = (slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet if replace
                else slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd)
        self.scriptedEffect.modifySelectedSegmentByLabelmap(labelmap, mode)


class SegmentEditorLesionClickEffect(AbstractScriptedSegmentEditorEffect):
    """Lesion (click): semi-automatic lesion segmentation from a click, with preview and Apply / Cancel."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "LesionClick"  # no tr (modules find effects by name)
        scriptedEffect.title = _("Lesion (click)")
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self._press = None        # (xy, ras, alt, viewWidget) of a left-button press in progress
        self._press3d = None      # (xy, viewWidget) of a left-button press in a 3D view
        self._connections = []    # (widget, signal, slot) made in setupOptionsFrame, undone in cleanup
        self._prompt = None       # fx.ClickPrompt of the pending (previewed) lesion
        self._click = None        # fx.ClickResult of the pending lesion
        self._preview = None      # preview segmentation node

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "..", "Resources", "Icons", "WeakLabelSegmenter.png")
        if os.path.exists(iconPath):
            return qt.QIcon(iconPath)
        return qt.QIcon()

    def helpText(self):
        return "<html>" + _("""Semi-automatic lesion segmentation (WeakLabelSegmenter U-Net, or a sphere).<p>
<ul style="margin: 0">
<li><b>Click</b> the lesion centre in a slice view: the result is previewed, <b>Apply</b> writes it into the
selected segment (masking and overwrite settings respected; Undo reverts it), <b>Cancel</b> discards it.
<li><b>Click-drag</b> from the centre to the lesion edge sets the size.
<li>A <b>drag</b> starting on the previewed lesion changes its size.
<li>Further <b>clicks</b> inside the previewed lesion add positive corrections, <b>Alt+click</b> negative ones
(U-Net only: Sphere ignores corrections).
<li>Clicking elsewhere applies the pending preview first and starts a new lesion.
</ul><p>Research use: the bundled model was trained on SYNTHETIC lesions.""")

    def setupOptionsFrame(self):
        self.methodComboBox = qt.QComboBox()
        self.methodComboBox.addItem(_("U-Net"), fx.METHODS[0])
        self.methodComboBox.addItem(_("Sphere"), fx.METHODS[1])
        self.methodComboBox.setToolTip(_("U-Net: semi-automatic segmentation. Sphere: the centre + size sphere."))
        self.scriptedEffect.addLabeledOptionsWidget(_("Method:"), self.methodComboBox)

        self.sizeSlider = ctk.ctkSliderWidget()
        self.sizeSlider.minimum = 2.0
        self.sizeSlider.maximum = 150.0
        self.sizeSlider.singleStep = 0.5
        self.sizeSlider.decimals = 1
        self.sizeSlider.suffix = " mm"
        self.sizeSlider.setToolTip(_("Expected lesion diameter for a plain click (click-drag sets it)."))
        self.scriptedEffect.addLabeledOptionsWidget(_("Size:"), self.sizeSlider)

        self.thresholdSlider = ctk.ctkSliderWidget()
        self.thresholdSlider.minimum = 0.05
        self.thresholdSlider.maximum = 0.95
        self.thresholdSlider.singleStep = 0.05
        self.thresholdSlider.decimals = 2
        self.thresholdSlider.setToolTip(_("Probability threshold of the U-Net result."))
        self.scriptedEffect.addLabeledOptionsWidget(_("Threshold:"), self.thresholdSlider)

        self.modelPathLineEdit = ctk.ctkPathLineEdit()
        self.modelPathLineEdit.filters = ctk.ctkPathLineEdit.Files
        self.modelPathLineEdit.nameFilters = ["Model card (*.json)"]
        self.modelPathLineEdit.setToolTip(_("Model card (JSON) of a weak_lesion model; empty: the bundled demo."))
        self.scriptedEffect.addLabeledOptionsWidget(_("Model:"), self.modelPathLineEdit)

        self.deviceComboBox = qt.QComboBox()
        self.deviceComboBox.addItems(["cpu", "cuda"])
        self.scriptedEffect.addLabeledOptionsWidget(_("Device:"), self.deviceComboBox)

        self.previewCheckBox = qt.QCheckBox(_("Preview before applying"))
        self.previewCheckBox.setToolTip(_("Off: each click writes into the segment at once (Undo reverts)."))
        self.replaceCheckBox = qt.QCheckBox(_("Replace segment contents"))
        self.replaceCheckBox.setToolTip(_("Off: the lesion is added to the segment. On: it replaces the segment."))
        checks = qt.QHBoxLayout()
        checks.addWidget(self.previewCheckBox)
        checks.addWidget(self.replaceCheckBox)
        self.scriptedEffect.addOptionsWidget(checks)

        self.cancelButton = qt.QPushButton(_("Cancel"))
        self.cancelButton.objectName = self.__class__.__name__ + "Cancel"
        self.cancelButton.setToolTip(_("Discard the previewed lesion"))
        self.applyButton = qt.QPushButton(_("Apply"))
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.applyButton.setToolTip(_("Write the previewed lesion into the selected segment"))
        finish = qt.QHBoxLayout()
        finish.addWidget(self.cancelButton)
        finish.addWidget(self.applyButton)
        self.scriptedEffect.addOptionsWidget(finish)

        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.statusLabel)

        self._connections = [
            (self.methodComboBox, "currentIndexChanged(int)", self.updateMRMLFromGUI),
            (self.sizeSlider, "valueChanged(double)", self.updateMRMLFromGUI),
            (self.thresholdSlider, "valueChanged(double)", self.updateMRMLFromGUI),
            (self.modelPathLineEdit, "currentPathChanged(QString)", self.updateMRMLFromGUI),
            (self.deviceComboBox, "currentIndexChanged(int)", self.updateMRMLFromGUI),
            (self.previewCheckBox, "toggled(bool)", self.updateMRMLFromGUI),
            (self.replaceCheckBox, "toggled(bool)", self.updateMRMLFromGUI),
            (self.applyButton, "clicked()", self.onApply),
            (self.cancelButton, "clicked()", self.onCancel),
        ]
        for widget, signal, slot in self._connections:
            widget.connect(signal, slot)

    def setMRMLDefaults(self):
        self.scriptedEffect.setParameterDefault("Method", "unet")
        self.scriptedEffect.setParameterDefault("DiameterMm", fx.DEFAULT_DIAMETER_MM)
        self.scriptedEffect.setParameterDefault("Threshold", 0.5)
        self.scriptedEffect.setParameterDefault("ModelPath", "")
        self.scriptedEffect.setParameterDefault("Device", "cpu")
        self.scriptedEffect.setParameterDefault("Preview", 1)
        self.scriptedEffect.setParameterDefault("Replace", 0)

    def updateGUIFromMRML(self):
        widgets = [self.methodComboBox, self.sizeSlider, self.thresholdSlider, self.modelPathLineEdit,
                   self.deviceComboBox, self.previewCheckBox, self.replaceCheckBox]
        blocked = [w.blockSignals(True) for w in widgets]
        method = self.scriptedEffect.parameter("Method")
        self.methodComboBox.setCurrentIndex(max(0, self.methodComboBox.findData(method)))
        self.sizeSlider.value = self.scriptedEffect.doubleParameter("DiameterMm")
        self.thresholdSlider.value = self.scriptedEffect.doubleParameter("Threshold")
        self.modelPathLineEdit.currentPath = self.scriptedEffect.parameter("ModelPath")
        self.deviceComboBox.setCurrentIndex(max(0, self.deviceComboBox.findText(self.scriptedEffect.parameter("Device"))))
        self.previewCheckBox.checked = self.scriptedEffect.integerParameter("Preview") != 0
        self.replaceCheckBox.checked = self.scriptedEffect.integerParameter("Replace") != 0
        for w, b in zip(widgets, blocked):
            w.blockSignals(b)
        unet = method != "sphere"
        for w in (self.thresholdSlider, self.modelPathLineEdit, self.deviceComboBox):
            w.enabled = unet
        self.applyButton.enabled = self._click is not None
        self.cancelButton.enabled = self._click is not None

    def updateMRMLFromGUI(self):
        self.scriptedEffect.setParameter("Method", fx.METHODS[max(0, self.methodComboBox.currentIndex)])
        self.scriptedEffect.setParameter("DiameterMm", self.sizeSlider.value)
        self.scriptedEffect.setParameter("Threshold", self.thresholdSlider.value)
        self.scriptedEffect.setParameter("ModelPath", self.modelPathLineEdit.currentPath)
        self.scriptedEffect.setParameter("Device", self.deviceComboBox.currentText)
        self.scriptedEffect.setParameter("Preview", 1 if self.previewCheckBox.checked else 0)
        self.scriptedEffect.setParameter("Replace", 1 if self.replaceCheckBox.checked else 0)

    def deactivate(self):
        self._press, self._press3d = None, None
        self._discardPending(_("Lesion (click): the pending preview was discarded (effect deactivated)."))

    def referenceGeometryChanged(self):
        self._discardPending(_("The segmentation geometry changed: the pending preview was discarded."))

    def sourceVolumeNodeChanged(self):
        self._discardPending(_("The source volume changed: the pending preview was discarded."))

    def _discardPending(self, message):
        """Cancel a pending preview (its labelmap no longer matches the editor's grid / source) and say so."""
        self._press = None
        if self._click is None and self._preview is None:
            return
        self.onCancel(keepMessage=True)
        self._say(message)

    # ------------------------------------------------------------------------------------------ mouse
    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        abortEvent = False
        if eventId == vtk.vtkCommand.LeaveEvent:
            self._press, self._press3d = None, None      # a drag that leaves the view is no click
            return abortEvent
        if viewWidget.className() != "qMRMLSliceWidget":
            self._process3D(callerInteractor, eventId, viewWidget)
            return abortEvent
        xy = callerInteractor.GetEventPosition()
        if callerInteractor.GetShiftKey() or callerInteractor.GetControlKey():
            if eventId == vtk.vtkCommand.LeftButtonReleaseEvent:
                self._press = None                      # the press became one of Slicer's own gestures
            return abortEvent  # Slicer's own: crosshair, slice translate, blend
        if eventId == vtk.vtkCommand.LeftButtonPressEvent:
            self._press = (xy, self.xyToRas(xy, viewWidget), bool(callerInteractor.GetAltKey()), viewWidget)
            abortEvent = True
        elif eventId == vtk.vtkCommand.MouseMoveEvent and self._press is not None:
            if self._press[3] is not viewWidget:
                return abortEvent
            radius = self._distance(self._press[1], self.xyToRas(xy, viewWidget))
            slicer.util.showStatusMessage(_("Lesion diameter: {d:.1f} mm").format(d=2 * radius), 1000)
            abortEvent = True
        elif eventId == vtk.vtkCommand.LeftButtonReleaseEvent and self._press is not None:
            pressXy, ras, alt, pressView = self._press
            self._press = None
            if pressView is not viewWidget:
                return abortEvent                       # pressed in another view: not a click here
            dragged = max(abs(xy[0] - pressXy[0]), abs(xy[1] - pressXy[1])) > DRAG_PIXELS
            diameter = 2 * self._distance(ras, self.xyToRas(xy, viewWidget)) if dragged else None
            self.onClick(ras, diameter, negative=alt)
            abortEvent = True
        return abortEvent

    def _process3D(self, callerInteractor, eventId, viewWidget):
        """A plain click (not a rotation) in a 3D view: say where to click. The event is not consumed."""
        xy = callerInteractor.GetEventPosition()
        if eventId == vtk.vtkCommand.LeftButtonPressEvent:
            self._press3d = (xy, viewWidget)
        elif eventId == vtk.vtkCommand.LeftButtonReleaseEvent and self._press3d is not None:
            pressXy, pressView = self._press3d
            self._press3d = None
            if pressView is viewWidget and max(abs(xy[0] - pressXy[0]), abs(xy[1] - pressXy[1])) <= DRAG_PIXELS:
                self._say(_("Lesion (click) works in slice views: click the lesion centre in a slice view."))

    @staticmethod
    def _distance(a, b):
        return sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)) ** 0.5

    def onClick(self, ras, diameter=None, negative=False):
        """A click (world RAS): a new lesion, a resize (drag starting on the pending lesion) or a correction
        of the pending one. The pending prompt is copied: it changes only when the new result is computed."""
        pending = self._prompt
        segNode = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        try:
            onPending = pending is not None and fx.inside_label(self._click, ras, segNode)
        except SlicerCADError as exc:
            self._say(str(exc))
            return
        sphere = (self.scriptedEffect.parameter("Method") or "unet") == "sphere"
        if negative or (onPending and diameter is None):
            if pending is None:
                self._say(_("Alt+click adds a negative correction to a previewed lesion: click the lesion first."))
                return
            if sphere:
                self._say(_("Sphere ignores correction clicks: drag from the lesion to resize it, or use U-Net."))
                return
            prompt = fx.copy_prompt(pending)
            (prompt.negatives_ras if negative else prompt.positives_ras).append(tuple(ras))
        elif onPending:   # a drag starting on the pending lesion: its new size, same centre and corrections
            prompt = fx.copy_prompt(pending, diameter_mm=max(float(diameter), 2.0))
        else:
            if pending is not None and not self.onApply():
                return
            if diameter is not None:
                self.scriptedEffect.setParameter("DiameterMm", max(diameter, 2.0))
            size = diameter if diameter is not None else self.scriptedEffect.doubleParameter("DiameterMm")
            prompt = fx.ClickPrompt(tuple(ras), max(float(size), 2.0))
        self._run(prompt)

    # ----------------------------------------------------------------------------------------- compute
    def _say(self, text):
        self.statusLabel.text = text
        slicer.util.showStatusMessage(text, 5000)

    def _run(self, prompt):
        method = self.scriptedEffect.parameter("Method") or "unet"
        if not self.scriptedEffect.confirmCurrentSegmentVisible():
            self._say(_("The selected segment is hidden: nothing was changed."))
            return
        try:
            fx.target_segment(self.scriptedEffect.parameterSetNode(), allow_hidden=True)
        except SlicerCADError as exc:
            self._say(str(exc))
            return
        if method == "unet" and not dependencies.ready_or_explain(_("Weak Label Segmenter"), self.statusLabel):
            return
        target = _EffectTarget(self.scriptedEffect)
        with slicer.util.tryWithErrorDisplay(_("Lesion segmentation failed."), waitCursor=True):
            try:
                model, card = (None, None)
                if method == "unet":
                    model, card = fx.load_model(self.scriptedEffect.parameter("ModelPath") or None)
                image = target.source_image()
                seg_node = target.node.GetSegmentationNode()
                to_world = fx.segmentation_to_world(seg_node)
                if image is not None and fx.inside_source(image, prompt.center_ras, to_world) \
                        and not fx.editable_at(target.node, image, prompt.center_ras, to_world):
                    self._say(_("The click lies outside the editable area (Masking settings): nothing was changed."))
                    return
                click = fx.compute_click(image, prompt, method, model, card, self.scriptedEffect.parameter("Device"),
                                         self.scriptedEffect.doubleParameter("Threshold"), seg_node)
            except SlicerCADError as exc:
                self._say(str(exc))
                return
            self._prompt, self._click = prompt, click
            notes = list(click.messages)
            if self.scriptedEffect.integerParameter("Preview"):
                self._preview = fx.show_preview(slicer.mrmlScene, seg_node, click.labelmap, self._preview)
                notes.insert(0, _("Preview: {v:.2f} mL. Apply to keep it, Cancel to discard it.").format(
                    v=click.result.volume_mm3 / 1000.0))
                self._say("\n".join(notes))
                self.updateGUIFromMRML()
            else:
                self.onApply()

    def onApply(self):
        """Write the pending lesion; True when written (or nothing was pending)."""
        if self._click is None:
            return True
        target = _EffectTarget(self.scriptedEffect)
        written = False
        with slicer.util.tryWithErrorDisplay(_("Could not write the lesion."), waitCursor=True):
            try:
                click = fx.commit(target, self._click, self.scriptedEffect.integerParameter("Replace") != 0)
                self._say("\n".join([_("Written: {n} voxels.").format(n=click.written_voxels)] + click.messages))
                written = True
            except SlicerCADError as exc:
                self._say(str(exc))
        self.onCancel(keepMessage=True)
        return written

    def onCancel(self, keepMessage=False):
        if self._preview is not None:
            slicer.mrmlScene.RemoveNode(self._preview)
        self._preview, self._prompt, self._click = None, None, None
        if not keepMessage and hasattr(self, "statusLabel"):
            self.statusLabel.text = ""
        if hasattr(self, "applyButton"):
            self.updateGUIFromMRML()

    def cleanup(self):
        """Undo every signal/slot connection made in setupOptionsFrame (see the base class)."""
        for widget, signal, slot in self._connections:
            try:
                widget.disconnect(signal, slot)
            except (AttributeError, ValueError, RuntimeError):
                logging.debug("LesionClick: could not disconnect %s", signal)
        self._connections = []
