"""Model registry: round trip, and refusal of tampered, pickled, mismatched or out-of-range models."""
import json
from pathlib import Path

import pytest
import torch

from slicercad.engine import registry
from slicercad.engine.registry import list_models, load_model, save_model, sha256_file
from slicercad.engine.tasks import get_task
from slicercad.errors import ModelError


def _card(**kw):
    spec = get_task("toy2d")
    card = {"name": "toy", "task": "toy2d", "kind": "classification", "model_config": spec.config(),
            "input_spec": dict(spec.spec_for(spec.config()), valid_ranges={"field_strength_t": [1.0, 3.0]}),
            "classes": list(spec.classes), "training_data": {"synthetic": True},
            "metrics": {"val": {"accuracy": 0.9}}, "temperature": 1.3}
    card.update(kw)
    return card


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = get_task("toy2d").build_model(get_task("toy2d").config())
    return model, save_model(model, _card(), tmp_path)


def test_round_trip_gives_the_same_network_and_a_checksummed_card(saved):
    model, card_path = saved
    loaded, card = load_model(card_path, task="toy2d", input_spec={"field_strength_t": 1.5})
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert card["sha256"] == sha256_file(card_path.with_name(card["weights"]))
    assert card["temperature"] == 1.3 and card["training_data"]["synthetic"] is True


def test_the_same_weights_saved_twice_have_the_same_sha256(saved, tmp_path):
    """A rebuilt model is byte-identical (safetensors writes several metadata keys in hash order)."""
    model, card_path = saved
    shas = {json.loads(save_model(model, _card(), tmp_path / f"again{i}").read_text())["sha256"] for i in range(8)}
    assert shas == {json.loads(card_path.read_text())["sha256"]}


def test_tampered_weights_are_refused(saved):
    _, card_path = saved
    weights = card_path.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 .* does not match"):
        load_model(card_path)


def test_a_pickle_disguised_as_weights_is_refused_even_with_a_matching_checksum(saved):
    model, card_path = saved
    weights = card_path.with_suffix(".safetensors")
    torch.save(model.state_dict(), weights)
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_file(weights)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="pickle") as err:
        load_model(card_path)
    assert weights.name in str(err.value)


@pytest.mark.parametrize("change,kwargs,message", [
    ({"task": "no_such_task"}, {}, "unknown task 'no_such_task'"),
    ({}, {"task": "liver"}, "model is for task 'toy2d', not 'liver'"),
    ({}, {"input_spec": {"field_strength_t": 7.0}}, r"field_strength_t=7.0 is outside .*\[1.0, 3.0\]"),
    ({}, {"input_spec": {"phases": ["t2"]}}, r"needs phase\(s\) \['image'\]"),
    ({}, {"input_spec": {"roi_px": [64, 64]}}, "ROI"),
    ({"weights": "gone.safetensors"}, {}, "gone.safetensors not found"),
    ({"temperature": -1}, {}, "temperature must be a positive number"),
    ({"training_data": {}}, {}, "synthetic must be true or false"),
])
def test_card_problems_are_refused_with_the_reason(saved, change, kwargs, message):
    _, card_path = saved
    card = json.loads(card_path.read_text())
    card.update(change)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message):
        load_model(card_path, **kwargs)


def test_missing_card_says_how_to_get_a_model(tmp_path):
    with pytest.raises(ModelError, match="slicercad train"):
        load_model(tmp_path / "nothing.json")


def test_failed_write_leaves_the_previous_model_intact(saved, monkeypatch):
    model, card_path = saved
    before = {p.name: p.read_bytes() for p in card_path.parent.iterdir()}

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "save_file", broken)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, _card(temperature=2.0), card_path.parent)
    assert {p.name: p.read_bytes() for p in card_path.parent.iterdir()} == before
    load_model(card_path)


def test_list_models_finds_user_models_by_task(saved, monkeypatch):
    _, card_path = saved
    monkeypatch.setenv("SLICERCAD_MODELS", str(card_path.parent))
    (card_path.parent / "notes.json").write_text("{not json")
    found = [m for m in list_models("toy2d") if m["source"] == "user"]
    assert found == [{"name": "toy", "task": "toy2d", "card_path": str(card_path), "source": "user",
                      "synthetic": True}]
    assert [m for m in list_models("other") if m["source"] == "user"] == []


def test_save_refuses_an_incomplete_card(tmp_path):
    model = get_task("toy2d").build_model(get_task("toy2d").config())
    card = _card()
    del card["classes"]
    with pytest.raises(ModelError, match="lacks field"):
        save_model(model, card, tmp_path)


def test_list_models_ignores_temporary_files_left_by_a_killed_write(tmp_path, monkeypatch):
    from slicercad.engine.registry import list_models

    monkeypatch.setenv("SLICERCAD_MODELS", str(tmp_path))
    card = {"schema": "slicercad.model-card/1", "name": "m", "task": "toy2d", "training_data": {"synthetic": True}}
    (tmp_path / "m.json").write_text(json.dumps(card))
    (tmp_path / ".m.json.abc123.tmp.json").write_text(json.dumps(card))
    user = [m for m in list_models() if m["source"] == "user"]
    assert [Path(m["card_path"]).name for m in user] == ["m.json"]
