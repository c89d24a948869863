"""AnomalyCTLib on real MRML (slicer-core): Score puts the standardised map over the input volume as the
foreground of the slice views, on the input's grid with the normal-set threshold, and the thresholded map
becomes a new segment; a multi-slice volume given to the chest X-ray model is refused."""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AnomalyCT"))

from AnomalyCTLib import logic  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node, volume_node_to_sitk  # noqa: E402
from slicercad.anomaly import task as T  # noqa: E402
from slicercad.anomaly.detector import Detector  # noqa: E402
from slicercad.engine.tasks import get_task  # noqa: E402
from slicercad.errors import InputError  # noqa: E402
from slicercad.synth.anomaly_head import insert_anomaly, normal_head  # noqa: E402


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    spec = get_task("anomaly_glow_head3d")
    cfg = spec.config({"n_normals": 6, "steps": 1, "hidden": 8})
    data = spec.make_dataset(cfg)
    model = spec.build_model(cfg)
    T.fit_detector(model, data.x[:4], data.x[4:], 1, 4, 1e-3, 0)
    return Detector(model, {"task": "anomaly_glow_head3d", "input_spec": spec.spec_for(cfg),
                            "training_data": {"synthetic": True}})


@pytest.mark.filterwarnings("ignore:colour table")
def test_score_overlay_and_segment(scene, detector):
    import slicer

    ph = normal_head(4242)
    img, _ = insert_anomaly(ph, "ich", 22.0, 40.0, seed=3)
    vol = sitk_to_volume_node(img, scene, name="Head CT")
    view = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")     # a slice view's layers (no GUI here)
    res = logic.score_volume(vol, "head_ct", detector=detector, opacity=0.4)
    assert 0 <= res.percentile <= 100
    assert "percentile among held-out normal" in res.summary() and "SYNTHETIC" in res.summary()
    arr = slicer.util.arrayFromVolume(res.map_node)
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(res.result.map_image(volume_node_to_sitk(vol))))
    assert res.map_node.GetAttribute("SlicerCAD.overlay") == "1"
    assert view.GetForegroundVolumeID() == res.map_node.GetID() and view.GetBackgroundVolumeID() == vol.GetID()
    assert view.GetForegroundOpacity() == pytest.approx(0.4)
    display = res.map_node.GetDisplayNode()
    assert display.GetLowerThreshold() == pytest.approx(res.default_threshold)
    assert display.GetWindowLevelMax() == pytest.approx(max(2 * res.default_threshold, float(arr.max()), 1e-3))
    thr = float(np.percentile(arr[arr > 0], 90)) if (arr > 0).any() else 0.0
    seg, sid = logic.map_to_segment(res.map_node, vol, thr)
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    with pytest.raises(InputError, match="lower the threshold"):
        logic.map_to_segment(res.map_node, vol, float(arr.max()) + 1)


def test_cxr_refuses_a_volume(scene):
    ph = normal_head(1)
    vol = sitk_to_volume_node(ph.image, scene, name="Head CT")
    with pytest.raises(InputError, match="one 2D image"):
        logic.input_image(vol, "cxr")
    with pytest.raises(InputError, match="select an input volume"):
        logic.input_image(None, "head_ct")
