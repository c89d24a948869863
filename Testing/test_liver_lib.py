"""LiverLesionCADLib against a real MRML scene: fiducials -> ROI centre, Classify, table, overlay pixels."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib.classify import classify_scene, lesions_from_nodes, phase_images  # noqa: E402
from slicercad.errors import InputError, ModelError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from slicercad.liver.roi import extract_rois  # noqa: E402
from slicercad.liver.task import LIVER_LESION, build_model, model_card  # noqa: E402
from slicercad.synth.liver_lesions_phantom import generate_lesions  # noqa: E402
from SlicerCADLib.render import render_slice_rgb  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node  # noqa: E402
from test_liver_roi import P, blob_image, centroid, rotation  # noqa: E402

torch.set_num_threads(1)


def _marks(scene, centre_lps, diameter):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Lesions")
    points.AddControlPoint(lps_to_ras(centre_lps).tolist(), "L1")
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L1 diameter")
    ras = lps_to_ras(centre_lps)
    line.AddControlPoint((ras - [diameter / 2, 0, 0]).tolist())
    line.AddControlPoint((ras + [diameter / 2, 0, 0]).tolist())
    return points, line


def test_fiducial_in_scene_lands_at_roi_centre_and_offset_moves_one_phase(scene):
    nodes = {"hepatobiliary": sitk_to_volume_node(
                 blob_image(P, 6.0, (60, 50, 12), (0.8, 1.1, 4.0), rotation([1, 2, 3], 20), (-10.0, -70.0, 30.0)), scene),
             "T2": sitk_to_volume_node(
                 blob_image(P, 6.0, (40, 44, 10), (1.7, 1.3, 5.0), rotation([-2, 1, 1], 12), (-20.0, -75.0, 30.0)), scene)}
    points, line = _marks(scene, P, 12.0)
    (lesion,) = lesions_from_nodes(points, line)
    assert lesion.diameter_mm == pytest.approx(12.0)
    images = phase_images(nodes)
    rois = extract_rois(images, lesion)
    for k in range(2):
        assert np.allclose(centroid(rois.array[k]), rois.center_px, atol=0.6)
    (moved,) = lesions_from_nodes(points, line, {"L1": {"T2": (0.0, 6.0, 0.0)}})
    shifted = extract_rois(images, moved)
    assert np.allclose(shifted.array[0], rois.array[0]) and not np.allclose(shifted.array[1], rois.array[1])
    with pytest.raises(InputError, match="diameter") as info:
        lesions_from_nodes(points, None)
    assert info.value.source == "L1"


def test_classify_appends_rows_and_shows_cam_at_the_lesion(scene):
    item = generate_lesions(1, seed=21)[0]
    nodes = {p: sitk_to_volume_node(img, scene, name=p) for p, img in item.images.items()}
    torch.manual_seed(0)
    cfg = {"channels": [8, 16, 16], "roi_px": 32}
    model = build_model(LIVER_LESION.config(cfg)).eval()
    card = dict(model_card(cfg, 1.0, "liver-lib-test", {}), sha256="0" * 64)
    points, line = _marks(scene, item.center_lps, item.diameter_mm)
    lesions = lesions_from_nodes(points, line)
    results, table, overlay = classify_scene(model, card, nodes, lesions)
    assert table.GetNumberOfRows() == 1 and overlay is not None
    cols = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert {"class", "p_cyst", "size_bin", "model_sha256", "alpha", "phases", "notice"} <= set(cols)
    _, table2, _ = classify_scene(model, card, nodes, lesions, table_node=table)
    assert table2 is table and table.GetNumberOfRows() == 2
    ras = lps_to_ras(item.center_lps)
    plain = render_slice_rgb(nodes["hepatobiliary"], center_ras=ras, size=(128, 128))
    hot = render_slice_rgb(nodes["hepatobiliary"], overlay, 0.5, center_ras=ras, size=(128, 128))
    cam = results[0]["cam"]
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    geom = results[0]["rois"].geometries["hepatobiliary"]
    peak_ras = lps_to_ras(np.array(geom.TransformContinuousIndexToPhysicalPoint((float(peak[1]), float(peak[0]), 0.0))))
    row, col, _ = hot.pixel_of(peak_ras)
    diff = np.abs(hot.rgb.astype(int) - plain.rgb.astype(int)).sum(-1)
    assert diff[int(round(row)), int(round(col))] > 0          # coloured where the CAM peaks
    assert (diff > 0).mean() < 0.9                              # and not over the whole view


def test_load_liver_model_and_alpha_override_is_flagged(scene, tmp_path):
    from LiverLesionCADLib.classify import load_liver_model
    from slicercad.engine.registry import save_model

    item = generate_lesions(1, seed=22)[0]
    nodes = {p: sitk_to_volume_node(img, scene, name=p) for p, img in item.images.items()}
    cfg = {"channels": [8, 16, 16], "roi_px": 32}
    card_path = save_model(build_model(LIVER_LESION.config(cfg)), model_card(cfg, 1.0, "liver-lib", {}), tmp_path)
    model, card = load_liver_model(card_path, "cpu")
    points, line = _marks(scene, item.center_lps, item.diameter_mm)
    results, table, _ = classify_scene(model, card, nodes, lesions_from_nodes(points, line), alpha=0.5,
                                       overlay="attention")
    assert any("alpha 0.5 differs" in w for w in results[0]["warnings"]) and model.alpha == 0.1
    assert results[0]["provenance"]["parameters"]["alpha"] == 0.5
    (tmp_path / "liver-lib.json").write_text((tmp_path / "liver-lib.json").read_text().replace("liver_lesion", "toy2d"))
    with pytest.raises((ModelError, InputError)):
        load_liver_model(tmp_path / "liver-lib.json")
