"""Progress lines: the format the trainer emits and the job runner parses."""
import io
import json

import numpy as np

from slicercad.engine.progress import PREFIX, emit, format_line, parse_line


def test_emit_round_trips_given_fields_only():
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
