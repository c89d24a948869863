"""The product's fast classify + Grad-CAM path equals the naive one (engine.predict + engine.gradcam)."""
import numpy as np
import pytest
import torch

from slicercad.engine.gradcam import grad_cam
from slicercad.engine.predict import predict
from slicercad.engine.registry import BUNDLED_DIR, load_model
from slicercad.errors import InputError, ModelError
from slicercad.liver.attention import attention_from_diameter
from slicercad.liver.dataset import lesion_sample, phantom_lesion_input
from slicercad.liver.fast_cam import FastLiverCam
from slicercad.liver.inference import classify_lesions
from slicercad.liver.model import GRADCAM_LAYER, model_input
from slicercad.liver.phases import PHASES
from slicercad.liver.roi import RoiSpec
from slicercad.synth.liver_lesions_phantom import generate_lesions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bundled():
    return load_model(BUNDLED_DIR / "liver_lesion_demo.json", task="liver_lesion")


@pytest.fixture(scope="module")
def phantom():
    """Four SYNTHETIC phantom lesions with their normalised ROI stacks and attention maps."""
    items = generate_lesions(4, seed=5, split="test")
    lesions = [phantom_lesion_input(item) for item in items]
    samples = [lesion_sample(item.images, les, PHASES, RoiSpec()) for item, les in zip(items, lesions)]
    return items, lesions, samples


def _naive(model, card, x, G, class_idx=None):
    inp = model_input(x, G)
    proba = predict(model, card, inp)[0]["probabilities"]
    return np.array([proba[c] for c in card["classes"]]), grad_cam(model, inp, GRADCAM_LAYER, class_idx)[0]


def test_fast_path_equals_predict_and_engine_grad_cam(bundled, phantom):
    model, card = bundled
    fast = FastLiverCam(model, card["temperature"], 64)
    for x, G, _, _ in phantom[2]:
        proba, cam = fast(x, G)
        ref_proba, ref_cam = _naive(model, card, x, G)
        np.testing.assert_allclose(proba, ref_proba, atol=1e-5)
        np.testing.assert_allclose(cam, ref_cam, atol=1e-4)
        assert cam.shape == (64, 64) and cam.max() == pytest.approx(1.0)
        no_cam_proba, no_cam = fast(x, G, with_cam=False)
        assert no_cam is None
        np.testing.assert_allclose(no_cam_proba, ref_proba, atol=1e-5)


def test_every_class_index_matches_engine_grad_cam(bundled, phantom):
    model, card = bundled
    fast = FastLiverCam(model, card["temperature"], 64, channels_last=False)
    x, G, _, _ = phantom[2][0]
    cams = []
    for k in range(len(card["classes"])):
        proba, cam = fast(x, G, class_idx=k)
        ref_proba, ref_cam = _naive(model, card, x, G, class_idx=k)
        np.testing.assert_allclose(proba, ref_proba, atol=1e-5)
        np.testing.assert_allclose(cam, ref_cam, atol=1e-4)
        cams.append(cam)
    assert max(float(np.abs(a - b).max()) for a, b in zip(cams, cams[1:])) > 1e-3   # classes explain differently
    for bad in (-1, len(card["classes"]), 1.0, True):
        with pytest.raises(InputError, match="class index"):
            fast(x, G, class_idx=bad)


def test_attention_grid_equals_attention_from_diameter(bundled):
    model, card = bundled
    fast = FastLiverCam(model, card["temperature"], 64)
    for diameter_mm, spacing_mm in ((4.0, 0.75), (18.0, 0.9), (38.0, 1.8)):
        np.testing.assert_allclose(fast.attention(diameter_mm, spacing_mm).numpy(),
                                   attention_from_diameter((64, 64), diameter_mm, spacing_mm), atol=1e-6)
    with pytest.raises(InputError, match="diameter"):
        fast.attention(0.0, 1.0)


def test_classify_lesions_uses_fast_path_and_leaves_model_untouched(bundled, phantom):
    model, card = bundled
    items, lesions, samples = phantom
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = classify_lesions(model, card, items[0].images, lesions[:1])
    results += classify_lesions(model, card, items[1].images, lesions[1:2], alpha=0.5)
    for res, (x, G, _, _), alpha in zip(results, samples, (card["input_spec"]["alpha"], 0.5)):
        model.alpha = alpha
        ref_proba, ref_cam = _naive(model, card, x, G)
        model.alpha = card["input_spec"]["alpha"]
        np.testing.assert_allclose([res["probabilities"][c] for c in card["classes"]], ref_proba, atol=1e-5)
        np.testing.assert_allclose(res["cam"], ref_cam, atol=1e-4)
        assert res["predicted_class"] == card["classes"][int(np.argmax(ref_proba))]
        assert res["provenance"]["model_sha256"] == card["sha256"] and res["provenance"]["parameters"]["alpha"] == alpha
    assert model.alpha == card["input_spec"]["alpha"] and not model.training
    assert all(torch.equal(before[k], v) and v.is_contiguous() for k, v in model.state_dict().items())


def test_bad_input_and_unsupported_models_are_refused(bundled, phantom):
    model, card = bundled
    fast = FastLiverCam(model, card["temperature"], 64)
    x, G, _, _ = phantom[2][0]
    with pytest.raises(InputError, match="ROI stack"):
        fast(x[:5], G)
    with pytest.raises(InputError, match="attention map"):
        fast(x, G[:32])
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fast(bad, G)
    with pytest.raises(ModelError, match="features.0"):
        FastLiverCam(model, card["temperature"], 64, layer="features.0")
    with pytest.raises(ModelError, match="LiverLesionNet"):
        FastLiverCam(torch.nn.Linear(2, 2), card["temperature"], 64)
    with pytest.raises(InputError, match="temperature"):
        FastLiverCam(model, 0.0, 64)
