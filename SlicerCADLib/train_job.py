"""A panel's "train on the training set": ``slicercad train <task>`` on a research dataset (the folder
'Add to training set' writes, ``slicercad.engine.export``), run as a cancellable background subprocess
(``engine.runner.JobRunner``) whose progress the panel polls from a timer.

Each run writes into ``<dataset>/runs/<timestamp>`` (a new folder every time, never an earlier run's);
the new model card is ``<run>/model/<name>.json``. Module-specific checks (which task, which labels)
stay in the module's Lib. Imports neither ``slicer`` nor Qt, and the runner (psutil) only when a job
starts, so a panel can import it at load.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import slicercad
from slicercad.engine.manifest import load_manifest
from slicercad.errors import InputError, ManifestError

MANIFEST_NAME = "manifest.jsonl"
RUNS_FOLDER = "runs"
MIN_PATIENTS = 2          # a patient-level train/validation split needs two patients at least
STATUS_KEYS = ("epoch", "fraction", "loss", "eta_s", "message")


def load_dataset(dataset_dir, min_patients: int = MIN_PATIENTS) -> tuple:
    """``(manifest path, Manifest)`` of the research dataset at ``dataset_dir``: the manifest must load
    (row-level errors name its line) and hold lesions of ``min_patients`` patients or more."""
    folder = Path(dataset_dir) if dataset_dir not in (None, "") else None
    if folder is None or str(folder) == "." or not folder.is_dir():
        raise InputError("the dataset folder does not exist; choose the folder 'Add to training set' writes",
                         str(dataset_dir))
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in the dataset folder; add lesions with 'Add to training set'",
                            folder)
    manifest = load_manifest(path)
    patients = sorted({case.patient for case, _ in manifest.lesions()})
    if len(patients) < min_patients:
        raise ManifestError(f"training needs labelled lesions of at least {min_patients} patients "
                            f"(patient-level split); found {len(patients)}", path)
    return path, manifest


def new_run_folder(dataset_dir) -> Path:
    """Create and return ``<dataset>/runs/<YYYYmmdd-HHMMSS>[-N]``, a folder no earlier run used."""
    runs = Path(dataset_dir) / RUNS_FOLDER
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = runs / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise InputError("could not create a new run folder (1000 runs this second)", runs)


class TrainingJob:
    """One ``slicercad train <task>`` run on a research dataset, in a subprocess: ``start()``, ``poll()``,
    ``cancel()``. Subclasses check the dataset for their task and may add arguments (``extra_args``)."""

    def __init__(self, dataset_dir, task: str, manifest, epochs: int | None = None, batch_size: int | None = None,
                 seed: int = 0, device: str = "auto", overrides: dict | None = None):
        """``epochs`` / ``batch_size`` None: the task's recipe; ``overrides``: task config (``--set``)."""
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if value is not None and int(value) < 1:
                raise InputError(f"{name} must be at least 1, got {value}", name)
        self.dataset_dir, self.task, self.manifest = Path(dataset_dir), str(task), Path(manifest)
        self.epochs = None if epochs is None else int(epochs)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.seed, self.device = int(seed), device
        self.overrides = dict(overrides or {})
        self.out: Path | None = None
        self.runner = None   # engine.runner.JobRunner once started
        self._status = {"state": "not started", "epochs": self.epochs, "card": None}

    def extra_args(self, out: Path) -> list:
        """More ``slicercad train`` arguments for a run writing into ``out`` (none here)."""
        return []

    def command(self, out) -> list:
        """The ``slicercad train`` command line writing into ``out`` (the recipe's epochs and batch size
        unless given)."""
        from slicercad.engine.runner import slicercad_command

        chosen = [a for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size))
                  if value is not None for a in (flag, value)]
        sets = [a for key, value in self.overrides.items() for a in ("--set", f"{key}={json.dumps(value)}")]
        return slicercad_command("train", self.task, "--manifest", self.manifest, "--out", out, *chosen,
                                 "--seed", self.seed, "--device", self.device, "--name",
                                 f"{self.task}-{Path(out).name}", *self.extra_args(Path(out)), *sets)

    def start(self) -> "TrainingJob":
        """Create a new run folder and start training in it (in the background)."""
        from slicercad.engine.runner import JobRunner

        if self.runner is not None:
            raise InputError("this training job was already started; create a new one", str(self.out))
        self.out = new_run_folder(self.dataset_dir)
        package_root = str(Path(slicercad.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        self.runner = JobRunner(self.command(self.out), on_progress=self._on_progress,
                                env=dict(os.environ, PYTHONPATH=path)).start()
        self._status.update(state="running", out=str(self.out), message="starting")
        return self

    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.running

    def _on_progress(self, record: dict) -> None:
        self._status.update({k: record[k] for k in STATUS_KEYS if record.get(k) is not None})
        if record.get("epochs"):
            self._status["epochs"] = record["epochs"]
        if record.get("card"):
            self._status["card"] = record["card"]

    def poll(self) -> dict:
        """Status after delivering pending output: ``state`` (running/finished/failed/cancelled), ``epoch``,
        ``epochs``, ``fraction``, ``loss``, ``eta_s``, ``message``, ``out``, and ``card`` (the new model card
        path) once finished."""
        if self.runner is None:
            return dict(self._status)
        self.runner.poll()
        if self._status["state"] == "running" and not self.runner.running:
            code = self.runner.wait(timeout=5)
            card = self._status.get("card")
            if self.runner.cancelled:
                self._status.update(state="cancelled", message="training cancelled", card=None)
            elif code == 0 and card and Path(card).is_file():
                self._status.update(state="finished", message=f"training finished; model card {card}")
            else:
                last = next((line for line in reversed(self.runner.lines) if line.strip()), "no output")
                self._status.update(state="failed", card=None, message=f"exit status {code}: {last}")
            self._status["returncode"] = code
        return dict(self._status)

    def cancel(self, grace_s: float = 3.0) -> dict:
        """Stop the training process tree; returns the final status."""
        if self.runner is not None:
            self.runner.cancel(grace_s)
        return self.poll()


def status_text(status: dict) -> str:
    """One line for the panel's status label."""
    if status.get("state") != "running":
        return str(status.get("message") or status.get("state", ""))
    parts = [f"epoch {status['epoch']}/{status['epochs']}" if status.get("epoch") else "starting"]
    if status.get("loss") is not None:
        parts.append(f"loss {status['loss']:.3f}")
    if status.get("eta_s") is not None:
        parts.append(f"about {int(round(status['eta_s']))} s left")
    return ", ".join(parts)


def progress_percent(status: dict) -> int:
    """The progress bar value (0-100)."""
    return int(round(100 * float(status.get("fraction") or 0.0)))


def poll_panel_training(job: TrainingJob | None, p) -> dict:
    """Poll ``job``; once it has finished, select its new model card as the panel's ``modelPath``."""
    if job is None:
        return {"state": "not started", "message": "", "card": None}
    status = job.poll()
    if status["state"] == "finished" and str(p.modelPath) != status["card"]:
        p.modelPath = Path(status["card"])
    return status


class PanelTraining:
    """A panel logic's background training: one job at a time. A job that has ended is picked up once (its
    card becomes the panel's model) and then dropped, so a later poll never re-selects its card over the
    user's later choice; its last ``(progress %, status line, running)`` stays in ``last``."""

    def __init__(self):
        self.job: TrainingJob | None = None
        self.last = (0, "", False)

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def start(self, make_job, what: str = "training") -> TrainingJob:
        """Start ``make_job()`` (a started TrainingJob) unless one is running."""
        if self.running:
            raise InputError(f"a {what} job is already running; cancel it first", what)
        self.job = make_job()
        return self.job

    def poll(self, p) -> tuple:
        """``(progress %, status line, still running)``; a finished job's card becomes ``p.modelPath``."""
        if self.job is None:
            return self.last
        status = poll_panel_training(self.job, p)
        running = status["state"] == "running"
        self.last = (progress_percent(status), status_text(status), running)
        if not running:
            self.job = None
        return self.last

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
