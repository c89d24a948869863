"""Corrected-label loop = the evaluated pipeline (issue 9 item 6): a lesion exported from the scene by 'Add to
training set' and read back by the training task gives the model input the panel computes on the original
volumes, per-phase offsets and a 40 mm lesion's field of view included; the export keeps phase timing and
the contrast agent under the declared options. SYNTHETIC DICOM study loaded into a slicer-core scene."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib import training  # noqa: E402
from LiverLesionCADLib.classify import phase_images, phase_tags  # noqa: E402
from LiverLesionCADLib.phase_nodes import phase_nodes_from_scene  # noqa: E402
from slicercad.engine.audit import audit_export  # noqa: E402
from slicercad.engine.manifest import load_manifest  # noqa: E402
from slicercad.liver import task  # noqa: E402
from slicercad.liver.classes import preset_classes  # noqa: E402
from slicercad.liver.dataset import lesion_sample  # noqa: E402
from slicercad.liver.inference import study_acquisition  # noqa: E402
from slicercad.liver.phases import PHASES  # noqa: E402
from slicercad.liver.roi import Lesion, RoiSpec  # noqa: E402
from slicercad.synth.study import write_phantom_study  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402

SECRET = b"site-secret-for-tests-0123456789"
SPEC = RoiSpec(size_px=32)
OFFSETS = {"T2": (0.0, 4.0, 0.0), "arterial": (1.5, 0.0, -2.0)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loop_study")
    return folder, write_phantom_study(folder, "liver_mri", seed=5)


def _read_back(dataset, diameter_mm=None):
    """Model inputs [N, P+1, H, W] the training task builds from the exported manifest."""
    path = dataset / "manifest.jsonl"
    if diameter_mm is not None:                     # the same lesion re-measured: the crop must still serve
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[0]["lesions"][0]["diameter_mm"] = diameter_mm
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = task.LIVER_LESION.config({"roi_px": SPEC.size_px})
    return task._from_manifest(cfg, load_manifest(path), list(preset_classes("report")), SPEC)[0]


def test_exported_lesion_gives_the_panel_model_input_with_offsets_and_40_mm_margin(scene, study, tmp_path):
    folder, truth = study
    loaded = load_study(scene, folder)
    nodes = phase_nodes_from_scene(list(loaded.volume_nodes.values()))
    assert set(nodes) == set(PHASES)
    les = truth["lesions"][0]
    lesion = Lesion("L1", tuple(les["center_lps"]), float(les["diameter_mm"]), "LPS", OFFSETS)
    row = training.add_to_training_set(tmp_path / "ds", nodes, lesion, "metastasis", "reader-1", False, None,
                                       SECRET)
    provenance = row["lesions"][0]["provenance"]
    assert provenance["offsets_mm"] == {p: list(v) for p, v in OFFSETS.items()}
    assert provenance["acquisition"]["field_strength_t"] == 3.0 and provenance["acquisition"]["b_value"] == 800.0

    images = phase_images(nodes)                    # what the panel classifies
    acquisition = study_acquisition(tags=phase_tags(nodes))
    for diameter in (None, 40.0):
        shown = lesion if diameter is None else Lesion("L1", lesion.center, diameter, "LPS", OFFSETS)
        x, G, _, rois = lesion_sample(images, shown, PHASES, SPEC, acquisition=acquisition)
        assert any("1e-6" in n for n in rois.notes)          # the study's ADC is stored as scanners store it
        back = _read_back(tmp_path / "ds", diameter)
        assert back.shape == (1, len(PHASES) + 1, SPEC.size_px, SPEC.size_px)
        assert np.allclose(back[0, :-1], x, atol=1e-4) and np.allclose(back[0, -1], G)
    no_offset = lesion_sample(images, Lesion("L1", lesion.center, 40.0, "LPS"), PHASES, SPEC,
                              acquisition=acquisition)[0]
    assert not np.allclose(back[0, PHASES.index("T2")], no_offset[PHASES.index("T2")], atol=1e-2)

    meta = json.loads((tmp_path / "ds" / "cases" / row["case_id"] / "metadata.json").read_text())
    grids = meta["crop"]["grids"]
    assert meta["crop"]["size_mm"] == training.export_crop_mm(lesion.diameter_mm) == 120.0
    assert grids["ADC"]["spacing_mm"] != grids["hepatobiliary"]["spacing_mm"]   # each phase on its own grid
    assert meta["dicom"]["ContrastBolusAgent"] and "AcquisitionTime" in meta["dicom"]
    assert meta["deidentification"]["options"] == [
        "Retain Patient Characteristics Option", "Clean Descriptors Option",
        "Retain Longitudinal Temporal Information with Modified Dates Option"]
    source = [training.source_identifiers(node) for node in nodes.values()]
    assert audit_export(tmp_path / "ds", source) == []                    # what the options keep is declared
