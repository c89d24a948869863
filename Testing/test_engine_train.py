"""Training on the generated toy task: it learns, permuted labels do not, resume is exact,
early stopping, progress lines, class weights, temperature scaling, the CLI, a task's own recipe."""
import argparse
import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from slicercad.engine import train_cli
from slicercad.engine.calibration import fit_temperature, nll
from slicercad.engine.checkpoint import load_checkpoint
from slicercad.engine.progress import parse_line
from slicercad.engine.splits import train_val_test_split
from slicercad.engine.tasks import TOY2D, TaskSpec, register_task
from slicercad.engine.train import CHECKPOINT, TrainConfig, _class_weights, resolve_device, train
from slicercad.errors import InputError

torch.set_num_threads(1)
TOY = {"n_samples": 320}


def _config(out, **kw):
    base = dict(task="toy2d", out=out, epochs=8, batch_size=16, lr=1e-2, test_fraction=0.3, patience=20,
                task_config=dict(TOY))
    base.update(kw)
    return TrainConfig(**base)


def test_toy_task_learns_and_permuted_labels_stay_at_chance(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLICERCAD_PROGRESS", "machine")  # the @@progress lines the job runner asks for
    real = train(_config(tmp_path / "real"))
    assert real["metrics"]["test"]["accuracy"] >= 0.9 and real["metrics"]["test"]["n"] >= 80
    # the same run with the labels shuffled across samples: nothing to learn, held-out at chance
    shuffled = train(_config(tmp_path / "perm", task_config=dict(TOY, permute_labels=True)))
    assert shuffled["metrics"]["test"]["accuracy"] <= 0.65
    sides = real["split_patients"]
    assert not set(sides["train"]) & set(sides["test"]) and not set(sides["train"]) & set(sides["val"])
    card = json.loads(real["card_path"].read_text())
    assert card["task"] == "toy2d" and card["training_data"]["synthetic"] is True
    assert card["metrics"]["test"]["accuracy"] == real["metrics"]["test"]["accuracy"]
    val = card["metrics"]["val"]
    assert val["nll_calibrated"] <= val["nll"] + 1e-6    # temperature fitted on validation
    records = [r for r in map(parse_line, capsys.readouterr().out.splitlines()) if r]
    steps = [r for r in records if "step" in r]
    assert steps and {"epoch", "step", "total", "loss", "eta_s", "fraction"} <= set(steps[0])
    assert records[-1]["fraction"] == 1.0 and records[-1]["card"].endswith(".json")


class _Crash(Exception):
    """A simulated interruption in the middle of training."""


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    cfg = dict(epochs=4, test_fraction=0.0, task_config={"n_samples": 128})
    full = train(_config(tmp_path / "full", **cfg))

    def crash(record):
        if record.get("epoch") == 3 and record.get("step") == 2:
            raise _Crash()

    with pytest.raises(_Crash):
        train(_config(tmp_path / "cut", **cfg), callback=crash)
    _, meta = load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert meta["state"]["epoch"] == 2          # the last completed epoch survived the crash
    resumed = train(_config(tmp_path / "cut", resume=True, **cfg))
    a = load_file(str(full["card_path"].with_suffix(".safetensors")))
    b = load_file(str(resumed["card_path"].with_suffix(".safetensors")))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert [h["val_loss"] for h in full["history"]] == pytest.approx(
        [h["val_loss"] for h in resumed["history"]], rel=1e-6)
    # optimizer moments were restored too: the next epoch also matches
    more_full = train(_config(tmp_path / "full", resume=True, **dict(cfg, epochs=5)))
    more_cut = train(_config(tmp_path / "cut", resume=True, **dict(cfg, epochs=5)))
    assert more_full["history"][-1]["val_loss"] == pytest.approx(more_cut["history"][-1]["val_loss"],
                                                                 rel=1e-6)
    with pytest.raises(InputError, match="changed .*'lr'"):
        train(_config(tmp_path / "cut", resume=True, **dict(cfg, lr=0.5)))


def test_early_stopping_when_validation_stops_improving(tmp_path):
    result = train(_config(tmp_path, lr=0.0, epochs=10, patience=2, test_fraction=0.0,
                           task_config={"n_samples": 64}))
    assert result["stopped_early"] and len(result["history"]) == 3 and result["best_epoch"] == 1


def test_class_weights_equalise_class_contributions():
    targets = torch.tensor([0] * 30 + [1] * 6 + [2] * 4)
    w = _class_weights(targets, 3)
    contributions = w * torch.bincount(targets).float()
    torch.testing.assert_close(contributions, torch.full((3,), contributions[0].item()))
    assert w[2] > w[1] > w[0]


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 3, generator=g) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.5, 1), 1, generator=g).squeeze(1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)


def test_cli_trains_and_refuses_bad_options(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["toy2d", "--out", str(tmp_path), "--epochs", "1", "--set", "n_samples=48",
                              "--name", "tiny"])
    assert train_cli.run(args) == 0
    card = json.loads((tmp_path / "model" / "tiny.json").read_text())
    assert card["model_config"]["n_samples"] == 48 and card["epochs_run"] == 1
    with pytest.raises(InputError, match="unknown config key"):
        train_cli.run(parser.parse_args(["toy2d", "--out", str(tmp_path), "--set", "depth=3"]))
    with pytest.raises(InputError, match=">= 1"):
        train_cli.run(parser.parse_args(["toy2d", "--out", str(tmp_path), "--batch-size", "0"]))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="divisible by the 2 processes"):
        train_cli.run(parser.parse_args(["toy2d", "--out", str(tmp_path), "--batch-size", "15"]))
    with pytest.raises(InputError, match="unknown task"):
        train_cli.run(parser.parse_args(["no_such_task", "--out", str(tmp_path)]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_requesting_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda")


def _recipe_task(seen: list) -> TaskSpec:
    """toy2d with a recipe and its own loop, which records what the engine hands it."""
    def fit(data, cfg, train_config, report):
        val = train_val_test_split(data.groups, train_config.val_fraction, seed=train_config.seed)["val"]
        seen.append({"n": len(data), "epochs": train_config.epochs, "lr": train_config.lr})
        for epoch in range(1, train_config.epochs + 1):
            report(epoch, loss=1.0 / epoch)
        model = TOY2D.build_model(cfg)
        return model, 1.5, {"recipe": {"augmentation": "flips"}, "history": [], "n_val": len(val)}

    return register_task(dataclasses.replace(TOY2D, name="toy2d_recipe", recipe={"epochs": 3, "lr": 5e-3},
                                             fit=fit), replace=True)


def test_a_task_recipe_is_used_unless_the_caller_sets_a_value(tmp_path):
    seen, records = [], []
    _recipe_task(seen)
    config = TrainConfig(task="toy2d_recipe", out=tmp_path / "a", test_fraction=0.25, task_config={"n_samples": 64})
    result = train(config, callback=records.append)
    card = json.loads(result["card_path"].read_text())
    assert seen[0] == {"n": 64 - card["training_data"]["n_samples"]["test"], "epochs": 3, "lr": 5e-3}
    assert card["training"]["epochs"] == 3 and card["training"]["lr"] == 5e-3 and card["epochs_run"] == 3
    assert card["training"]["batch_size"] == 32 and card["training"]["recipe"] == {"augmentation": "flips"}
    assert card["temperature"] == 1.5 and card["stopped_early"] is False and card["metrics"]["test"]["n"] > 0
    assert [r["epoch"] for r in records if r.get("message", "").startswith("epoch")] == [1, 2, 3]
    assert records[-1]["fraction"] == 1.0
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["toy2d_recipe", "--out", str(tmp_path / "b"), "--lr", "0.02"])
    assert args.epochs is None and args.lr == 0.02
    train(TrainConfig(task="toy2d_recipe", out=tmp_path / "b", epochs=1, lr=0.02, task_config={"n_samples": 64}))
    assert seen[1] == {"n": 64, "epochs": 1, "lr": 0.02}                  # explicit settings win
    with pytest.raises(InputError, match="--resume"):
        train(TrainConfig(task="toy2d_recipe", out=tmp_path / "c", resume=True, task_config={"n_samples": 64}))
    with pytest.raises(InputError, match="not training settings"):
        dataclasses.replace(TOY2D, name="bad", recipe={"epochz": 3})
