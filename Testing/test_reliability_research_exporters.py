"""The corrected-label loop end to end, audited: DICOM studies with real-looking identifiers →
de-identified training-set export → training (model card, checkpoint, log) → evaluation report.
Every research output must pass the de-identification audit against the source identifiers."""
import contextlib
import csv
import io

import pydicom
import pytest
import torch

from slicercad.dicom.scan import scan_folder
from slicercad.engine.audit import audit_export
from slicercad.engine.evaluate_cli import evaluate_file
from slicercad.engine.export import export_lesion
from slicercad.engine.manifest import load_manifest
from slicercad.engine.registry import load_model
from slicercad.engine.report import write_report
from slicercad.engine.train import TrainConfig, train
from slicercad.imageio import read_image
from slicercad.liver.inference import classify_lesions
from slicercad.liver.roi import Lesion
from slicercad.phases import assign_phases, best_by_phase
from slicercad.synth.study import write_phantom_study

PATIENTS = [
    {"PatientName": "KAWASAKI^HANAKO", "PatientID": "MRN-77123", "PatientBirthDate": "19580214",
     "AccessionNumber": "ACC20261124"},
    {"PatientName": "OKONKWO^CHIDI", "PatientID": "MRN-80456", "PatientBirthDate": "19471103",
     "AccessionNumber": "ACC20261125"},
    {"PatientName": "LINDQVIST^ASTRID", "PatientID": "MRN-91789", "PatientBirthDate": "19690530",
     "AccessionNumber": "ACC20261126"},
]
SOURCE_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyInstanceUID",
                   "SeriesInstanceUID", "PatientAge", "PatientSex", "StudyDate", "InstitutionName")


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    dataset, identifiers = root / "dataset", []
    for i, patient in enumerate(PATIENTS):
        truth = write_phantom_study(root / f"study{i}", "liver_mri", seed=i, patient=patient)
        volumes = scan_folder(root / f"study{i}").volumes()
        chosen = best_by_phase(assign_phases([(v.volume_id, v.tags) for v in volumes], "liver_mri"))
        records = {v.volume_id: v for v in volumes}
        images = {phase: records[a.volume_id].load() for phase, a in chosen.items()}
        first = pydicom.dcmread(records[chosen["hepatobiliary"].volume_id].files[0])
        source = {k: str(first.get(k)) for k in SOURCE_KEYWORDS if k in first}
        identifiers.append(source)
        for lesion in truth["lesions"]:
            export_lesion(dataset, images, {**lesion, "mask": None}, source, b"site-secret-for-tests", "reader 1",
                          False, None, crop_mm=80.0)
    torch.manual_seed(0)
    run, log = root / "run", io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(log):
        mp.setenv("SLICERCAD_PROGRESS", "machine")  # the @@progress lines a runner-started job writes
        result = train(TrainConfig(task="liver_lesion", out=run, manifest=dataset / "manifest.jsonl", epochs=1,
                                   batch_size=4, val_fraction=0.34, seed=0, amp=False,
                                   task_config={"channels": [4, 8, 8], "roi_px": 32}))
    (run / "train.log").write_text(log.getvalue())   # the progress lines a user would keep
    return root, dataset, run, result, identifiers


def test_training_set_export_model_card_checkpoint_and_log_pass_the_audit(loop):
    root, dataset, run, result, identifiers = loop
    manifest = load_manifest(dataset / "manifest.jsonl")
    assert len(set(manifest.patients)) == len(PATIENTS) and len(list(manifest.lesions())) >= 2 * len(PATIENTS)
    assert "@@progress" in (run / "train.log").read_text()
    assert audit_export(dataset, identifiers) == []
    assert audit_export(run, identifiers) == []


def test_evaluation_report_passes_the_audit_and_a_planted_name_fails_it(loop):
    root, dataset, run, result, identifiers = loop
    model, card = load_model(result["card_path"], task="liver_lesion")
    rows = []
    for case in load_manifest(dataset / "manifest.jsonl").cases:
        images = {p: read_image(path) for p, path in case.images.items()}
        lesions = [Lesion(les.lesion_id, tuple(les.center), les.diameter_mm, les.coordinate_system)
                   for les in case.lesions]
        for les, r in zip(case.lesions, classify_lesions(model, card, images, lesions, with_cam=False)):
            rows.append({"case_id": case.case_id, "lesion_id": les.lesion_id, "y_true": les.label,
                         "size_mm": les.diameter_mm, **{f"prob_{c}": r["probabilities"][c] for c in card["classes"]}})
    report_dir = root / "evaluation"
    report_dir.mkdir()
    with open(report_dir / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = evaluate_file(report_dir / "predictions.csv", classes=card["classes"], n_boot=50)
    write_report(metrics, report_dir, "Phantom evaluation", synthetic=True)
    assert (report_dir / "report.md").exists()
    assert audit_export(report_dir, identifiers) == []
    (report_dir / "notes.txt").write_text("reviewed with Kawasaki Hanako's prior study\n")
    problems = audit_export(report_dir, identifiers)
    assert problems and any("notes.txt" in p for p in problems)
