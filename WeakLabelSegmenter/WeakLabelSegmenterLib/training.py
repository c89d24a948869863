"""'Add to training set' and 'Fine-tune' of the WeakLabelSegmenter panel. Imports ``slicer``, never Qt;
torch only in the fine-tuning subprocess.

**Add to training set** exports a segment (the reader's corrected label) with the source volume's voxels
around it through the engine's export (``slicercad.engine.export.export_lesion``: de-identified, keyed
pseudonyms, idempotent, auditable with ``slicercad audit``). The crop is the volume's own grid, no
resampling, large enough (``slicercad.weak.crop.export_crop_mm``) that the ``weak_lesion`` task cuts every
training crop of the lesion with ``canonical_crop`` -- the function serving uses -- exactly as from the
full volume. The row's centre and diameter are the label's own centroid and equivalent diameter (training
jitters its rough prompts around them, as on the phantom, so a rough click's offset never compounds with
the jitter); the prompt that made the segment (``logic.PROMPT_TAG``) is kept in the row's provenance, and
``edited`` says whether the voxels differ from what the method added (``logic.DIGEST_TAG``).

**Fine-tune** trains the ``weak_lesion`` task on that dataset in a cancellable subprocess
(``SlicerCADLib.train_job``), starting from the selected model's weights (copied into the run folder,
``init_weights``) with its architecture, crop and prompt jitter (``FROM_CARD``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SlicerCADLib import train_job
from SlicerCADLib.markups import lesion_from_segment
from SlicerCADLib.segmentations import segment_tag, segment_to_label_array
from SlicerCADLib.source_tags import source_identifiers
from SlicerCADLib.volumes import volume_node_to_sitk
from slicercad.engine.export import export_lesion
from slicercad.errors import DicomError, InputError, ModelError
from slicercad.weak.crop import CropSpec, export_crop_mm

from .logic import DIGEST_TAG, METHOD_TAG, PROMPT_TAG, mask_digest, segment_names

TASK = "weak_lesion"
LABEL = "lesion"          # the task's foreground class
PHASE = "image"           # the export's one image (the task's first channel)
ARCHITECTURE = ("channels", "strides", "num_res_units", "crop_px", "fov_factor")   # must match the weights
FROM_CARD = ARCHITECTURE + ("max_offset", "size_jitter")   # also the export box's jitter: train as exported
FINE_TUNE_LR = 3e-4       # a tenth of the from-scratch rate (slicercad.weak.experiment.train_segmenter)
FINE_TUNE_BATCH = 8


def read_card(card_path) -> dict:
    """The JSON model card of a ``weak_lesion`` model (default: the bundled demo model)."""
    from slicercad.weak.segment import demo_model_path

    path = Path(card_path) if card_path not in (None, "", ".") else demo_model_path()
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model card ({exc})", path) from None
    if card.get("task") != TASK:
        raise ModelError(f"model is for task {card.get('task')!r}, not {TASK!r}", path)
    return dict(card, card_path=str(path))


def segment_prompt(segmentation_node, segment_id: str, volume_node) -> dict:
    """The segment's ``center_lps`` and ``diameter_mm`` (its centroid and equivalent diameter), ``prompt``
    (the centre / diameter that made it, None when drawn by hand), ``method`` (``manual`` when drawn by
    hand) and ``edited`` (voxels changed since they were added)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(f"segment {segment_id!r} not found", segmentation_node.GetName())
    mask = segment_to_label_array(segmentation_node, segment_id, volume_node)
    if not mask.any():
        raise InputError("the segment is empty on the source volume's grid: nothing to export", segment.GetName())
    method = segment_tag(segment, METHOD_TAG) or "manual"
    text = segment_tag(segment, PROMPT_TAG)
    prompt = json.loads(text) if text else None
    mark = lesion_from_segment(segmentation_node, segment_id, volume_node)
    edited = segment_tag(segment, DIGEST_TAG) != mask_digest(mask)
    return {"center_lps": np.asarray(mark.center_lps, float), "diameter_mm": float(mark.diameter_mm),
            "prompt": prompt, "method": method, "edited": bool(edited), "mask": mask,
            "name": segment.GetName() or segment_id}


def export_source_tags(volume_node, patient_id: str = "") -> dict:
    """The source's identifiers: from the DICOM files behind the volume, else (a volume loaded from NRRD
    or NIfTI) the ``patient_id`` the user gives; refused when there is neither."""
    try:
        return source_identifiers(volume_node)
    except DicomError as exc:
        if not str(patient_id or "").strip():
            raise DicomError(f"{exc}; for a volume not loaded from DICOM give a patient ID for the pseudonym",
                             volume_node.GetName()) from None
        return {"PatientID": str(patient_id).strip()}


def add_to_training_set(dataset_dir, volume_node, segmentation_node, segment_id: str, annotator: str,
                        site_secret: bytes, patient_id: str = "", card_path=None) -> dict:
    """Export one segment and the volume around it into the research dataset at ``dataset_dir``; returns
    the manifest row. The crop covers the training crops of the model at ``card_path`` (default bundled)."""
    if dataset_dir in (None, "") or str(dataset_dir) == ".":
        raise InputError("choose the dataset folder first", "datasetFolder")
    if volume_node is None or segmentation_node is None:
        raise InputError("select the source volume and the segmentation", "segmentation")
    cfg = read_card(card_path)["model_config"]
    prompt = segment_prompt(segmentation_node, segment_id, volume_node)
    image = volume_node_to_sitk(volume_node)
    mask = sitk.GetImageFromArray(prompt["mask"])
    mask.CopyInformation(image)
    spec = CropSpec(int(cfg["crop_px"]), float(cfg["fov_factor"]))
    crop = export_crop_mm(prompt["diameter_mm"], spec, float(cfg["max_offset"]), float(cfg["size_jitter"]))
    record = {"center_lps": prompt["center_lps"].tolist(), "diameter_mm": prompt["diameter_mm"], "label": LABEL,
              "mask": mask, "lesion_key": f"{prompt['name']}@{segment_id}"}
    prediction = {"method": prompt["method"]}
    if prompt["prompt"]:
        prediction.update(prompt_center_lps=prompt["prompt"]["center_lps"],
                          prompt_diameter_mm=prompt["prompt"]["diameter_mm"])
    return export_lesion(dataset_dir, {PHASE: image}, record, export_source_tags(volume_node, patient_id),
                         site_secret, annotator, prompt["edited"], prediction, crop)


def add_panel_segment(p, segment_name: str, site_secret: bytes) -> str:
    """Export the panel's segment named ``segment_name``; returns a message for the panel."""
    if not site_secret:
        raise InputError("the site secret is required for the pseudonyms", "siteSecret")
    ids = [sid for sid, name in segment_names(p.segmentation) if name == segment_name]
    if not ids:
        raise InputError("choose a segment of the segmentation to export", segment_name or "segment")
    model = str(p.modelPath) if p.modelPath and str(p.modelPath) != "." else None
    row = add_to_training_set(p.datasetFolder, p.inputVolume, p.segmentation, ids[0], p.annotator, site_secret,
                              p.patientId, model)
    edited = "edited" if row["lesions"][0]["provenance"]["edited"] else "unedited"
    return f"{segment_name} ({edited}) added to the training set (case {row['case_id']})."


class FineTuneJob(train_job.TrainingJob):
    """``slicercad train weak_lesion`` on a research dataset, starting from the weights of the model at
    ``card_path`` (architecture and crop from its card); ``start()``, ``poll()``, ``cancel()``."""

    def __init__(self, dataset_dir, card_path=None, epochs: int = 10, batch_size: int = FINE_TUNE_BATCH,
                 lr: float = FINE_TUNE_LR, seed: int = 0, device: str = "auto", overrides: dict | None = None):
        manifest, _ = train_job.load_dataset(dataset_dir)
        self.card = read_card(card_path)
        weights = Path(self.card["card_path"]).parent / self.card["weights"]
        if not weights.is_file():
            raise ModelError("the model's weights file is missing beside its card", weights)
        self.weights, self.lr = weights, float(lr)
        missing = [k for k in ARCHITECTURE if k not in self.card["model_config"]]
        if missing:
            raise ModelError(f"the model card lacks {missing} in model_config", self.card["card_path"])
        arch = {k: self.card["model_config"][k] for k in FROM_CARD if k in self.card["model_config"]}
        super().__init__(dataset_dir, TASK, manifest, epochs, batch_size, seed, device, {**arch, **(overrides or {})})

    def extra_args(self, out: Path) -> list:
        """Copy the starting weights into the run folder (the new card points there) and set them."""
        from slicercad.engine.registry import sha256_file

        start = out / "init.safetensors"
        shutil.copyfile(self.weights, start)
        init = {"path": str(start), "sha256": sha256_file(start), "from": self.card.get("name", "")}
        return ["--lr", self.lr, "--set", f"init_weights={json.dumps(init)}"]


def effect_model_parameter() -> str:
    """The segment editor node attribute holding the "Lesion (click)" effect's model card."""
    from .effect_logic import EFFECT_NAME

    return f"{EFFECT_NAME}.ModelPath"


def validation_dice(new_card_path, start_card_path, dataset_dir) -> dict:
    """Mean crop Dice of the fine-tuned and the starting model on the fine-tuning run's own validation
    patients (the engine's split, recomputed from the new card's seed and fractions; no augmentation):
    ``{"new", "start", "n_val"}``."""
    import torch

    from slicercad.engine.manifest import load_manifest
    from slicercad.engine.registry import load_model
    from slicercad.engine.splits import train_val_test_split
    from slicercad.weak.segment import predict_crops
    from slicercad.weak.task import make_dataset

    new_model, new_card = load_model(new_card_path, task=TASK)
    start_model, _ = load_model(read_card(start_card_path)["card_path"], task=TASK)
    run = new_card.get("training", {})
    data = make_dataset(new_card["model_config"], load_manifest(Path(dataset_dir) / train_job.MANIFEST_NAME))
    data.augment = False
    parts = train_val_test_split(data.groups, run.get("val_fraction") or 0.2, run.get("test_fraction") or 0.0,
                                 int(run.get("seed", 0)), by=run.get("split_by", "patient"), sample_ids=data.ids)
    idx = [int(i) for i in parts["val"]]
    if not idx:
        raise InputError("the fine-tuning run has no validation patients to compare the models on", str(dataset_dir))
    xs = torch.stack([data[i][0] for i in idx]).numpy()
    ys = np.stack([data[i][1][0].numpy() > 0.5 for i in idx])

    def dice(model) -> float:
        pred = predict_crops(model, xs) >= 0.5
        inter, total = (pred & ys).sum((1, 2, 3)), pred.sum((1, 2, 3)) + ys.sum((1, 2, 3))
        return float(np.mean(np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)))

    return {"new": dice(new_model), "start": dice(start_model), "n_val": len(idx)}


def poll_fine_tune(panel_training, p, scene, compare=validation_dice) -> tuple:
    """Poll the panel's fine-tuning (``train_job.PanelTraining``). A finished job's card becomes the
    panel's model only when its validation Dice (``compare``: both models on the run's own validation
    patients) is at least the starting model's; otherwise the panel keeps its model and says so (the new
    card stays in the run folder, to pick by hand). When it switches, the Segment Editor effect "Lesion
    (click)" switches too (``ModelPath`` of every segment editor node of ``scene``)."""
    before = p.modelPath
    dataset = p.datasetFolder if hasattr(p, "datasetFolder") else None
    percent, text, running = panel_training.poll(p)
    if str(p.modelPath) != str(before):
        new = str(p.modelPath)
        start = str(before) if before and str(before) != "." else None
        scores = compare(new, start, dataset)
        text = (f"{text}; validation Dice {scores['new']:.3f} vs {scores['start']:.3f} for the starting model "
                f"(n = {scores['n_val']} crops)")
        if scores["new"] < scores["start"]:
            p.modelPath = before
            text += ": kept the starting model (the new card is in the run folder)"
        else:
            nodes = scene.GetNodesByClass("vtkMRMLSegmentEditorNode") if scene is not None else None
            for node in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())) if nodes else ():
                node.SetAttribute(effect_model_parameter(), new)
            text += ": now the panel's and the Lesion (click) effect's model"
        panel_training.last = (percent, text, running)
    return percent, text, running


def start_panel_fine_tune(p, overrides: dict | None = None) -> FineTuneJob:
    """Fine-tune the panel's model (``modelPath``, default bundled) on its ``datasetFolder`` for
    ``fineTuneEpochs`` on its ``device``."""
    model = str(p.modelPath) if p.modelPath and str(p.modelPath) != "." else None
    return FineTuneJob(p.datasetFolder, model, epochs=p.fineTuneEpochs, device=p.device, overrides=overrides).start()
