"""LiverLesionCAD workflow on a SYNTHETIC DICOM study in a real MRML scene: phases filled from the
phase assignment, the side-by-side phase strip, and 'Add to training set' passing the audit."""
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LiverLesionCAD"))

from LiverLesionCADLib.phase_nodes import STRIP_GAP_PX, phase_nodes_from_scene, phase_strip_rgb  # noqa: E402
from LiverLesionCADLib.training import add_to_training_set, source_identifiers  # noqa: E402
from slicercad.engine.audit import audit_export  # noqa: E402
from slicercad.errors import DicomError  # noqa: E402
from slicercad.liver.phases import PHASES  # noqa: E402
from slicercad.liver.roi import Lesion  # noqa: E402
from slicercad.synth.study import write_phantom_study  # noqa: E402
from SlicerCADLib.dicom_nodes import UIDS_ATTRIBUTE, volume_files  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node, volume_node_to_sitk  # noqa: E402

SECRET = b"site-secret-for-tests-0123456789"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    truth = write_phantom_study(folder, "liver_mri", seed=3)
    return folder, truth


def test_phases_filled_from_assignment_pick_high_b_dwi(scene, study):
    folder, truth = study
    loaded = load_study(scene, folder)
    nodes = phase_nodes_from_scene(scene)
    assert set(nodes) == set(PHASES)
    for phase, node in nodes.items():
        uid = pydicom.dcmread(volume_files(node)[0], stop_before_pixels=True).SeriesInstanceUID
        assert truth["truth"][uid] == phase, f"{phase} filled with series of {truth['truth'][uid]}"
    dwi = [a for a in loaded.assignments if a.phase == "DWI"]
    assert len(dwi) == 2 and nodes["DWI"] is loaded.volume_nodes[max(dwi, key=lambda a: a.b_value).volume_id]
    # the same from an explicit node list, and nothing from volumes without a DICOM source
    assert phase_nodes_from_scene(list(loaded.volume_nodes.values())) == nodes
    plain = sitk_to_volume_node(volume_node_to_sitk(nodes["T2"]), scene, name="computed")
    with pytest.raises(DicomError):
        phase_nodes_from_scene([plain])


def test_dicom_browser_volume_uses_database_uids(scene, study):
    """A node carrying only DICOM.instanceUIDs (as Slicer's DICOM browser leaves it) is assigned too."""
    import slicer

    folder, _ = study
    loaded = load_study(scene, folder)
    node = phase_nodes_from_scene(scene)["hepatobiliary"]
    files = volume_files(node)
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}

    class Database:
        def fileForInstance(self, uid):
            return uids.get(uid, "")

    browser = sitk_to_volume_node(volume_node_to_sitk(node), scene, name="from browser")
    browser.SetAttribute(UIDS_ATTRIBUTE, " ".join(uids))
    others = [n for n in loaded.volume_nodes.values() if n is not node]
    slicer.dicomDatabase = Database()
    try:
        assert phase_nodes_from_scene(others + [browser])["hepatobiliary"] is browser
    finally:
        del slicer.dicomDatabase


def test_phase_strip_centres_each_phase_on_lesion_plus_offset(scene, study):
    folder, truth = study
    load_study(scene, folder)
    nodes = phase_nodes_from_scene(scene)
    les = truth["lesions"][0]
    size = 96
    lesion = Lesion("L1", tuple(les["center_lps"]), les["diameter_mm"], les["coordinate_system"])
    strip = phase_strip_rgb(nodes, lesion, size_px=size)
    assert strip.shape == (size, len(PHASES) * size + (len(PHASES) - 1) * STRIP_GAP_PX, 3)
    moved = phase_strip_rgb(nodes, Lesion("L1", lesion.center, lesion.diameter_mm, "LPS",
                                          {"T2": (0.0, 0.0, 25.0)}), size_px=size)
    tiles = lambda s: [s[:, i * (size + STRIP_GAP_PX): i * (size + STRIP_GAP_PX) + size] for i in range(len(PHASES))]  # noqa: E731
    changed = [not np.array_equal(a, b) for a, b in zip(tiles(strip), tiles(moved))]
    assert changed == [p == "T2" for p in PHASES]


def test_add_to_training_set_exports_and_passes_audit(scene, study, tmp_path):
    folder, truth = study
    load_study(scene, folder)
    nodes = phase_nodes_from_scene(scene)
    les = truth["lesions"][0]
    lesion = Lesion("L1", tuple(les["center_lps"]), les["diameter_mm"], "LPS")
    source = source_identifiers(nodes["hepatobiliary"])
    assert source["PatientID"].startswith("SYN-liver_mri") and source["StudyInstanceUID"] == truth["study_uid"]
    prediction = {"class": "metastasis", "probabilities": {"cyst": 0.2, "hemangioma": 0.1, "metastasis": 0.7}}
    row = add_to_training_set(tmp_path / "ds", nodes, lesion, les["label"], "reader-1", True, prediction, SECRET)
    again = add_to_training_set(tmp_path / "ds", nodes, lesion, les["label"], "reader-1", True, prediction, SECRET)
    assert row["case_id"] == again["case_id"]
    manifest = (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 1 and json.loads(manifest[0])["lesions"][0]["label"] == les["label"]
    assert set(json.loads(manifest[0])["images"]) == set(PHASES)
    all_sources = [source_identifiers(n) for n in nodes.values()]
    assert audit_export(tmp_path / "ds", all_sources) == []
