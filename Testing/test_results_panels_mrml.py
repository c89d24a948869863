"""The panels' "Save results as DICOM" Lib paths on real MRML (slicer-core) and SYNTHETIC studies: LiverLesionCAD's
classify results as SEG (sphere ROIs) + TID 1500 SR through the CLI's writer, read back equal to the results; the
WeakLabelSegmenter segmentation as a SEG with each segment's own origin. The DICOM database is a stand-in recording
``insert`` (ctkDICOMDatabase needs the application)."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
for module in ("LiverLesionCAD", "WeakLabelSegmenter"):
    if str(ROOT / module) not in sys.path:
        sys.path.insert(0, str(ROOT / module))

from slicercad.dicomio.seg import read_seg, segment_info  # noqa: E402
from slicercad.dicomio.sr import read_measurement_report  # noqa: E402
from slicercad.errors import InputError  # noqa: E402

torch.set_num_threads(1)
CFG = {"channels": [8, 16, 16], "roi_px": 32}


class Database:
    def __init__(self):
        self.inserted = []

    def insert(self, path, store, thumbnail):
        self.inserted.append(path)


def _card(folder, seed=0):
    from slicercad.engine.registry import save_model
    from slicercad.liver.task import LIVER_LESION, build_model, model_card

    torch.manual_seed(seed)
    return save_model(build_model(LIVER_LESION.config(CFG)), model_card(CFG, 1.0, f"dicom-{seed}", {}), folder)


@pytest.fixture(scope="module")
def liver_study(tmp_path_factory):
    from slicercad.synth.study import write_phantom_study

    folder = tmp_path_factory.mktemp("liver")
    return folder / "study", write_phantom_study(folder / "study", "liver_mri", seed=5), _card(folder / "model")


def _panel(scene, study, card_path, out):
    from LiverLesionCADLib import workflow
    from SlicerCADLib.study import load_study
    from slicercad.geometry import lps_to_ras

    folder, truth = study
    load_study(scene, folder)
    p = SimpleNamespace(**{f: None for f in workflow.PHASE_FIELDS}, lesionPoints=None, modelPath=card_path,
                        device="cpu", alpha=0.1, overrideAlpha=False, overlay="Grad-CAM", resultsTable=None,
                        phaseOffsets="", resultsFolder=out)
    workflow.fill_phases(scene, p)
    p.lesionPoints = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    for i, lesion in enumerate(truth["lesions"], 1):
        ras = lps_to_ras(lesion["center_lps"])
        p.lesionPoints.AddControlPoint(ras.tolist(), f"L{i}")
        line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"L{i} diameter")
        line.AddControlPoint((ras - [lesion["diameter_mm"] / 2, 0, 0]).tolist())
        line.AddControlPoint((ras + [lesion["diameter_mm"] / 2, 0, 0]).tolist())
    return p


def test_liver_panel_results_as_seg_and_sr_equal_to_the_results(scene, liver_study, tmp_path):
    from LiverLesionCADLib import workflow
    from slicercad.dicom.volume import load_volume
    from slicercad.dicomio.results import liver_results

    folder, truth, card_path = liver_study
    p = _panel(scene, (folder, truth), card_path, tmp_path / "out")
    last = {}
    workflow.classify_panel(p, last)
    lesions = workflow.panel_lesions(p)
    results = [workflow.stored_result(p, lesion, last) for lesion in lesions]
    db = Database()
    seg, sr = workflow.save_panel_dicom(p, last, database=db)
    assert db.inserted == [str(seg), str(sr)] and seg.parent == tmp_path / "out" / truth["study_uid"]
    back = read_measurement_report(sr)
    hbp = sorted((folder / next(d.name for d in folder.iterdir() if d.name.endswith("hepatobiliary"))).glob("*"))
    assert back["source_series_uid"] == str(pydicom.dcmread(hbp[0]).SeriesInstanceUID)
    assert back["algorithm"]["model_sha256"] == results[0]["provenance"]["model_sha256"]
    assert [x.lesion_id for x in back["lesions"]] == [r["lesion_id"] for r in results]
    for row, r, lesion in zip(back["lesions"], results, lesions, strict=True):
        assert row.predicted_class == r["predicted_class"]
        assert row.probabilities == pytest.approx({k: float(v) for k, v in r["probabilities"].items()}, abs=1e-6)
        assert np.allclose(row.centre_lps, lesion.center_lps(), atol=1e-3)
        assert row.diameter_mm == pytest.approx(lesion.diameter_mm, abs=1e-3)
    image, _ = load_volume(hbp)
    info = segment_info(seg)
    assert [i["label"] for i in info] == [f"{r['lesion_id']} sphere" for r in results]
    assert all(i["algorithm_type"] == "SEMIAUTOMATIC" for i in info) and read_seg(seg, hbp, image)[1].any()
    cli = liver_results(folder, lesions, tmp_path / "cli", card_path=card_path)      # the CLI: the same rows
    assert [vars(x) for x in read_measurement_report(cli["sr"])["lesions"]] == [vars(x) for x in back["lesions"]]


def test_liver_panel_refuses_stale_results_and_another_model(scene, liver_study, tmp_path):
    from LiverLesionCADLib import workflow

    folder, truth, card_path = liver_study
    p = _panel(scene, (folder, truth), card_path, tmp_path / "out")
    with pytest.raises(InputError, match="press Classify first"):
        workflow.save_panel_dicom(p, {}, database=False)                    # never classified
    last = {}
    workflow.classify_panel(p, last)
    p.modelPath = _card(tmp_path / "other", seed=1)
    with pytest.raises(InputError, match="classify again with this model"):
        workflow.save_panel_dicom(p, last, database=False)
    p.modelPath = card_path
    position = [0.0, 0.0, 0.0]
    p.lesionPoints.GetNthControlPointPosition(0, position)
    p.lesionPoints.SetNthControlPointPosition(0, position[0] + 2.0, position[1], position[2])
    with pytest.raises(InputError, match="press Classify first"):
        workflow.save_panel_dicom(p, last, database=False)                  # a moved point: its result is stale
    assert not (tmp_path / "out").exists()


def test_weak_segmentation_as_seg_with_each_segments_origin(scene, tmp_path):
    import SimpleITK as sitk
    import vtk

    from SlicerCADLib.dicom_results import CORRECTED_TAG, results_folder
    from SlicerCADLib.segmentations import label_array_to_segment
    from SlicerCADLib.study import load_study
    from slicercad.dicom.volume import load_volume
    from slicercad.dicom.write import write_series
    from WeakLabelSegmenterLib import logic as weak
    from WeakLabelSegmenterLib.training import read_card

    image = sitk.GetImageFromArray(np.random.default_rng(3).normal(100, 10, (6, 24, 20)).astype(np.float32))
    files = write_series(image, tmp_path / "mr", modality="MR", series_description="SYNTHETIC")
    (volume,) = load_study(scene, tmp_path / "mr").volume_nodes.values()
    masks = [np.zeros((6, 24, 20), np.uint8) for _ in range(3)]
    for n, m in enumerate(masks):
        m[1:4, 2 + 7 * n:6 + 7 * n, 4:10] = 1
    node, sphere = weak.add_segment(masks[0], volume, None, "L1 sphere", "sphere")
    _, unet = weak.add_segment(masks[1], volume, node, "L2 U-Net", "unet")
    label_array_to_segment(masks[2], volume, node, name="drawn")
    node.GetSegmentation().GetSegment(unet).SetTag(weak.DIGEST_TAG, weak.mask_digest(masks[0]))  # as if edited
    card = read_card(None)                                                      # the panel's default: bundled
    p = SimpleNamespace(segmentation=node, inputVolume=volume, modelPath=Path(), resultsFolder=tmp_path / "results")
    db = Database()
    (path,) = weak.save_panel_segmentation(p, database=db)
    assert db.inserted == [str(path)]
    assert path.parent == results_folder(p.resultsFolder, "WeakLabelSegmenter", volume)
    assert path.parent.name == str(pydicom.dcmread(files[0]).StudyInstanceUID)
    assert results_folder(None, "X", files) == results_folder("", "X", volume) != path.parent   # files (a TI scout)
    with pytest.raises(InputError, match="select the volume"):
        results_folder(None, "X", [])
    a, b, c = segment_info(path)
    assert [x["algorithm_type"] for x in (a, b, c)] == ["SEMIAUTOMATIC", "SEMIAUTOMATIC", "MANUAL"]
    assert b["model_sha256"] == card["sha256"] and a.get("model_sha256") is None and "sphere ROI" in a["algorithm_name"]
    assert weak.tag_corrected_segments(node, volume) == ["L2 U-Net"]
    tag = vtk.reference("")
    assert node.GetSegmentation().GetSegment(sphere).GetTag(CORRECTED_TAG, tag) and str(tag) == "false"
    ref, _ = load_volume(files)
    labels = read_seg(path, files, ref)
    assert all(np.array_equal(labels[k + 1] > 0, masks[k] > 0) for k in range(3))
