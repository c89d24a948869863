"""SYNTHETIC inputs for the module results-as-DICOM tests (Testing/test_results_modules.py, test_results_mrml.py
and the Orthanc round trip in Testing/test_pacs_module_results.py): a TI scout, a head CT with an inserted
bleed, a 4-phase renal CT, each with an untrained (random-weight) model - the writers are under test, not the
models (nor the bundled ones, which their own modules rebuild)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def ti_scout(folder: Path) -> Path:
    """A SYNTHETIC Look-Locker scout as one enhanced MR file (the frames' TIs in the per-frame macro)."""
    from slicercad.ti.phantom import make_scout, write_scout_dicom

    write_scout_dicom(make_scout(1), folder, ti_in="multiframe")
    return folder


def ti_model(folder: Path) -> Path:
    """An untrained (random-weight) TI offset CNN card: the SR writer is under test, not the model."""
    import torch

    from slicercad.engine.registry import save_model
    from slicercad.engine.tasks import get_task
    from slicercad.ti import task  # noqa: F401  (registers the TI tasks)

    torch.manual_seed(0)
    spec = get_task("ti_offset")
    cfg = spec.config()
    card = {"name": "ti_random_test", "task": "ti_offset", "kind": "classification", "model_config": cfg,
            "input_spec": spec.spec_for(cfg), "classes": list(spec.classes), "training_data": {"synthetic": True},
            "metrics": {}, "temperature": 1.0}
    return save_model(spec.build_model(cfg), card, folder)


def head_ct(folder: Path) -> Path:
    """A SYNTHETIC head CT with a 22 mm intracerebral bleed, as a CT series."""
    from slicercad.dicom.write import write_series
    from slicercad.synth.anomaly_head import insert_anomaly, normal_head

    image, _ = insert_anomaly(normal_head(3), "ich", 22.0, 40.0, 1)
    write_series(image, folder, modality="CT", series_description="SYNTHETIC head CT",
                 patient={"PatientID": "SYN-HEAD", "PatientName": "SYNTHETIC^HEAD"})
    return folder


def anomaly_model(folder: Path) -> Path:
    """An untrained (random-weight) head-CT Glow with its default normal reference: independent of the bundled
    model, which its own module rebuilds."""
    import torch

    from slicercad.anomaly import task  # noqa: F401  (registers the anomaly tasks)
    from slicercad.engine.registry import save_model
    from slicercad.engine.tasks import get_task

    torch.manual_seed(0)
    spec = get_task("anomaly_glow_head3d")
    cfg = spec.config({"steps": 1, "hidden": 8})
    model = spec.build_model(cfg)
    card = {"name": "tiny_head_test", "task": "anomaly_glow_head3d", "kind": "likelihood", "model_config": cfg,
            "input_spec": spec.spec_for(cfg), "classes": ["normal", "anomalous"],
            "training_data": {"synthetic": True}, "metrics": {"map_threshold": float(model.map_threshold)},
            "temperature": 1.0}
    return save_model(model, card, folder)


def renal_model(folder: Path) -> Path:
    """A renal model card with random CNN weights and fixed logistic coefficients (cut-off 0.5)."""
    import torch

    from slicercad.engine.registry import save_model
    from slicercad.renal.inference import COMBINED_FEATURES, IMAGE_ONLY_FEATURES, MODELS
    from slicercad.renal.task import RenalModelSet, input_spec

    torch.manual_seed(0)
    card = {"name": "renal_random_test", "task": "renal_mass_bundle", "kind": "classification",
            "model_config": {"channels": [16, 32, 64], "dropout": 0.2}, "input_spec": input_spec(),
            "classes": ["benign", "malignant"], "temperature": 1.0, "training_data": {"synthetic": True},
            "metrics": {}, "combined_model": {"features": list(COMBINED_FEATURES), "coefficients": [0.1] * 8},
            "image_only_model": {"features": list(IMAGE_ONLY_FEATURES), "coefficients": [0.1] * 5},
            "cutoffs": {m: 0.5 for m in (*MODELS, "combined", "image_only")}}
    return save_model(RenalModelSet(), card, folder)


def renal_study(folder: Path) -> tuple:
    """(study folder, mass CSV): a 24 mm clear-cell RCC, listed once as measured and once at 45 mm (flagged)."""
    from slicercad.renal.phantom import render_case, write_case_dicom

    case = render_case(np.random.default_rng(0), "clear_cell_rcc", 24.0, "SYN-RENAL", "m1", age_years=70, male=1)
    write_case_dicom(case, folder / "study")
    x, y, z = (float(v) for v in case.center_lps)
    masses = folder / "masses.csv"
    masses.write_text("lesion_id,x,y,z,coordinate_system,diameter_mm\n"
                      f"m1,{x},{y},{z},LPS,24.0\nbig,{x},{y},{z},LPS,45.0\n")
    return folder / "study", masses
