"""LiverLesionNet presets, attention inside the network, Grad-CAM layer, engine task smoke run."""
import numpy as np
import pytest
import torch

from slicercad.engine.gradcam import grad_cam
from slicercad.errors import InputError
from slicercad.liver.classes import preset_classes
from slicercad.liver.model import GRADCAM_LAYER, LiverLesionNet, model_input

torch.set_num_threads(1)


@pytest.mark.parametrize("preset,n", [("report", 3), ("extended", 5)])
def test_presets_and_gradcam_layer(preset, n):
    torch.manual_seed(0)
    net = LiverLesionNet(8, len(preset_classes(preset)), (8, 16, 16)).eval()
    x = model_input(np.random.default_rng(0).random((2, 8, 64, 64)), np.ones((2, 64, 64)))
    assert net(x).shape == (2, n)
    cam = grad_cam(net, x, GRADCAM_LAYER)
    assert cam.shape == (2, 64, 64) and cam.max() <= 1.0 and np.isfinite(cam).all()
    assert GRADCAM_LAYER in dict(net.named_modules())


def test_attention_is_applied_inside_the_network():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    stack = rng.random((1, 8, 32, 32)) + 0.5
    g1, g2 = rng.random((1, 32, 32)), rng.random((1, 32, 32))
    none = LiverLesionNet(8, 3, (8, 16), alpha=None).eval()
    assert torch.allclose(none(model_input(stack, g1)), none(model_input(stack, g2)))
    att = LiverLesionNet(8, 3, (8, 16), alpha=0.0).eval()
    assert not torch.allclose(att(model_input(stack, g1)), att(model_input(stack, g2)))
    assert torch.allclose(att.attended(model_input(stack, g1)), torch.as_tensor(stack * g1[:, None]).float(),
                          atol=1e-6)
    with pytest.raises(InputError, match="alpha"):
        LiverLesionNet(alpha=2.0)
    with pytest.raises(InputError, match="preset"):
        preset_classes("all")


def test_engine_trains_one_epoch_on_the_phantom_and_serves_it(tmp_path):
    from slicercad.engine.predict import predict
    from slicercad.engine.registry import load_model
    from slicercad.engine.train import TrainConfig, train
    from slicercad.liver.task import TASK_NAME

    cfg = TrainConfig(task=TASK_NAME, out=tmp_path, epochs=1, batch_size=16, device="cpu",
                      task_config={"n_lesions": 40, "channels": [8, 16, 16], "roi_px": 32})
    result = train(cfg)
    model, card = load_model(result["card_path"], TASK_NAME)
    assert card["training_data"]["synthetic"] is True and card["input_spec"]["phases"][-1] == "attention"
    x = model_input(np.random.default_rng(0).random((3, 8, 32, 32)) + 0.5, np.ones((3, 32, 32)))
    out = predict(model, card, x)
    assert len(out) == 3
    for r in out:
        assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-5
        assert r["predicted_class"] in ("cyst", "hemangioma", "metastasis")
