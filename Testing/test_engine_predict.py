"""Inference API: calibrated probabilities, batching, provenance, input checks, end to end."""
import pytest
import torch
from torch import nn

from slicercad.engine.predict import predict
from slicercad.engine.registry import load_model, save_model
from slicercad.engine.tasks import TaskSpec, get_task, register_task, toy2d_samples
from slicercad.engine.train import TrainConfig, train
from slicercad.errors import InputError, ModelError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    torch.manual_seed(1)
    spec = get_task("toy2d")
    model = spec.build_model(spec.config())
    card = {"name": "toy", "task": "toy2d", "kind": "classification", "model_config": spec.config(),
            "input_spec": dict(spec.spec_for(spec.config()), valid_ranges={"field_strength_t": [1.0, 3.0]}),
            "classes": list(spec.classes), "training_data": {"synthetic": True}, "metrics": {},
            "temperature": 1.7}
    return load_model(save_model(model, card, tmp_path_factory.mktemp("models")))


def test_probabilities_are_temperature_scaled_and_batching_does_not_change_them(toy_model):
    model, card = toy_model
    x = torch.randn(7, 1, 32, 32)
    one = predict(model, card, x, batch_size=3, parameters={"alpha": 0.1})
    all_ = predict(model, card, {"image": x[:, 0]}, batch_size=64)
    expected = torch.softmax(model(x) / 1.7, dim=1)
    assert len(one) == len(all_) == 7
    for i, (a, b) in enumerate(zip(one, all_)):
        probs = [a["probabilities"][c] for c in card["classes"]]
        assert probs == pytest.approx(expected[i].tolist(), abs=1e-5)
        assert probs == pytest.approx([b["probabilities"][c] for c in card["classes"]], abs=1e-5)
        assert a["predicted_index"] == int(expected[i].argmax())
        assert a["predicted_class"] == card["classes"][a["predicted_index"]]
        assert a["time_ms"] >= 0.0
    prov = one[0]["provenance"]
    assert prov["model_sha256"] == card["sha256"] and len(prov["model_sha256"]) == 64
    assert prov["card"] == "toy" and prov["temperature"] == 1.7 and prov["parameters"] == {"alpha": 0.1}
    assert prov["synthetic_training_data"] is True


@pytest.mark.parametrize("batch,kwargs,error,message", [
    (torch.full((2, 1, 32, 32), float("nan")), {}, InputError, "NaN"),
    (torch.zeros(2, 2, 32, 32), {}, InputError, "2 channels given"),
    (torch.zeros(2, 1, 16, 16), {}, InputError, r"\[16, 16\] px differs"),
    ({"t1": torch.zeros(2, 32, 32)}, {}, InputError, r"missing phase\(s\) \['image'\]"),
    (torch.zeros(2, 1, 32, 32), {"input_spec": {"field_strength_t": 0.5}}, ModelError, "outside"),
    (torch.zeros(2, 1, 32, 32), {"batch_size": 0}, InputError, "batch_size"),
])
def test_bad_input_is_refused(toy_model, batch, kwargs, error, message):
    model, card = toy_model
    with pytest.raises(error, match=message):
        predict(model, card, batch, **kwargs)


def test_regression_tasks_return_values():
    register_task(TaskSpec(name="test_regression", kind="regression", build_model=lambda c: nn.Sequential(
        nn.Flatten(), nn.Linear(16, 1)), make_dataset=None, make_loss=None,
        input_spec={"phases": ["a"], "roi_px": [4, 4]}), replace=True)
    model = get_task("test_regression").build_model({})
    card = {"kind": "regression", "input_spec": {"phases": ["a"], "roi_px": [4, 4]}, "temperature": 1.0,
            "name": "reg", "sha256": "0" * 64}
    x = torch.randn(3, 1, 4, 4)
    values = [r["value"] for r in predict(model, card, x)]
    assert values == pytest.approx(model(x).flatten().tolist(), abs=1e-6)


def test_trained_model_predicts_new_generated_images(tmp_path):
    result = train(TrainConfig(task="toy2d", out=tmp_path, epochs=8, batch_size=16, lr=1e-2,
                               task_config={"n_samples": 320}))
    model, card = load_model(result["card_path"], task="toy2d")
    fresh = toy2d_samples(get_task("toy2d").config({"data_seed": 123, "n_samples": 100}))
    out = predict(model, card, fresh.x)
    accuracy = sum(r["predicted_index"] == int(y) for r, y in zip(out, fresh.y)) / len(out)
    assert accuracy >= 0.9
