"""SlicerCADLib.dicom_results on real MRML (slicer-core): each module's result in a scene (a TI record, an
AnomalyCT map node with its score, RenalMassCAD results on phase nodes) is written as DICOM on the source
series and handed to the DICOM database. ctkDICOMDatabase needs the Slicer application (ctk is not in
slicer-core), so the database here is a stand-in recording ``insert`` and answering ``filesForSeries`` - the
two ctkDICOMDatabase calls used outside the application; inside it DICOMUtils.importDicom is used."""
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

import module_results_data as data
from slicercad.dicomio.sr import read_measurement_report
from slicercad.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
for module in ("AnomalyCT", "RenalMassCAD"):
    if str(ROOT / module) not in sys.path:
        sys.path.insert(0, str(ROOT / module))


class Database:
    """What the code calls on ctkDICOMDatabase: insert(path, storeFile, generateThumbnail), filesForSeries."""

    def __init__(self, series=None):
        self.inserted, self.series = [], dict(series or {})

    def insert(self, path, store, thumbnail):
        self.inserted.append(path)

    def filesForSeries(self, uid):
        return self.series.get(uid, [])


def test_ti_record_to_sr_in_the_database(tmp_path):
    from SlicerCADLib.dicom_results import ti_record_to_dicom
    from slicercad.ti.cli import correct_path

    scout = data.ti_scout(tmp_path / "scout")
    (record,) = correct_path(scout)                                   # physics only (no model)
    files = [str(p) for p in scout.glob("*.dcm")]
    db = Database({record["series_instance_uid"]: files})
    (sr,) = ti_record_to_dicom(record, tmp_path / "out", database=db)   # files found through the database
    assert db.inserted == [str(sr)]
    back = read_measurement_report(sr)
    assert back["case"]["null_ti_ms"] == record["null_ti_ms"] and back["case_text"]["method"] == record["method"]
    with pytest.raises(InputError, match="not in Slicer's DICOM database"):
        ti_record_to_dicom(record, tmp_path / "x", database=Database())
    with pytest.raises(InputError, match="database is not open"):
        ti_record_to_dicom(record, tmp_path / "y", scout_files=files)    # no slicer.dicomDatabase in slicer-core


def test_anomaly_map_node_to_pm_seg_sr(scene, tmp_path, caplog):
    import SimpleITK as sitk
    from AnomalyCTLib.logic import score_volume

    from SlicerCADLib.dicom_results import anomaly_map_to_dicom
    from SlicerCADLib.study import load_study
    from SlicerCADLib.volumes import volume_node_to_sitk
    from slicercad.dicom.volume import load_volume
    from slicercad.dicomio.pmap import read_parametric_map
    from slicercad.dicomio.seg import read_seg

    study = data.head_ct(tmp_path / "head")
    (volume,) = load_study(scene, study).volume_nodes.values()
    scored = score_volume(volume, card_path=data.anomaly_model(tmp_path / "model"))
    values = sitk.GetArrayFromImage(volume_node_to_sitk(scored.map_node))
    cut = float(np.quantile(values, 0.99))                             # a threshold set in the panel
    db = Database()
    seg, pm, sr = anomaly_map_to_dicom(scored.map_node, volume, scored, tmp_path / "out", threshold=cut, database=db)
    assert db.inserted == [str(seg), str(pm), str(sr)]
    files = sorted(study.glob("*.dcm"))
    image, _ = load_volume(files)
    assert np.array_equal(read_parametric_map(pm, files, image)[0], values)
    assert np.array_equal(read_seg(seg, files, image)[1] > 0, values > cut)
    back = read_measurement_report(sr)
    assert back["case"]["anomaly_score"] == pytest.approx(scored.score, abs=1e-9)
    assert back["case"]["anomaly_map_threshold"] == pytest.approx(cut)
    from SlicerCADLib.dicom_results import _on_grid
    from SlicerCADLib.volumes import sitk_to_volume_node

    coarse = sitk_to_volume_node(sitk.Shrink(volume_node_to_sitk(scored.map_node), [2, 2, 1]), scene, "coarse")
    with caplog.at_level("WARNING", logger="SlicerCADLib.dicom_results"):      # another grid: said, not silent
        assert _on_grid(coarse, image).shape == values.shape
    assert "resampled" in caplog.text


def test_renal_scene_results_to_seg_sr(scene, tmp_path):
    from RenalMassCADLib.assess import assess_scene, load_renal_model, phase_nodes_from_scene

    from SlicerCADLib.dicom_results import renal_results_to_dicom
    from SlicerCADLib.study import load_study
    from slicercad.liver.lesion_files import read_lesions

    card_path = data.renal_model(tmp_path / "model")
    study, masses_csv = data.renal_study(tmp_path / "renal")
    load_study(scene, study)
    nodes, _ = phase_nodes_from_scene(scene)
    bundle, card = load_renal_model(card_path)
    masses = read_lesions(masses_csv)
    results, _, _ = assess_scene(bundle, card, nodes, masses, age_years=70, male=1, cam_phase=None)
    db = Database()
    seg, sr = renal_results_to_dicom(results, masses, nodes["nephrographic"], card, tmp_path / "out", database=db)
    assert db.inserted == [str(seg), str(sr)]
    back = read_measurement_report(sr)
    assert [x.lesion_id for x in back["lesions"]] == ["m1", "big"]
    assert back["lesions"][0].probabilities["malignant"] == pytest.approx(results[0]["p_combined"], abs=1e-9)
    ref = pydicom.dcmread(next((study / "03_nephrographic").glob("*.dcm")), stop_before_pixels=True)
    assert back["source_series_uid"] == ref.SeriesInstanceUID
    none = renal_results_to_dicom(results, masses, nodes["nephrographic"], card, tmp_path / "files", database=False)
    assert [p.name for p in none] == ["masses.seg.dcm", "report.sr.dcm"] and len(db.inserted) == 2


def test_segments_keep_their_terminology_and_their_own_origin(scene, tmp_path):
    """A Slicer terminology goes into the SEG as it is (category, type, modifier, region); a hand-drawn segment is
    MANUAL, a model's AUTOMATIC, an edited one SEMIAUTOMATIC - per segment, not per node."""
    import SimpleITK as sitk

    from SlicerCADLib.dicom_results import CORRECTED_TAG, ORIGIN_TAG, write_segmentation_seg
    from SlicerCADLib.segmentations import label_array_to_segment
    from SlicerCADLib.study import load_study
    from slicercad.dicom.write import write_series
    from slicercad.dicomio.seg import segment_info
    from slicercad.dicomio.terms import Algorithm

    image = sitk.GetImageFromArray(np.random.default_rng(2).normal(100, 10, (4, 16, 14)).astype(np.float32))
    write_series(image, tmp_path / "mr", modality="MR", series_description="SYNTHETIC")
    (volume,) = load_study(scene, tmp_path / "mr").volume_nodes.values()
    masks = [np.zeros((4, 16, 14), np.uint8) for _ in range(3)]
    for n, m in enumerate(masks):
        m[1:3, 2 + 4 * n:5 + 4 * n, 3:9] = 1
    node, liver = label_array_to_segment(masks[0], volume, name="my liver")
    _, model = label_array_to_segment(masks[1], volume, node, name="cyst")
    _, edited = label_array_to_segment(masks[2], volume, node, name="nodule")
    segmentation = node.GetSegmentation()
    segmentation.GetSegment(liver).SetTerminology(
        "Segmentation category and type - DICOM master list~SCT^85756007^Tissue~SCT^10200004^Liver~SCT^24028007^Right"
        "~Anatomic codes - DICOM master list~SCT^818981001^Abdomen~SCT^7771000^Left")
    segmentation.GetSegment(model).SetTag(ORIGIN_TAG, "m")
    segmentation.GetSegment(edited).SetTag(ORIGIN_TAG, "m")
    segmentation.GetSegment(edited).SetTag(CORRECTED_TAG, "true")
    path = write_segmentation_seg(node, volume, tmp_path / "a.seg.dcm", Algorithm("m", "1", "cd" * 32))
    a, b, c = segment_info(path)
    assert (a["category"], a["type"], a["type_modifier"], a["region"]) == (
        ("SCT", "85756007", "Tissue"), ("SCT", "10200004", "Liver"), ("SCT", "24028007", "Right"),
        ("SCT", "818981001", "Abdomen"))
    assert [x["algorithm_type"] for x in (a, b, c)] == ["MANUAL", "AUTOMATIC", "SEMIAUTOMATIC"]
    assert "model_sha256" not in a and b["model_sha256"] == c["model_sha256"] == "cd" * 32
    assert (b["type"][1], c["type"][1]) == ("367643001", "27925004")      # Slicer's default Tissue: by the name


def test_database_import_checks_every_instance_was_indexed(tmp_path):
    from SlicerCADLib.dicom_results import import_into_database
    from slicercad.dicom.write import write_series
    import SimpleITK as sitk

    files = write_series(sitk.GetImageFromArray(np.zeros((2, 4, 4), np.float32)), tmp_path / "s", modality="MR")

    class Skipping(Database):                  # ctkDICOMDatabase.fileForInstance: '' for an instance not indexed
        def fileForInstance(self, uid):
            return "" if uid == str(pydicom.dcmread(files[1]).SOPInstanceUID) else "x"

    with pytest.raises(InputError, match="did not index instance"):
        import_into_database(files, Skipping())
    assert import_into_database(files[:1], Skipping()) == [Path(files[0])]
