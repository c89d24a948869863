"""AnomalyCTLib for the panel on real MRML (slicer-core): a MONOCHROME1 radiograph loaded by Slicer's DICOM
module (``DICOM.instanceUIDs``, stored values) is inverted before scoring, the slider's threshold reaches the
overlay, the map segment carries the model tag (DICOM SEG says AUTOMATIC), and Save as DICOM writes the map,
SEG and SR into the study's results folder (refused before scoring)."""
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


def test_monochrome1_from_slicers_dicom_module_is_inverted(scene, monkeypatch):
    import slicer

    path = get_testdata_file("RG1_UNCI.dcm", download=False)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    stored = sitk.GetImageFromArray(ds.pixel_array.astype(np.float32)[None])    # as Slicer's plugin shows it
    node = sitk_to_volume_node(stored, scene, name="CR")
    with pytest.raises(InputError, match="looks inverted"):
        cxr.cxr_sample(logic.input_image(node, "cxr"))                            # no DICOM source: as stored
    node.SetAttribute("DICOM.instanceUIDs", str(ds.SOPInstanceUID))
    monkeypatch.setattr(slicer, "dicomDatabase", FakeDatabase({}), raising=False)    # instances not in the database
    assert logic.photometric_interpretation(node) == ""
    with pytest.raises(InputError, match="looks inverted"):                     # the polarity check still refuses
        cxr.cxr_sample(logic.input_image(node, "cxr"))
    monkeypatch.setattr(slicer, "dicomDatabase", FakeDatabase({str(ds.SOPInstanceUID): path}), raising=False)
    assert logic.photometric_interpretation(node) == "MONOCHROME1"
    s = cxr.cxr_sample(logic.input_image(node, "cxr"))
    assert s.info["lung_median"] < s.info["soft_median"]
    assert "Aligned on the lung fields: rotation" in logic.pose_note(s.info)
    assert "inpainted and not scored" not in logic.pose_note(s.info) and s.info["n_kept"] == 0
    assert "13 model voxels inside the anatomy are clipped" in logic.pose_note(dict(s.info, n_kept=13))


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
    text = logic.save_dicom(scored, volume, tmp_path / "res", cut, database=db)
    assert "Wrote 3 DICOM file(s)" in text and len(db.inserted) == 3
    study_uid = str(pydicom.dcmread(sorted(study.glob("*.dcm"))[0], stop_before_pixels=True).StudyInstanceUID)
    assert all(Path(f).parent == tmp_path / "res" / study_uid for f in db.inserted)
