"""Weights integrity: tampered files, checksum mismatches, pickles disguised as safetensors and
cards for another task or input are refused with a ModelError naming the file and what to do;
and no code path unpickles untrusted data."""
import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

from slicercad.engine.registry import load_model, save_model, sha256_file
from slicercad.engine.tasks import get_task
from slicercad.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def card_path(tmp_path):
    spec = get_task("toy2d")
    torch.manual_seed(1)
    card = {"name": "integrity", "task": "toy2d", "kind": "classification", "model_config": spec.config(),
            "input_spec": spec.spec_for(spec.config()), "classes": list(spec.classes),
            "training_data": {"synthetic": True}, "metrics": {}, "temperature": 1.0}
    return save_model(spec.build_model(spec.config()), card, tmp_path)


def _rewrite_card(card_path, **changes):
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_untouched_model_loads(card_path):
    model, card = load_model(card_path, task="toy2d")
    assert card["sha256"] == sha256_file(card_path.with_suffix(".safetensors"))
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, len(card["classes"]))


def test_a_tampered_weights_file_is_refused(card_path):
    weights = card_path.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01                   # one bit inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        load_model(card_path)
    assert info.value.source == str(weights) and "sha256" in str(info.value)
    assert "restore the original or retrain" in str(info.value)


def test_a_card_whose_sha256_does_not_match_is_refused(card_path):
    _rewrite_card(card_path, sha256="0" * 64)
    with pytest.raises(ModelError, match="does not match the model card.*restore") as info:
        load_model(card_path)
    assert info.value.source.endswith("integrity.safetensors")


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_pickle_disguised_as_safetensors_is_never_unpickled(card_path, tmp_path, protocol):
    weights = card_path.with_suffix(".safetensors")
    marker = tmp_path / "code-ran"
    weights.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    _rewrite_card(card_path, sha256=sha256_file(weights))   # even an attacker-updated card is refused
    with pytest.raises(ModelError) as info:
        load_model(card_path)
    message = str(info.value)
    assert info.value.source == str(weights)
    assert ("pickle" in message and "safetensors" in message) or "restore the original file or retrain" in message
    assert not marker.exists()


def test_a_torch_save_archive_is_refused(card_path):
    weights = card_path.with_suffix(".safetensors")
    torch.save({"w": torch.zeros(2)}, weights)
    _rewrite_card(card_path, sha256=sha256_file(weights))
    with pytest.raises(ModelError, match="pickle / torch.save archive.*Convert it to safetensors"):
        load_model(card_path)


def test_a_card_for_another_task_is_refused_with_advice(card_path):
    with pytest.raises(ModelError) as info:
        load_model(card_path, task="liver_lesion")
    assert info.value.source == str(card_path)
    assert "for task 'toy2d', not 'liver_lesion'" in str(info.value) and "slicercad train liver_lesion" in str(info.value)


@pytest.mark.parametrize("input_spec,expected", [
    ({"roi_px": [64, 64]}, "crop at the model's ROI size"),
    ({"phases": ["t1", "t2"]}, "load the missing phase"),
])
def test_a_card_for_another_input_spec_is_refused_with_advice(card_path, input_spec, expected):
    with pytest.raises(ModelError, match=expected) as info:
        load_model(card_path, input_spec=input_spec)
    assert info.value.source == str(card_path)


def test_weights_of_another_network_are_refused(card_path):
    spec = get_task("toy2d")
    other = spec.build_model(spec.config({"channels": [4, 8]}))
    from safetensors.torch import save_file
    weights = card_path.with_suffix(".safetensors")
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    _rewrite_card(card_path, sha256=sha256_file(weights))
    with pytest.raises(ModelError, match="(?s)do not fit.*restore the matching pair or retrain"):
        load_model(card_path)


def _unsafe_loads(tree):
    """(line, call) of every call that can unpickle: torch.load without weights_only=True,
    pickle/cloudpickle/dill/joblib load(s), pickle.Unpickler, numpy load with allow_pickle=True."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name, kwargs = node.func.attr, {k.arg: k.value for k in node.keywords}
        safe_torch = isinstance(kwargs.get("weights_only"), ast.Constant) and kwargs["weights_only"].value is True
        if owner == "torch" and name == "load" and not safe_torch:
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif owner in ("pickle", "cPickle", "cloudpickle", "dill", "joblib") and name in ("load", "loads", "Unpickler"):
            found.append((node.lineno, f"{owner}.{name}"))
        elif owner in ("np", "numpy") and name == "load" and isinstance(kwargs.get("allow_pickle"), ast.Constant) \
                and kwargs["allow_pickle"].value is True:
            found.append((node.lineno, "numpy load with allow_pickle=True"))
    return found


def test_the_code_base_never_unpickles():
    files = [p for p in ROOT.rglob("*.py") if not {".venv", ".git", "out", "build"} & set(p.relative_to(ROOT).parts)]
    assert any(p.parts[-2:] == ("engine", "registry.py") for p in files)
    offences = [f"{p.relative_to(ROOT)}:{line}: {what}" for p in files
                for line, what in _unsafe_loads(ast.parse(p.read_text(encoding="utf-8"), str(p)))]
    assert offences == []


def test_the_unpickling_check_itself_finds_unsafe_calls():
    code = "import torch, pickle\ntorch.load(f)\ntorch.load(f, weights_only=True)\npickle.loads(b)\n"
    assert [line for line, _ in _unsafe_loads(ast.parse(code))] == [2, 4]
