"""SlicerCADLib.dicom_results on real MRML (slicer-core): a segmentation node on a loaded DICOM series becomes a
SEG through the core writer (terminology from the segment, SEMIAUTOMATIC once corrected) and is handed to the
DICOM database (a recording stand-in: ctkDICOMDatabase needs the application)."""
import numpy as np
import pytest
import SimpleITK as sitk

from slicercad.dicom.write import write_series
from slicercad.dicomio.seg import read_seg, segment_info
from slicercad.dicomio.terms import Algorithm

SHA = "ab" * 32


class RecordingDatabase:
    def __init__(self):
        self.inserted = []

    def insert(self, path, store, thumbnail):
        self.inserted.append(path)


def test_segmentation_node_to_seg_and_into_the_database(scene, tmp_path):
    from SlicerCADLib.dicom_results import CORRECTED_TAG, ORIGIN_TAG, import_into_database, write_segmentation_seg
    from SlicerCADLib.segmentations import label_array_to_segment
    from SlicerCADLib.study import load_study

    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(100, 10, (5, 20, 18)).astype(np.float32))
    image.SetSpacing((0.9, 1.2, 3.0))
    files = write_series(image, tmp_path / "mr", modality="MR", series_description="SYNTHETIC")
    result = load_study(scene, tmp_path / "mr")
    (volume,) = result.volume_nodes.values()
    mask = np.zeros((5, 20, 18), np.uint8)
    mask[1:4, 5:12, 4:9] = 1
    seg_node, sid = label_array_to_segment(mask, volume, name="cyst")
    segment = seg_node.GetSegmentation().GetSegment(sid)
    segment.SetTag(ORIGIN_TAG, "weak_lesion_demo")                 # added by the model (per-segment origin)
    algo = Algorithm("weak_lesion_demo", "2", SHA)
    path = write_segmentation_seg(seg_node, volume, tmp_path / "out" / "a.seg.dcm", algo)
    from slicercad.dicom.volume import load_volume

    ref, _ = load_volume(files)
    assert np.array_equal(read_seg(path, files, ref)[1], mask)
    (info,) = segment_info(path)
    assert info["type"][1] == "367643001" and info["algorithm_type"] == "AUTOMATIC" and info["model_sha256"] == SHA
    segment.SetTag(CORRECTED_TAG, "true")
    path2 = write_segmentation_seg(seg_node, volume, tmp_path / "out" / "b.seg.dcm", algo)
    assert segment_info(path2)[0]["algorithm_type"] == "SEMIAUTOMATIC"
    segment.SetTerminology("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically "
                           "Altered Structure~SCT^400210000^Hemangioma~^^~Anatomic codes - DICOM master list~^^~^^")
    path3 = write_segmentation_seg(seg_node, volume, tmp_path / "c.seg.dcm", algo)
    assert segment_info(path3)[0]["type"][1] == "400210000"
    db = RecordingDatabase()
    assert import_into_database([tmp_path / "out"], db) == [path, path2] and db.inserted == [str(path), str(path2)]
    with pytest.raises(Exception, match="no such result file"):
        import_into_database([tmp_path / "missing.dcm"], db)
