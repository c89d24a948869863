"""One training recipe for every entry point (issue 9 item 6): the panel's 'Train on the training set' job
runs ``slicercad train liver_lesion``, which trains with the task's recipe (``liver.task.RECIPE``, as
``make liver-model`` does) unless the user sets a value. SYNTHETIC lesions exported by the engine."""
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib import train_job  # noqa: E402
from slicercad.dicom.scan import scan_folder  # noqa: E402
from slicercad.engine.export import export_lesion  # noqa: E402
from slicercad.liver.task import LIVER_LESION, RECIPE  # noqa: E402
from slicercad.phases import assign_phases, best_by_phase  # noqa: E402
from slicercad.synth.study import write_phantom_study  # noqa: E402

TINY = {"channels": [4, 8, 8], "roi_px": 32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop_train")
    for i in range(3):
        truth = write_phantom_study(root / f"study{i}", "liver_mri", seed=i, patient={"PatientID": f"MRN-{i}"})
        volumes = scan_folder(root / f"study{i}").volumes()
        chosen = best_by_phase(assign_phases([(v.volume_id, v.tags) for v in volumes], "liver_mri"))
        records = {v.volume_id: v for v in volumes}
        images = {phase: records[a.volume_id].load() for phase, a in chosen.items()}
        for lesion in truth["lesions"]:
            export_lesion(root / "dataset", images, {**lesion, "mask": None}, {"PatientID": f"MRN-{i}"},
                          b"site-secret-for-tests", "reader 1", False, None, crop_mm=80.0)
    return root / "dataset"


def test_panel_job_trains_with_the_task_recipe_unless_the_user_sets_epochs(dataset):
    assert LIVER_LESION.fit is not None and LIVER_LESION.recipe["epochs"] == RECIPE["epochs"]
    panel = SimpleNamespace(datasetFolder=dataset, trainEpochs=0, device="cpu", modelPath=Path("."))
    job = train_job.start_panel_training(panel, overrides=TINY)
    assert "--epochs" not in job.command(job.out) and "--batch-size" not in job.command(job.out)
    deadline = time.monotonic() + 300
    while job.poll()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    status = job.poll()
    assert status["state"] == "finished", status["message"]
    assert status["epochs"] == RECIPE["epochs"] and status["epoch"] == RECIPE["epochs"]
    card = json.loads(Path(status["card"]).read_text())
    training = card["training"]
    for key in ("epochs", "batch_size", "lr", "weight_decay", "val_fraction"):
        assert training[key] == RECIPE[key] == training["recipe"][key], key
    assert training["recipe"]["intensity_augmentation"] is True and training["recipe"]["early_stopping"] is False
    assert card["epochs_run"] == RECIPE["epochs"] and card["stopped_early"] is False
    assert card["model_config"]["channels"] == TINY["channels"] and card["training_data"]["n_samples"]["val"] > 0
    chosen = train_job.TrainingJob(dataset, epochs=2, overrides=TINY).command(dataset / "runs" / "x")
    assert chosen[chosen.index("--epochs") + 1] == "2"                      # the user's value is passed on
