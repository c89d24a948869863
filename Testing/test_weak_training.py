"""WeakLabelSegmenter 'Add to training set' and 'Fine-tune' on real MRML (slicer-core): a corrected segment is
exported through the engine (de-identified, audited against its DICOM source) on the sample path the U-Net
serves with, and a real ``slicercad train weak_lesion`` subprocess fine-tunes from a model's weights, with
progress and a cancel that ends its whole process tree. Data: the SYNTHETIC lesion phantom."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "WeakLabelSegmenter"))

from job_polling import cancel_and_check_tree, poll_until  # noqa: E402
from slicercad.dicom.write import write_series  # noqa: E402
from slicercad.engine.audit import audit_export  # noqa: E402
from slicercad.engine.export import crop_box  # noqa: E402
from slicercad.errors import DicomError, InputError, ManifestError, ModelError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from slicercad.synth.weak_lesions import generate_weak_lesions  # noqa: E402
from slicercad.weak.crop import canonical_crop, resample_onto  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node, volume_node_to_sitk  # noqa: E402
from WeakLabelSegmenterLib import logic as weak  # noqa: E402
from WeakLabelSegmenterLib import training  # noqa: E402

SECRET = b"site-secret-for-tests"
PATIENT = {"PatientID": "MRN-4711", "PatientName": "DOE^JANE", "PatientBirthDate": "19600101"}


def _sphere(scene, volume, lesion, name="L1"):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    points.AddControlPoint(list(lps_to_ras(lesion.center_lps)), name)
    marks = weak.lesion_marks(points, default_diameter_mm=lesion.diameter_mm)
    node, ids = weak.add_sphere_segments(volume, marks)
    return node, ids[0]


def test_export_of_a_dicom_volume_is_deidentified_and_gives_the_served_network_input(scene, tmp_path):
    lesion = generate_weak_lesions(1, 2, "liver_mri", diameter_range=(12.0, 14.0))[0]
    write_series(lesion.image, tmp_path / "study", modality="MR", series_description="T1 HBP", patient=PATIENT)
    load_study(scene, tmp_path / "study")
    volume = next(n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if n.GetAttribute("SlicerCAD.files"))
    node, seg_id = _sphere(scene, volume, lesion)
    dataset = tmp_path / "dataset"
    row = training.add_to_training_set(dataset, volume, node, seg_id, "reader 1", SECRET)
    les = row["lesions"][0]
    assert les["label"] == "lesion" and les["provenance"]["edited"] is False
    prediction = les["provenance"]["model_prediction"]
    assert prediction["method"] == "sphere" and prediction["prompt_diameter_mm"] == pytest.approx(lesion.diameter_mm)
    # the row is the label's own centroid and equivalent diameter (training jitters around them), not the prompt
    assert les["diameter_mm"] == pytest.approx(lesion.diameter_mm, rel=0.05)
    mark = training.lesion_from_segment(node, seg_id, volume)
    np.testing.assert_allclose(les["center"], mark.center_lps, atol=1e-6)
    assert les["diameter_mm"] == pytest.approx(mark.diameter_mm)
    source = training.export_source_tags(volume)
    assert source["PatientID"] == "MRN-4711" and audit_export(dataset, source) == []
    again = training.add_to_training_set(dataset, volume, node, seg_id, "reader 1", SECRET)   # idempotent
    assert again["case_id"] == row["case_id"]
    assert len((dataset / "manifest.jsonl").read_text().splitlines()) == 1
    # one sample path: the task's canonical crop of the exported crop == the served crop of the full volume,
    # at the prompt and at the farthest training jitter (centre 0.25 d off, size +20 %)
    exported = sitk.ReadImage(str(dataset / row["images"]["image"]), sitk.sitkFloat32)
    mask = sitk.ReadImage(str(dataset / les["mask"]))
    full = volume_node_to_sitk(volume)
    d = les["diameter_mm"]
    axis = np.array(full.GetDirection()).reshape(3, 3)[:, 0]          # along an image axis: the box's worst case
    for offset, size in ((0.0, 1.0), (0.25, 1.2)):
        c = np.array(les["center"]) + offset * d * axis
        served, trained = canonical_crop(full, c, d * size), canonical_crop(exported, c, d * size)
        assert trained.outside_fraction == served.outside_fraction < 0.05    # the box clips only where the scan ends
        np.testing.assert_allclose(trained.x, served.x, atol=1e-5)
        full_mask = sitk.GetImageFromArray(training.segment_prompt(node, seg_id, volume)["mask"])
        full_mask.CopyInformation(full)
        np.testing.assert_array_equal(resample_onto(mask, trained.grid, False), resample_onto(full_mask, served.grid,
                                                                                               False))
    # control: a box without the jitter margin (crop of the prompt's own field of view) loses that crop's edge
    small = crop_box(full, les["center"], 2.5 * d, "control")
    assert canonical_crop(small, c, d * size).outside_fraction > 0.05


def test_edited_flag_hand_drawn_segments_and_bad_input(scene, tmp_path):
    lesion = generate_weak_lesions(1, 3, "lung_ct", diameter_range=(10.0, 12.0))[0]
    volume = sitk_to_volume_node(lesion.image, scene, name="CT")                # not from DICOM
    node, seg_id = _sphere(scene, volume, lesion)
    with pytest.raises(DicomError, match="give a patient ID"):
        training.add_to_training_set(tmp_path / "ds", volume, node, seg_id, "reader 1", SECRET)
    with pytest.raises(InputError, match="dataset folder"):
        training.add_to_training_set("", volume, node, seg_id, "reader 1", SECRET, "P1")
    with pytest.raises(InputError, match="annotator"):
        training.add_to_training_set(tmp_path / "ds", volume, node, seg_id, " ", SECRET, "P1")
    truth = sitk.GetArrayFromImage(lesion.mask)
    node, drawn = weak.add_segment(truth, volume, node, "drawn", "sphere")      # digest, but no prompt
    prompt = training.segment_prompt(node, drawn, volume)
    assert prompt["edited"] is False and prompt["method"] == "sphere"
    assert np.linalg.norm(prompt["center_lps"] - lesion.center_lps) < 1.0      # centroid of the mask
    assert prompt["diameter_mm"] == pytest.approx(lesion.diameter_mm, rel=0.05)
    segment = node.GetSegmentation().GetSegment(drawn)
    segment.SetTag(weak.DIGEST_TAG, weak.mask_digest(np.roll(truth, 1, axis=0)))  # as if the voxels changed
    assert training.segment_prompt(node, drawn, volume)["edited"] is True
    panel = SimpleNamespace(segmentation=node, inputVolume=volume, datasetFolder=tmp_path / "ds",
                            annotator="reader 2", patientId="P1", modelPath=Path("."))
    assert "(edited) added to the training set" in training.add_panel_segment(panel, "drawn", SECRET)
    with pytest.raises(InputError, match="choose a segment"):
        training.add_panel_segment(panel, "no such segment", SECRET)
    with pytest.raises(InputError, match="site secret"):
        training.add_panel_segment(panel, "drawn", b"")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two SYNTHETIC patients' corrected segments exported from a scene, and a tiny starting model."""
    import torch

    import slicer

    from SlicerCADLib.app import close_scene, ensure_scene
    from slicercad.engine.registry import save_model
    from slicercad.weak.task import WEAK_LESION, build_model, model_card

    root = tmp_path_factory.mktemp("weak_train")
    scene = ensure_scene(slicer.vtkMRMLScene())
    for i, lesion in enumerate(generate_weak_lesions(2, 5, "brain_t1c", diameter_range=(10.0, 14.0))):
        volume = sitk_to_volume_node(lesion.image, scene, name=f"T1c{i}")
        node, seg_id = _sphere(scene, volume, lesion, f"L{i}")
        training.add_to_training_set(root / "dataset", volume, node, seg_id, "reader 1", SECRET, f"P{i}")
    cfg = WEAK_LESION.config({"channels": [4, 8, 8], "crop_px": 16, "size_jitter": 0.1})  # not the default
    torch.manual_seed(0)
    card = save_model(build_model(cfg), model_card(cfg, "tiny-start", {}), root / "start")
    close_scene(scene)
    return root / "dataset", card


def test_fine_tune_subprocess_starts_from_the_model_and_selects_its_new_card(dataset):
    from safetensors.torch import load_file

    from slicercad.engine.registry import load_model

    folder, start_card = dataset
    panel = SimpleNamespace(datasetFolder=folder, fineTuneEpochs=1, device="cpu", modelPath=start_card)
    job = training.start_panel_fine_tune(panel)
    status, seen = poll_until(job, lambda s: s["state"] != "running")
    assert status["state"] == "finished", status["message"]
    assert any(s.get("epoch") == 1 and s.get("loss") is not None for s in seen) and status["fraction"] == 1.0
    model, card = load_model(status["card"], task="weak_lesion")
    init = card["model_config"]["init_weights"]
    assert Path(init["path"]).parent == job.out and card["model_config"]["channels"] == [4, 8, 8]
    assert card["training"]["lr"] == training.FINE_TUNE_LR and card["training_data"]["n_patients"]["train"] >= 1
    start = load_file(str(start_card.parent / json.loads(start_card.read_text())["weights"]))
    tuned = model.state_dict()
    assert set(start) == set(tuned)
    assert any(not np.allclose(start[k].numpy(), tuned[k].numpy()) for k in start)          # it trained
    assert training.train_job.poll_panel_training(job, panel)["state"] == "finished"
    assert panel.modelPath == Path(status["card"])
    # the panel's poll hands the new card to the Segment Editor effect as well (its ModelPath parameter)
    import slicer
    import vtk

    editor = slicer.vtkMRMLScriptedModuleNode()     # stands in for vtkMRMLSegmentEditorNode (not in slicer-core)
    editor.SetAttribute(training.effect_model_parameter(), str(start_card))
    nodes = vtk.vtkCollection()
    nodes.AddItem(editor)
    scene = SimpleNamespace(GetNodesByClass=lambda name: nodes if name == "vtkMRMLSegmentEditorNode" else None)
    scores = training.validation_dice(status["card"], start_card, folder)   # both on the run's validation split
    assert scores["n_val"] >= 1 and 0.0 <= scores["new"] <= 1.0 and 0.0 <= scores["start"] <= 1.0

    def polled(new, start):
        """A finished job polled with validation Dice ``new`` (fine-tuned) vs ``start``: (panel, status line)."""
        panel2, panel_training = SimpleNamespace(modelPath=start_card, datasetFolder=folder), \
            training.train_job.PanelTraining()
        panel_training.job = job
        _, text, running = training.poll_fine_tune(panel_training, panel2, scene,
                                                   lambda *a: {"new": new, "start": start, "n_val": 2})
        assert running is False and panel_training.last[1] == text
        return panel2, text

    panel2, text = polled(0.4, 0.6)                 # worse than the starting model: kept, and said
    assert panel2.modelPath == start_card and "kept the starting model" in text
    assert editor.GetAttribute("LesionClick.ModelPath") == str(start_card)
    panel2, text = polled(0.7, 0.6)                 # better: panel and effect switch to it
    assert str(panel2.modelPath) == status["card"] == editor.GetAttribute("LesionClick.ModelPath")
    assert "0.700 vs 0.600" in text


def test_fine_tune_cancel_kills_the_process_tree_and_bad_datasets_are_named(dataset, tmp_path):
    folder, start_card = dataset
    class NoEarlyStop(training.FineTuneJob):   # a tiny set stops early; on a loaded machine before the first poll
        def extra_args(self, out):
            return [*super().extra_args(out), "--patience", "500"]

    job = NoEarlyStop(folder, start_card, epochs=500, batch_size=1, device="cpu")
    assert (job.overrides["size_jitter"], job.overrides["max_offset"]) == (0.1, 0.25)   # the card's, as exported
    job.start()
    status, _ = poll_until(job, lambda s: s.get("epoch") is not None or s["state"] != "running")
    assert status["state"] == "running" and 0.0 < status["fraction"] < 1.0
    final = cancel_and_check_tree(job)
    assert final["state"] == "cancelled" and final["card"] is None
    assert not list((job.out / "model").glob("*.json"))
    with pytest.raises(ManifestError, match="no manifest.jsonl"):
        training.FineTuneJob(tmp_path, start_card)
    with pytest.raises(ModelError, match="not 'weak_lesion'"):
        training.read_card(Path(__file__).parents[1] / "Resources" / "Models" / "liver_lesion_demo.json")
