"""'Train on the training set' from the LiverLesionCAD panel: a de-identified dataset exported the way
'Add to training set' does, trained in a background subprocess with streamed progress, and cancelled with
its whole process tree. Plain Python (the panel's widget code cannot run here)."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "LiverLesionCAD"))

from job_polling import cancel_and_check_tree, poll_until  # noqa: E402
from LiverLesionCADLib import train_job  # noqa: E402
from slicercad.dicom.scan import scan_folder  # noqa: E402
from slicercad.engine.export import export_lesion  # noqa: E402
from slicercad.engine.registry import load_model  # noqa: E402
from slicercad.errors import InputError, ManifestError  # noqa: E402
from slicercad.phases import assign_phases, best_by_phase  # noqa: E402
from slicercad.synth.study import write_phantom_study  # noqa: E402

TINY = {"channels": [4, 8, 8], "roi_px": 32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three synthetic patients' lesions exported into one research dataset (crop 80 mm)."""
    root = tmp_path_factory.mktemp("train_job")
    folder = root / "dataset"
    for i in range(3):
        truth = write_phantom_study(root / f"study{i}", "liver_mri", seed=i,
                                    patient={"PatientID": f"MRN-{i}", "PatientName": f"PATIENT^{i}"})
        volumes = scan_folder(root / f"study{i}").volumes()
        chosen = best_by_phase(assign_phases([(v.volume_id, v.tags) for v in volumes], "liver_mri"))
        records = {v.volume_id: v for v in volumes}
        images = {phase: records[a.volume_id].load() for phase, a in chosen.items()}
        for lesion in truth["lesions"]:
            export_lesion(folder, images, {**lesion, "mask": None}, {"PatientID": f"MRN-{i}"},
                          b"site-secret-for-tests", "reader 1", False, None, crop_mm=80.0)
    return folder


def test_panel_training_finishes_with_progress_and_selects_a_loadable_card(dataset):
    panel = SimpleNamespace(datasetFolder=dataset, trainEpochs=1, device="cpu", modelPath=Path("."))
    job = train_job.start_panel_training(panel, overrides=TINY)
    assert job.out.parent == dataset / "runs" and job.task == "liver_lesion"
    status, seen = poll_until(job, lambda s: s["state"] != "running")
    assert status["state"] == "finished", status["message"]
    assert any(s.get("epoch") == 1 and s.get("loss") is not None for s in seen)
    assert status["fraction"] == 1.0 and train_job.progress_percent(status) == 100
    card = Path(status["card"])
    assert card.is_file() and card.parent == job.out / "model"
    model, loaded = load_model(card, task="liver_lesion")
    assert loaded["model_config"]["roi_px"] == 32 and loaded["classes"] == ["cyst", "hemangioma", "metastasis"]
    assert train_job.poll_panel_training(job, panel)["state"] == "finished"
    assert panel.modelPath == card
    again = train_job.TrainingJob(dataset, epochs=1, overrides=TINY)
    assert train_job.new_run_folder(dataset) != job.out and again.command(job.out)[-4:] == [
        "--set", "channels=[4, 8, 8]", "--set", "roi_px=32"]


def test_cancel_after_first_progress_kills_the_process_tree_and_writes_no_card(dataset):
    class NoEarlyStop(train_job.TrainingJob):   # a tiny set stops early; on a loaded machine before the first poll
        def extra_args(self, out):
            return [*super().extra_args(out), "--patience", "200"]

    job = NoEarlyStop(dataset, epochs=200, batch_size=2, overrides=TINY).start()
    status, _ = poll_until(job, lambda s: s.get("epoch") is not None or s["state"] != "running")
    assert status["state"] == "running" and 0.0 < status["fraction"] < 1.0
    assert train_job.status_text(status).startswith(f"epoch {status['epoch']}/200")
    final = cancel_and_check_tree(job)
    assert final["state"] == "cancelled" and final["card"] is None
    assert not list((job.out / "model").glob("*.json"))


def test_dataset_problems_raise_typed_errors_naming_the_folder_or_row(tmp_path, dataset):
    with pytest.raises(ManifestError, match="no manifest.jsonl") as err:
        train_job.TrainingJob(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(InputError, match="does not exist"):
        train_job.check_dataset(tmp_path / "missing")
    rows = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines() if line.strip()]
    one = tmp_path / "one_patient"
    one.mkdir()
    first = [r for r in rows if r["patient"] == rows[0]["patient"]]
    for r in first:
        r["images"] = {p: str(dataset / path) for p, path in r["images"].items()}
    (one / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    with pytest.raises(ManifestError, match="at least 2 patients"):
        train_job.check_dataset(one)
    assert train_job.check_dataset(dataset) == (dataset / "manifest.jsonl", "report")
    odd = tmp_path / "odd_label"
    odd.mkdir()
    relabelled = [dict(r, images={p: str(dataset / path) for p, path in r["images"].items()}) for r in rows]
    relabelled[-1]["lesions"][0]["label"] = "hcc"
    (odd / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in relabelled))
    assert train_job.check_dataset(odd)[1] == "extended"
    with pytest.raises(ManifestError, match=f"line {len(rows)}: .*'hcc'.*'report'"):
        train_job.check_dataset(odd, preset="report")
    relabelled[-1]["lesions"][0]["label"] = "abscess"
    (odd / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in relabelled))
    with pytest.raises(ManifestError, match=f"line {len(rows)}: .*'abscess'"):
        train_job.check_dataset(odd)


def test_a_failing_run_reports_failed_with_the_error_and_no_card(dataset):
    job = train_job.TrainingJob(dataset, epochs=1, overrides={"no_such_key": 1}).start()
    status, _ = poll_until(job, lambda s: s["state"] != "running")
    assert status["state"] == "failed" and status["card"] is None and status["returncode"] != 0
    assert "no_such_key" in status["message"] and train_job.status_text(status) == status["message"]
