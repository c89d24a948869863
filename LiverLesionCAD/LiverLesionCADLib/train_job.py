"""'Train on the training set': ``slicercad train liver_lesion`` on the panel's research dataset, run as a
cancellable background subprocess (the shared ``SlicerCADLib.train_job.TrainingJob``) whose progress the
panel polls.

The run trains with the task's recipe (``slicercad.liver.task.RECIPE``: augmentation, 30 epochs without
early stopping, temperature on a validation split nothing else uses), as the bundled model was trained;
only the settings the user sets (epochs, batch size) are passed on and change it.
Each run writes into ``<dataset>/runs/<timestamp>`` (a new folder every time, never an earlier run's);
the new model card is ``<run>/model/<name>.json``. Imports neither ``slicer`` nor Qt.
"""
from __future__ import annotations

from SlicerCADLib import train_job as shared
from SlicerCADLib.train_job import (MANIFEST_NAME, MIN_PATIENTS, RUNS_FOLDER, STATUS_KEYS,  # noqa: F401
                                    new_run_folder, poll_panel_training, progress_percent, status_text)
from slicercad.errors import InputError, ManifestError
from slicercad.liver.classes import PRESETS

TASK_BY_PRESET = {"report": "liver_lesion", "extended": "liver_lesion_extended"}


def check_dataset(dataset_dir, preset: str | None = None) -> tuple:
    """Validate the dataset at ``dataset_dir``; returns ``(manifest path, preset)``.

    The manifest must load (row-level errors name its line), hold lesions of ``MIN_PATIENTS`` patients or
    more, and every label must be a class of ``preset``; ``preset=None`` picks the first of ``PRESETS``
    ('report', then 'extended') holding every label.
    """
    path, manifest = shared.load_dataset(dataset_dir, MIN_PATIENTS)
    pairs = list(manifest.lesions())
    if preset is not None and preset not in PRESETS:
        raise InputError(f"class preset must be one of {sorted(PRESETS)}, got {preset!r}", "preset")
    candidates = [preset] if preset else list(PRESETS)
    labels = {lesion.label for _, lesion in pairs}
    chosen = next((name for name in candidates if labels <= set(PRESETS[name])), None)
    if chosen is None:
        allowed = set(PRESETS[candidates[-1]])
        case, lesion = next((c, les) for c, les in pairs if les.label not in allowed)
        raise ManifestError(f"lesion {lesion.lesion_id!r} has label {lesion.label!r}, which is not a class of "
                            f"the {candidates[-1]!r} preset {list(PRESETS[candidates[-1]])}",
                            f"{path} line {case.line}")
    return path, chosen


class TrainingJob(shared.TrainingJob):
    """One ``slicercad train liver_lesion[_extended]`` run on a research dataset (``check_dataset`` picks
    the preset and so the task): ``start()``, ``poll()``, ``cancel()``."""

    def __init__(self, dataset_dir, epochs: int | None = None, preset: str | None = None,
                 batch_size: int | None = None, seed: int = 0, device: str = "auto", overrides: dict | None = None):
        """``epochs`` / ``batch_size`` None: the task's recipe."""
        manifest, self.preset = check_dataset(dataset_dir, preset)
        super().__init__(dataset_dir, TASK_BY_PRESET[self.preset], manifest, epochs, batch_size, seed, device,
                         overrides)


def start_panel_training(p, overrides: dict | None = None) -> TrainingJob:
    """Start training on the panel's ``datasetFolder`` on its ``device``, with the task's recipe;
    ``trainEpochs`` > 0 sets the epochs (0: the recipe's)."""
    return TrainingJob(p.datasetFolder, epochs=p.trainEpochs or None, device=p.device, overrides=overrides).start()
