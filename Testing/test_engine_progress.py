"""Progress lines: the format the trainer emits and the job runner parses; readable progress otherwise."""
import io
import json

import numpy as np
import pytest

from slicercad.engine.progress import ENV_VAR, MACHINE, PREFIX, emit, format_line, human_line, parse_line


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.setenv(ENV_VAR, MACHINE)


@pytest.fixture
def human(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_emit_round_trips_given_fields_only(machine):
    buf = io.StringIO()
    emit("train", stream=buf, epoch=2, step=np.int64(5), total=40, loss=np.float32(0.25),
         eta_s=12.5, fraction=0.5, message="epoch 2")
    line = buf.getvalue()
    assert line.startswith(PREFIX) and line.endswith("\n") and line.count("\n") == 1
    record = parse_line(line)
    assert record == {"stage": "train", "epoch": 2, "step": 5, "total": 40, "loss": 0.25,
                      "eta_s": 12.5, "fraction": 0.5, "message": "epoch 2"}
    assert set(json.loads(line[len(PREFIX):])) == set(record)


def test_omitted_fields_absent_and_fraction_clipped():
    record = parse_line(format_line("evaluate", fraction=1.7))
    assert record == {"stage": "evaluate", "fraction": 1.0}
    assert parse_line(format_line("x", fraction=-0.2))["fraction"] == 0.0


def test_non_finite_values_become_null():
    assert parse_line(format_line("train", loss=float("nan")))["loss"] is None


def test_other_lines_are_not_progress():
    assert parse_line("Epoch 1/3 [=====     ]") is None
    assert parse_line("@@progress {not json") is None
    assert parse_line('@@progress {"epoch": 1}') is None
    assert parse_line(b'@@progress {"stage": "x"}\n') == {"stage": "x"}


def test_without_the_runner_progress_is_readable_on_stderr(human, capsys):
    emit("evaluate", fraction=0.6, message="writing report")
    emit("train", epoch=1, step=3, total=8, loss=0.5, fraction=0.25)  # no message: a terminal bar only
    out, err = capsys.readouterr()
    assert out == "" and err == "evaluate: writing report 60%\n"
    assert human_line("train", epoch=2, loss=np.float32(0.25), val_loss=float("nan"), message="epoch 2 done") \
        == "train: epoch 2 done loss 0.2500"


def test_bar_redrawn_in_place_on_a_terminal_then_cleared_for_a_message(human):
    term = _Terminal()
    emit("train", stream=term, epoch=1, step=1, total=4, loss=0.5, eta_s=3.0, fraction=0.5)
    emit("train", stream=term, fraction=1.0, message="training finished")
    bar = "[##########..........] train: epoch 1 step 1/4 loss 0.5000 ETA 3s 50%"
    assert term.getvalue() == f"\r{bar}\r{' ' * len(bar)}\rtrain: training finished 100%\n"


@pytest.mark.parametrize("mode", ["human", "machine"])
def test_train_run_prints_progress_lines_only_for_the_runner(mode, request, tmp_path, capsys):
    import torch

    from slicercad.engine.train import TrainConfig, train

    request.getfixturevalue(mode)
    torch.set_num_threads(1)
    train(TrainConfig(task="toy2d", out=tmp_path, epochs=1, batch_size=16, task_config={"n_samples": 32}))
    out, err = capsys.readouterr()
    records = [r for r in map(parse_line, out.splitlines()) if r]
    if mode == "machine":
        assert records[-1]["message"] == "training finished" and "@@progress" not in err
    else:
        assert not records and "@@progress" not in out + err
        lines = err.splitlines()
        assert lines[0].startswith("train: epoch 1 done loss ") and lines[-1] == "train: training finished 100%"
