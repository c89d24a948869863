"""A weak lesion label as a DICOM Segmentation referencing the source series: a thin wrapper over the shared
writer ``slicercad.dicomio.seg`` (SNOMED-CT terminology, algorithm identification with the model's sha256).
Only for labels on the grid of an unresampled single-frame series (one label slice per source instance)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dicomio.terms import Algorithm

MODEL_NAME = "WeakLabelSegmenter"
_FAMILY = {"unet": "ai", "region_growing": "region_growing", "watershed": "morphology"}


def weak_algorithm(method: str = "unet", card: dict | None = None) -> Algorithm:
    """The weak label's algorithm: a prompt (centre + size) from a person, so SEMIAUTOMATIC; the U-Net's card
    gives its name, version and sha256."""
    card = card or {}
    return Algorithm(name=str(card.get("name") or f"SlicerCAD weak_lesion {method}"),
                     version=str(card.get("version") or "1"), sha256=card.get("sha256") if method == "unet" else None,
                     family=_FAMILY.get(method, "deformable"), algorithm_type="SEMIAUTOMATIC",
                     parameters={"method": method})


def write_dicom_seg(mask_kji, image, source_files, path, segment_label: str, method: str = "unet",
                    series_number: int = 900, card: dict | None = None, lesion_type: str = "mass") -> Path:
    """Write ``mask_kji`` (on ``image``'s grid, which is the grid of ``source_files``) as a binary SEG."""
    from ..dicomio.seg import Segment, write_seg

    segment = Segment(str(segment_label), np.asarray(mask_kji), lesion_type, weak_algorithm(method, card),
                      tracking_id=str(segment_label))
    return write_seg([segment], image, source_files, path, series_number=series_number,
                     series_description=f"{MODEL_NAME} {segment_label}")


def read_dicom_seg(path, source_files, image) -> np.ndarray:
    """The SEG's segment 1 back on the source series' grid [k, j, i] (for checks)."""
    from ..dicomio.seg import read_seg

    return read_seg(path, source_files, image)[1]
