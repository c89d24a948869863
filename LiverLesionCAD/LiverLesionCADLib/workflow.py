"""The LiverLesionCAD panel's workflow, on its parameter node: notice, phase fill, per-phase offsets,
Classify, "Save results as DICOM", the phase strip and 'Add to training set'.

Functions take the parameter node (any object with the panel's fields: phase volume nodes named as in
``PHASE_FIELDS``, ``lesionPoints``, ``modelPath``, ``device``, ``alpha``,
``overrideAlpha``, ``overlay``, ``resultsTable``, ``phaseOffsets``, ``datasetFolder``, ``label``,
``annotator``, ``resultsFolder``) and the scene explicitly. Lesions: a centre point each in ``lesionPoints``
and a diameter line each: every markups line of the points' scene, matched to the nearest point (see
``SlicerCADLib.markups``). Imports ``slicer`` (through its siblings), never Qt. Loads light:
the panel's state helpers run before the dependencies are installed, so the siblings that need torch,
MONAI or scikit-learn are imported inside the functions that use them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from slicercad.errors import InputError
from slicercad.liver.classes import PRESETS
from slicercad.liver.phases import PHASES


# parameter-node field -> core phase name
PHASE_FIELDS = {"t1Pre": "T1_pre", "arterial": "arterial", "portal": "portal", "transitional": "transitional",
                "hepatobiliary": "hepatobiliary", "t2": "T2", "dwi": "DWI", "adc": "ADC"}
# every class of every preset, in preset order: the label combo's choices
LABEL_CHOICES = tuple(dict.fromkeys(c for classes in PRESETS.values() for c in classes))
SYNTHETIC_NOTICE = "Research use only - model trained on synthetic data."
OFFSETS_FIELD = "phaseOffsets"
LESION_FIELD = "Lesion"  # the panel's lesion list


def is_set(path) -> bool:
    """Whether a path field holds a path (the parameter node's empty Path reads as '.')."""
    return bool(path) and str(path) not in ("", ".")


def read_card(card_path) -> dict | None:
    """The model card at ``card_path``, or None when no readable ``.json`` card is selected."""
    if not is_set(card_path):
        return None
    path = Path(card_path)
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def model_notice(card_path) -> str:
    """``SYNTHETIC_NOTICE`` when the card says it was trained on synthetic data, else ''."""
    card = read_card(card_path) or {}
    training = card.get("training_data")
    return SYNTHETIC_NOTICE if isinstance(training, dict) and training.get("synthetic") else ""


def label_choices(card_path) -> tuple:
    """Labels the reader may give: the card's classes (those of a known preset), else the extended preset."""
    classes = (read_card(card_path) or {}).get("classes")
    known = tuple(c for c in classes if c in LABEL_CHOICES) if isinstance(classes, list) else ()
    return known or PRESETS["extended"]


def parse_offsets(text) -> dict:
    """{lesion name: {phase: (dx, dy, dz) LPS mm}} from the parameter node's JSON text ('' = none).
    Raises InputError naming the field, lesion or phase that is malformed."""
    if not str(text or "").strip():
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InputError(f"per-phase offsets are not valid JSON ({exc})", OFFSETS_FIELD) from None
    if not isinstance(raw, dict):
        raise InputError("per-phase offsets must be a JSON object {lesion: {phase: [dx, dy, dz]}}", OFFSETS_FIELD)
    offsets = {}
    for lesion, phases in raw.items():
        if not isinstance(phases, dict):
            raise InputError("expected an object {phase: [dx, dy, dz]}", f"{OFFSETS_FIELD}[{lesion}]")
        offsets[lesion] = {}
        for phase, xyz in phases.items():
            source = f"{OFFSETS_FIELD}[{lesion}][{phase}]"
            if phase not in PHASES:
                raise InputError(f"unknown phase; expected one of {list(PHASES)}", source)
            offsets[lesion][phase] = _vector(xyz, source)
    return offsets


def _vector(xyz, source) -> tuple:
    """Three finite floats from a sequence or an 'x,y,z' string."""
    values = xyz.split(",") if isinstance(xyz, str) else xyz
    try:
        vector = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"expected three numbers (LPS mm), got {xyz!r}", source) from None
    if len(vector) != 3 or not all(math.isfinite(v) for v in vector):
        raise InputError(f"expected three finite numbers (LPS mm), got {xyz!r}", source)
    return vector


def offsets_text(offsets: dict) -> str:
    """The JSON text stored in the parameter node for ``offsets`` (validated, zero offsets dropped)."""
    checked = parse_offsets(json.dumps({lesion: {p: list(v) for p, v in phases.items()}
                                        for lesion, phases in offsets.items()}))
    clean = {lesion: {p: list(v) for p, v in phases.items() if any(v)} for lesion, phases in checked.items()}
    return json.dumps({lesion: phases for lesion, phases in clean.items() if phases}, sort_keys=True)


def offset_of(text, lesion: str, phase: str) -> tuple:
    """The (dx, dy, dz) LPS mm offset of ``phase`` for ``lesion`` (zeros when none is set)."""
    return parse_offsets(text).get(lesion, {}).get(phase, (0.0, 0.0, 0.0))


def with_offset(text, lesion: str, phase: str, xyz) -> str:
    """``text`` with ``lesion``'s ``phase`` offset set to ``xyz`` (sequence or 'x,y,z' string, LPS mm)."""
    if not str(lesion or "").strip():
        raise InputError("choose a lesion before setting an offset", OFFSETS_FIELD)
    if phase not in PHASES:
        raise InputError(f"unknown phase; expected one of {list(PHASES)}", f"{OFFSETS_FIELD}[{lesion}]")
    offsets = parse_offsets(text)
    offsets.setdefault(lesion, {})[phase] = _vector(xyz, f"{OFFSETS_FIELD}[{lesion}][{phase}]")
    return offsets_text(offsets)


def coordinates_text(xyz) -> str:
    """'x,y,z' as a ctkCoordinatesWidget shows it."""
    return ",".join(str(float(v)) for v in xyz)


def phase_volumes(p) -> dict:
    """{core phase: volume node} for the phase selectors that hold a node."""
    return {phase: getattr(p, field) for field, phase in PHASE_FIELDS.items() if getattr(p, field)}


def overlay_node_ids(scene) -> list:
    """IDs of the overlay volumes SlicerCAD shows (attention, Grad-CAM): not offered as phases."""
    from SlicerCADLib.overlays import OVERLAY_ATTRIBUTE

    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [node.GetID() for node in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems()))
            if node.GetAttribute(OVERLAY_ATTRIBUTE) == "1"]


def fill_phases(scene, p) -> str:
    """Set every phase field from the phase assignment of the scene's DICOM volumes; return a summary."""
    from .phase_nodes import contrast_agent_warning, phase_nodes_from_scene

    nodes = phase_nodes_from_scene(scene)
    for field, phase in PHASE_FIELDS.items():
        if phase in nodes:
            setattr(p, field, nodes[phase])
    missing = [phase for phase in PHASES if phase not in nodes]
    warning = contrast_agent_warning(nodes)
    return (f"Phases filled: {', '.join(nodes)}" + (f"; not found: {', '.join(missing)}" if missing else "")
            + (f"\nWarning: {warning}" if warning else ""))


def diameter_lines(p) -> list:
    """Every markups line node of the lesion points' scene: the diameters (one line per lesion)."""
    from SlicerCADLib.markups import scene_line_nodes

    return scene_line_nodes(p.lesionPoints.GetScene()) if p.lesionPoints else []


def lesion_names(p) -> list:
    """Names of the marked lesions, in order ([] while a line is invalid: Classify then names it)."""
    from SlicerCADLib.markups import lesions_from_markups

    try:
        return [mark.name for mark in lesions_from_markups(p.lesionPoints, diameter_lines(p))]
    except InputError:
        return []


def panel_lesions(p) -> list:
    """Core lesions from the markups with the parameter node's per-phase offsets."""
    from .classify import lesions_from_nodes

    return lesions_from_nodes(p.lesionPoints, diameter_lines(p), parse_offsets(p.phaseOffsets))


def pick_lesion(lesions: list, name: str):
    """The lesion called ``name``; InputError naming the lesion list when ``name`` is empty (never a default)."""
    if not str(name or "").strip():
        raise InputError("choose a lesion in the panel's Lesion list first", LESION_FIELD)
    for lesion in lesions:
        if lesion.lesion_id == name:
            return lesion
    raise InputError(f"no such lesion; marked lesions are {[x.lesion_id for x in lesions]}", name)


def ready_to_classify(p) -> bool:
    """Whether the hepatobiliary phase, the lesion centres and a model card are selected."""
    return bool(p and p.hepatobiliary and p.lesionPoints and is_set(p.modelPath))


def result_summary(results) -> str:
    """One line per lesion (class, top probability, warnings), then the notice of the model."""
    lines = [f"{r['lesion_id']}: {r['predicted_class']} ({max(r['probabilities'].values()):.2f})"
             + (f" - {'; '.join(r['warnings'])}" if r["warnings"] else "") for r in results]
    notice = results[0]["notice"] if results else ""
    return "\n".join(lines + ([notice] if notice else []))


def result_key(p, lesion) -> tuple:
    """Key of a lesion's stored classification result: the points node's ID, the lesion's name, centre,
    diameter and per-phase offsets. A moved point or line, a changed offset, or another points node (another
    patient's "L1") gives another key, so "Add to training set" never exports a prediction made elsewhere."""
    node = p.lesionPoints
    offsets = tuple(sorted((phase, tuple(round(float(v), 3) for v in xyz)) for phase, xyz in lesion.offsets_mm.items()))
    return (node.GetID() if node is not None else "", lesion.lesion_id,
            tuple(round(float(c), 3) for c in lesion.center_lps()), round(float(lesion.diameter_mm), 3), offsets)


def stored_result(p, lesion, last_results: dict):
    """The classification result stored for ``lesion`` as it is marked now, or None."""
    return last_results.get(result_key(p, lesion))


def classify_panel(p, last_results: dict) -> str:
    """Classify every marked lesion; append rows to the results table (kept in ``p.resultsTable``),
    show the overlay, remember each result in ``last_results`` under ``result_key``; return the summary."""
    from .classify import classify_scene, load_liver_model

    model, card = load_liver_model(p.modelPath, p.device)
    alpha = p.alpha if p.overrideAlpha else "card"
    overlay = "cam" if p.overlay == "Grad-CAM" else "attention"
    lesions = panel_lesions(p)
    results, table, _overlay = classify_scene(model, card, phase_volumes(p), lesions, p.resultsTable,
                                              overlay=overlay, alpha=alpha, device=card["device"])
    p.resultsTable = table
    by_name = {lesion.lesion_id: lesion for lesion in lesions}
    last_results.update({result_key(p, by_name[r["lesion_id"]]): r for r in results})
    return result_summary(results)


def save_panel_dicom(p, last_results: dict, database=True) -> list:
    """The stored classification of every lesion as marked now (``stored_result``) as SEG + SR in
    ``results_folder(p.resultsFolder)`` and in Slicer's DICOM database; returns the files. A lesion new,
    moved or re-measured since Classify, or a model card changed since, is refused (classify again)."""
    from SlicerCADLib.dicom_results import liver_results_to_dicom, results_folder
    from slicercad.liver.phases import REFERENCE_PHASE

    lesions = panel_lesions(p)
    results = [stored_result(p, lesion, last_results) for lesion in lesions]
    stale = [lesion.lesion_id for lesion, r in zip(lesions, results) if r is None]
    if stale:
        raise InputError("not classified as marked now (new, moved or re-measured): press Classify first",
                         ", ".join(stale))
    card = read_card(p.modelPath)
    if card is None:
        raise InputError("select the model card the lesions were classified with", "modelPath")
    volumes = phase_volumes(p)
    folder = results_folder(p.resultsFolder, "LiverLesionCAD", volumes.get(REFERENCE_PHASE))
    return liver_results_to_dicom(results, lesions, volumes, card, folder, database=database)


def export_prediction(result, label: str):
    """(model prediction for the export or None, ``edited``: the reader's label differs from it)."""
    if result is None:
        return None, False
    prediction = {"class": result["predicted_class"], "probabilities": dict(result["probabilities"]),
                  "model_sha256": result["provenance"]["model_sha256"]}
    return prediction, prediction["class"] != label


def add_panel_lesion(p, lesion_name: str, site_secret: bytes, last_results: dict) -> str:
    """Export the named lesion with ``p.label`` / ``p.annotator`` into ``p.datasetFolder``; return a message."""
    from .training import add_to_training_set

    if not is_set(p.datasetFolder):
        raise InputError("choose the dataset folder first", "datasetFolder")
    if not site_secret:
        raise InputError("the site secret is required for the pseudonyms", "siteSecret")
    allowed = label_choices(p.modelPath)
    if p.label not in allowed:
        raise InputError(f"label {p.label!r} is not a class of the selected model; choose one of {list(allowed)}",
                         "label")
    lesion = pick_lesion(panel_lesions(p), lesion_name)
    prediction, edited = export_prediction(stored_result(p, lesion, last_results), p.label)
    row = add_to_training_set(p.datasetFolder, phase_volumes(p), lesion, p.label, p.annotator, edited,
                              prediction, site_secret)
    return f"{lesion.lesion_id} added to the training set as {p.label} (case {row['case_id']})."


def panel_phase_strip(p, lesion_name: str, path):
    """(PNG path, tile titles): every selected phase side by side at the named lesion (+ its offsets)."""
    from .phase_nodes import phase_strip_png, strip_titles

    volumes = phase_volumes(p)
    lesion = pick_lesion(panel_lesions(p), lesion_name)
    return phase_strip_png(path, volumes, lesion, size_px=128), strip_titles(volumes)
