"""AnomalyCTLib for the panel on real MRML (slicer-core): a MONOCHROME1 radiograph loaded by Slicer's DICOM
module (``DICOM.instanceUIDs``) is inverted only when its pixels fail the polarity check (GDCM, the plugin's
default reader, already inverts it; DCMTK shows the stored values), the slider's threshold reaches the overlay,
the map segment carries the model tag (DICOM SEG says AUTOMATIC), Save as DICOM writes the map, SEG and SR into
the study's results folder (refused before scoring and under a parent transform), a chest X-ray gets its SR
only (no image plane), and the summary leads with the map-score percentile in English ordinals."""
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AnomalyCT"))

import module_results_data as data  # noqa: E402
from AnomalyCTLib import logic  # noqa: E402
from SlicerCADLib.volumes import sitk_to_volume_node  # noqa: E402
from slicercad.anomaly import cxr  # noqa: E402
from slicercad.errors import InputError  # noqa: E402


class FakeDatabase:
    def __init__(self, files=None):
        self.files, self.inserted = dict(files or {}), []

    def fileForInstance(self, uid):
        return self.files.get(uid, "")

    def insert(self, path, store, thumbnail):
        self.inserted.append(path)
        self.files[str(pydicom.dcmread(str(path), stop_before_pixels=True).SOPInstanceUID)] = str(path)


RG1 = get_testdata_file("RG1_UNCI.dcm", download=False)


def _radiograph_node(scene, monkeypatch, image, uid_in_database=True):
    """``image`` as Slicer's DICOM plugin leaves it: a node naming RG1_UNCI's instance (``DICOM.instanceUIDs``)."""
    import slicer

    ds = pydicom.dcmread(RG1, stop_before_pixels=True)
    node = sitk_to_volume_node(image, scene, name="CR")
    node.SetAttribute("DICOM.instanceUIDs", str(ds.SOPInstanceUID))
    db = FakeDatabase({str(ds.SOPInstanceUID): RG1} if uid_in_database else {})
    monkeypatch.setattr(slicer, "dicomDatabase", db, raising=False)
    return node, db


def test_monochrome1_stored_values_are_inverted(scene, monkeypatch):
    ds = pydicom.dcmread(RG1)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    stored = sitk.GetImageFromArray(ds.pixel_array.astype(np.float32)[None])    # DCMTK reader: as stored
    node = sitk_to_volume_node(stored, scene, name="CR")
    with pytest.raises(InputError, match="looks inverted"):
        cxr.cxr_sample(logic.input_image(node, "cxr"))                            # no DICOM source: as stored
    node, _db = _radiograph_node(scene, monkeypatch, stored, uid_in_database=False)
    assert logic.photometric_interpretation(node) == ""                         # instances not in the database
    with pytest.raises(InputError, match="looks inverted"):                     # the polarity check still refuses
        cxr.cxr_sample(logic.input_image(node, "cxr"))
    node, _db = _radiograph_node(scene, monkeypatch, stored)
    assert logic.photometric_interpretation(node) == "MONOCHROME1"
    shown = sitk.GetArrayFromImage(logic.input_image(node, "cxr"))
    assert np.corrcoef(shown.ravel(), ds.pixel_array.ravel())[0, 1] < -0.99   # inverted
    s = cxr.cxr_sample(logic.input_image(node, "cxr"))
    assert s.info["lung_median"] < s.info["soft_median"]
    assert "Aligned on the lung fields: rotation" in logic.pose_note(s.info)
    assert "inpainted and not scored" not in logic.pose_note(s.info) and s.info["n_kept"] == 0
    assert "13 model voxels inside the anatomy are clipped" in logic.pose_note(dict(s.info, n_kept=13))


def test_monochrome1_already_inverted_by_gdcm_is_not_flipped_back(scene, monkeypatch):
    gdcm = sitk.ReadImage(RG1)                                                  # ITK's GDCM reader inverts
    stored = pydicom.dcmread(RG1).pixel_array
    assert np.corrcoef(sitk.GetArrayViewFromImage(gdcm)[0].ravel(), stored.ravel())[0, 1] < -0.99
    node, _db = _radiograph_node(scene, monkeypatch, gdcm)
    assert logic.photometric_interpretation(node) == "MONOCHROME1"
    shown = logic.input_image(node, "cxr")
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(shown), sitk.GetArrayViewFromImage(gdcm)[0])
    s = cxr.cxr_sample(shown)                                                   # the polarity check passes
    assert s.info["lung_median"] < s.info["soft_median"]


def test_ordinals():
    assert [logic.ordinal(v) for v in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22.4, 23, 99.6, 101, 111, 112)] == \
        ["0th", "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "100th", "101st",
         "111th", "112th"]


@pytest.mark.filterwarnings("ignore:colour table")
def test_radiograph_save_dicom_writes_the_sr_and_says_why_no_map(scene, monkeypatch, tmp_path):
    from slicercad.dicomio.results_anomaly import PROJECTION_NOTE
    from slicercad.dicomio.sr import read_measurement_report

    node, db = _radiograph_node(scene, monkeypatch, sitk.ReadImage(RG1))
    scored = logic.score_volume(node, "cxr")                                   # the bundled SYNTHETIC CXR Glow
    r = scored.result
    text = scored.summary()
    assert text.startswith(f"Map score {r.map_score:.2f} SD (top 1% of the map): {logic.ordinal(r.map_percentile)} "
                           "percentile among held-out normal cases")
    assert f"bits/dim: {logic.ordinal(r.percentile)} (complexity-corrected: {logic.ordinal(r.variant_percentile)})" \
        in text
    out = logic.save_dicom(scored, node, tmp_path / "res", float(r.threshold), database=db)
    assert "Wrote 1 DICOM file(s)" in out and PROJECTION_NOTE in out and len(db.inserted) == 1
    (sr_path,) = db.inserted
    ds = pydicom.dcmread(RG1, stop_before_pixels=True)
    assert Path(sr_path).parent == tmp_path / "res" / str(ds.StudyInstanceUID)
    report = read_measurement_report(sr_path)
    assert report["source_series_uid"] == str(ds.SeriesInstanceUID)
    assert report["case"]["anomaly_score"] == pytest.approx(r.score, rel=1e-6)
    assert report["case"]["anomaly_map_percentile"] == pytest.approx(r.map_percentile, rel=1e-6)
    assert "anomaly_flagged_volume_mm3" not in report["case"]
    assert f"lung_distance_mm {round(r.sample.info['lung_distance_mm'], 1)}" in report["case_text"]["alignment"]
    assert PROJECTION_NOTE in report["case_text"]["status"]
    refs = pydicom.dcmread(sr_path).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert str(refs.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) == str(ds.SOPInstanceUID)


@pytest.mark.filterwarnings("ignore:colour table")
def test_threshold_segment_tag_and_save_dicom(scene, tmp_path):
    import slicer

    from SlicerCADLib.dicom_results import MODEL_TAGS
    from SlicerCADLib.segmentations import segment_tag as _tag
    from SlicerCADLib.study import load_study

    study = data.head_ct(tmp_path / "head")
    (volume,) = load_study(scene, study).volume_nodes.values()
    with pytest.raises(InputError, match="score the case first"):
        logic.save_dicom(None, volume, tmp_path / "res", 3.0, database=False)
    scored = logic.score_volume(volume, card_path=data.anomaly_model(tmp_path / "model"))
    logic.set_map_threshold(scored.map_node, 1.25)
    assert scored.map_node.GetDisplayNode().GetLowerThreshold() == pytest.approx(1.25)
    cut = float(np.quantile(slicer.util.arrayFromVolume(scored.map_node), 0.99))
    seg, sid = logic.map_to_segment(scored.map_node, volume, cut, algorithm="glow-test")
    assert _tag(seg.GetSegmentation().GetSegment(sid), MODEL_TAGS[0]) == "glow-test"
    db = FakeDatabase()
    moved = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    volume.SetAndObserveTransformNodeID(moved.GetID())
    with pytest.raises(InputError, match=f"harden or remove the transform on {volume.GetName()} first"):
        logic.save_dicom(scored, volume, tmp_path / "res", cut, database=db)
    assert not db.inserted and not (tmp_path / "res").exists()
    volume.SetAndObserveTransformNodeID(None)
    origin = volume.GetOrigin()
    volume.SetOrigin(origin[0] + 5.0, origin[1], origin[2])                     # moved after scoring (hardened)
    with pytest.raises(InputError, match="has moved since it was scored"):
        logic.save_dicom(scored, volume, tmp_path / "res", cut, database=db)
    volume.SetOrigin(*origin)
    text = logic.save_dicom(scored, volume, tmp_path / "res", cut, database=db)
    assert "Wrote 3 DICOM file(s)" in text and len(db.inserted) == 3
    study_uid = str(pydicom.dcmread(sorted(study.glob("*.dcm"))[0], stop_before_pixels=True).StudyInstanceUID)
    assert all(Path(f).parent == tmp_path / "res" / study_uid for f in db.inserted)
