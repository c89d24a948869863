"""The panel's "train on a folder of normal studies": ``slicercad anomaly train`` as a cancellable background
subprocess, reusing ``SlicerCADLib.train_job`` (same PYTHONPATH set-up, run folders, status and one-job-at-a-
time ``PanelTraining``). Each run writes into ``<output>/runs/<timestamp>``; its card becomes the panel's model.
Imports neither ``slicer`` nor Qt."""
from __future__ import annotations

from pathlib import Path

from SlicerCADLib import train_job
from slicercad.errors import InputError

KINDS = ("head_ct", "cxr")


class NormalsTrainingJob(train_job.TrainingJob):
    """``slicercad anomaly train NORMALS --out <run> --kind KIND`` (``start()``, ``poll()``, ``cancel()``)."""

    def __init__(self, normals_folder, output_folder, kind: str = "head_ct", epochs: int | None = None,
                 seed: int = 0):
        folder = Path(str(normals_folder)) if normals_folder not in (None, "") else None
        if folder is None or str(folder) == "." or not folder.is_dir():
            raise InputError("choose an existing folder of normal studies", str(normals_folder))
        if output_folder in (None, "") or str(output_folder) == ".":
            raise InputError("choose an output folder for the trained model", "trainOutputFolder")
        if kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {kind!r}", "inputKind")
        super().__init__(output_folder, f"anomaly-{kind}", folder, epochs=epochs, seed=seed)
        self.normals, self.kind = folder, kind

    def command(self, out) -> list:
        from slicercad.engine.runner import slicercad_command

        epochs = [] if self.epochs is None else ["--epochs", self.epochs]
        return slicercad_command("anomaly", "train", self.normals, "--out", out, "--kind", self.kind,
                                 "--seed", self.seed, *epochs)
