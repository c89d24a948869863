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


def test_anomaly_map_node_to_pm_seg_sr(scene, tmp_path):
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
