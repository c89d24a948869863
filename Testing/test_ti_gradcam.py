"""Grad-CAM of a TI-scout frame: the core map lies on the frame's grid (aligned with the CNN input's
map; a flipped map is shown to fail that check), and the Lib shows it as the foreground overlay on
the chosen frame's geometry in real MRML (slicer-core). SYNTHETIC phantom frames."""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CardiacTICorrector"))

from slicercad.errors import InputError  # noqa: E402
from slicercad.ti.phantom import make_scout, write_scout_dicom  # noqa: E402


@pytest.fixture(scope="module")
def bundled():
    from slicercad.ti.cli import load_default_model

    return load_default_model("bundled")


def test_frame_cam_is_on_the_frame_grid_and_aligned_with_the_input_map(bundled):
    import torch

    from slicercad.engine.gradcam import grad_cam
    from slicercad.ti.cam import frame_cam
    from slicercad.ti.features import crop_box, frame_input, resize

    model, card = bundled
    frame = make_scout(3, snr=40, n_frames=12, shape=(96, 112)).frames[5]
    cam, cls, proba = frame_cam(model, card, frame)
    assert cam.shape == frame.shape and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() <= 1.0 and cam.max() > 0.5 and cam.std() > 0.01
    assert cls == int(np.argmax(proba)) and proba.sum() == pytest.approx(1.0, abs=1e-5)
    size = card["input_spec"]["roi_px"][0]
    on_input = grad_cam(model, torch.from_numpy(frame_input(frame)[None, None]), "last_conv", cls)[0]
    box = crop_box(frame.shape)
    outside = np.ones(frame.shape, bool)
    outside[box] = False
    assert outside.any() and cam[outside].max() == 0.0             # the CNN never sees outside its crop
    err = lambda m: float(np.abs(resize(m, (size, size)) - on_input).max())  # noqa: E731
    assert err(cam[box]) < 0.05
    assert err(cam[box][::-1]) > 0.2 and err(cam[box][:, ::-1]) > 0.2   # CONTROL: a flipped map is not aligned
    other, _, _ = frame_cam(model, card, frame, class_idx=(cls + 3) % len(card["classes"]))
    assert np.abs(other - cam).max() > 0.05                        # the map depends on the class explained
    with pytest.raises(InputError, match="NaN"):
        frame_cam(model, card, np.full((32, 32), np.nan, np.float32))


def test_show_frame_cam_overlays_the_chosen_frame(scene, tmp_path, bundled):
    from CardiacTICorrectorLib.gradcam import CAM_OVERLAY, show_frame_cam
    from CardiacTICorrectorLib.scout import load_scout
    from SlicerCADLib.volumes import volume_node_to_sitk

    model, card = bundled
    ph = make_scout(8, snr=50, n_frames=10, shape=(96, 96))
    write_scout_dicom(ph, tmp_path, seed=4)
    ((seq, browser, _),) = load_scout(scene, tmp_path)
    composites = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(2)]   # two slice views
    shown = show_frame_cam(scene, seq, model, card, 4, browser)
    node, frame_node = shown["node"], shown["frame_node"]
    assert node.GetName() == CAM_OVERLAY and shown["category"] in card["classes"]
    assert shown["ti_ms"] == pytest.approx(ph.ti_ms[4], abs=0.01)
    frame_img, cam_img = volume_node_to_sitk(seq.GetNthDataNode(4)), volume_node_to_sitk(node)
    assert np.allclose(sitk.GetArrayFromImage(volume_node_to_sitk(frame_node)), sitk.GetArrayFromImage(frame_img))
    assert cam_img.GetSize() == frame_img.GetSize()
    assert np.allclose(cam_img.GetOrigin(), frame_img.GetOrigin()) and np.allclose(cam_img.GetSpacing(),
                                                                                   frame_img.GetSpacing())
    assert np.allclose(cam_img.GetDirection(), frame_img.GetDirection())
    assert np.allclose(sitk.GetArrayFromImage(cam_img)[0], shown["cam"], atol=1e-6)
    for c in composites:
        assert c.GetForegroundVolumeID() == node.GetID() and c.GetBackgroundVolumeID() == frame_node.GetID()
    again = show_frame_cam(scene, seq, model, card, 7, browser)     # another frame: same nodes, new map
    assert again["node"] is node and again["frame_node"] is frame_node
    assert not np.allclose(sitk.GetArrayFromImage(volume_node_to_sitk(node))[0], shown["cam"])
    with pytest.raises(InputError, match="not in the scout"):
        show_frame_cam(scene, seq, model, card, 10, browser)
    with pytest.raises(InputError, match="needs the CNN"):
        show_frame_cam(scene, seq, None, None, 0, browser)
