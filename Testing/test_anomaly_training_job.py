"""The AnomalyCT panel's background training (``AnomalyCTLib.training.NormalsTrainingJob`` under
``SlicerCADLib.train_job.PanelTraining``) against a real short ``slicercad anomaly train`` subprocess: running
while it runs (the old monitor read JobRunner.poll()'s line count as an exit code and declared failure on the
first tick), one job at a time, the failure reported with the process's last line once it ends, and the
package root on the subprocess's PYTHONPATH."""
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AnomalyCT"))

from AnomalyCTLib.training import NormalsTrainingJob  # noqa: E402
from SlicerCADLib.train_job import PanelTraining  # noqa: E402
from slicercad.errors import InputError  # noqa: E402


def test_panel_training_runs_then_fails_with_the_reason(tmp_path):
    normals = tmp_path / "normals"
    normals.mkdir()
    (normals / "not_an_image.nrrd").write_text("garbage")
    p = SimpleNamespace(modelPath=Path("."))
    panel = PanelTraining()
    job = panel.start(lambda: NormalsTrainingJob(normals, tmp_path / "out", "head_ct").start())
    assert "PYTHONPATH" in job.runner.env and str(Path(__file__).resolve().parents[1]) in job.runner.env["PYTHONPATH"]
    cmd = job.runner.args
    assert cmd[cmd.index("anomaly") + 1] == "train" and str(normals) in cmd
    _, _, running = panel.poll(p)
    assert running and panel.job is job                      # the first tick: still running, not "failed"
    with pytest.raises(InputError, match="already running"):
        panel.start(lambda: NormalsTrainingJob(normals, tmp_path / "out", "head_ct").start())
    deadline = time.monotonic() + 120
    while running and time.monotonic() < deadline:
        time.sleep(0.2)
        _, text, running = panel.poll(p)
    assert not running and panel.job is None
    assert "exit status" in text and "usable normal studies" in text, text
    assert str(p.modelPath) == "."                           # a failed run selects no model
    assert job.out.parent == tmp_path / "out" / "runs"


def test_training_job_refuses_bad_folders(tmp_path):
    with pytest.raises(InputError, match="normal studies"):
        NormalsTrainingJob(tmp_path / "missing", tmp_path, "head_ct")
    with pytest.raises(InputError, match="output folder"):
        NormalsTrainingJob(tmp_path, "", "head_ct")
    with pytest.raises(InputError, match="kind"):
        NormalsTrainingJob(tmp_path, tmp_path / "o", "mri")
