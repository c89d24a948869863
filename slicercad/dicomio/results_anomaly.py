"""AnomalyCT results as DICOM on the scored series: the map thresholded at the model's normal-derived threshold
as a SEG (AUTOMATIC, the model's sha256), the map itself as a FLOAT Parametric Map (|z| against the held-out
normals, two-sided, smoothed in the mask; for the GAN the max over channels of the signed residual's |z|; UCUM
'1'), and the case score, its percentile among the normals, the complexity-corrected variant, the map score
(top 1 % of the map) with its percentile, the threshold and the flagged volume in a TID 1500 SR (TID 1501 case
values), with the spatial normalisation (head: rotation, per-axis scale, fit Dice, orientation check, cut area;
chest X-ray: the lung frame's rotation and scale) as a text. A projection radiograph without a Frame of
Reference (``sources.is_projection_radiograph``: CR, DX, ...) gets the SR only, referencing its image: a
Parametric Map needs a Frame of Reference and the SEG writer places frames by ImagePositionPatient, so neither
is written (PROJECTION_NOTE)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

MAP_EXPLANATION = "anomaly map: two-sided |z| vs normals, smoothed in mask"   # LO: <= 64 chars
PROJECTION_NOTE = ("projection radiograph (no Frame of Reference): no Parametric Map or SEG written, the SR only "
                   "(save the map node as NRRD to keep it)")


def write_anomaly_results(map_kji, image, source_files, out_folder, *, score: float, percentile: float,
                          threshold: float, card: dict, variant_score: float | None = None,
                          map_score: float | None = None, map_percentile: float | None = None,
                          sample_info: dict | None = None, warnings: list | None = None) -> dict:
    """Write ``anomaly.seg.dcm`` (when a voxel is above ``threshold``), ``anomaly.pm.dcm`` and ``report.sr.dcm``
    for a map [k, j, i] on ``image``'s grid (the source series'); ``sample_info``: the sample's ``info`` (its
    alignment goes in the SR), ``warnings``: the result's (``Result.warnings``). Returns {"seg", "pm", "sr",
    "case"} ("seg" and "pm" None for a projection radiograph)."""
    from ..anomaly.cli import pose_fields
    from .pmap import write_parametric_map
    from .seg import Segment, write_seg
    from .sources import is_projection_radiograph
    from .sr import write_measurement_report
    from .terms import algorithm_from_card

    values = np.asarray(map_kji, dtype=np.float32)
    if not np.isfinite(threshold):
        raise InputError("the anomaly threshold is not a finite number", "threshold")
    algorithm = algorithm_from_card(card)
    out = Path(out_folder)
    flagged = values > float(threshold)
    planar = not is_projection_radiograph(source_files)
    seg = pm = None
    if planar and flagged.any():
        seg = write_seg([Segment("anomaly", flagged, "anomaly", algorithm, tracking_id="anomaly")], image,
                        source_files, out / "anomaly.seg.dcm",
                        series_description="SlicerCAD anomaly above threshold (research use)")
    if planar:
        pm = write_parametric_map(values, image, source_files, out / "anomaly.pm.dcm", label="ANOMALY",
                                  explanation=MAP_EXPLANATION, quantity="anomaly_z", algorithm=algorithm,
                                  site={"head_ct": "head", "cxr": "chest"}.get(card.get("input_spec", {}).get("kind")),
                                  series_description="SlicerCAD anomaly map (research use)")
    case = {"anomaly_score": float(score), "anomaly_percentile": float(percentile),
            "anomaly_map_threshold": float(threshold)}
    if planar:
        case["anomaly_flagged_volume_mm3"] = float(flagged.sum()) * float(np.prod(image.GetSpacing()))
    for key, value in (("anomaly_variant_score", variant_score), ("anomaly_map_score", map_score),
                       ("anomaly_map_percentile", map_percentile)):
        if value is not None:
            case[key] = float(value)
    status = f"{int(flagged.sum())} pixels above the map threshold; {PROJECTION_NOTE}" if not planar else \
        "no voxel above the map threshold: no SEG written" if seg is None else \
        f"{int(flagged.sum())} voxels above the map threshold (anomaly.seg.dcm)"
    synthetic = card.get("training_data", {}).get("synthetic")
    sr = write_measurement_report(out / "report.sr.dcm", [], image if planar else None, source_files, algorithm,
                                  seg_path=seg,
                                  case_values=case, case_texts={"status": status, "alignment": "; ".join(
                                      f"{k} {v}" for k, v in pose_fields(sample_info or {}).items()),
                                              "warnings": "; ".join(warnings or [])},
                                  notice="model trained on synthetic data" if synthetic else "",
                                  series_description="SlicerCAD anomaly report (research use)")
    return {"seg": seg, "pm": pm, "sr": sr, "case": case}


def anomaly_results(study_folder, out_folder, kind: str = "head_ct", model=None, device: str = "cpu") -> dict:
    """Score the one DICOM series in ``study_folder`` (as ``slicercad anomaly score``) and write its results
    (``write_anomaly_results``) into ``out_folder``; the map is resampled onto the series' own grid."""
    import SimpleITK as sitk

    from ..anomaly.detector import load_detector
    from ..dicom.scan import scan_folder

    volumes = list(scan_folder(study_folder).volumes())
    if len(volumes) != 1:
        raise InputError(f"the folder holds {len(volumes)} image series; give one series per study folder",
                         str(study_folder))
    image = volumes[0].load()
    result = load_detector(model, kind, device).score_image(image, str(study_folder))
    values = sitk.GetArrayFromImage(result.map_image(image))
    return write_anomaly_results(values, image, volumes[0].files, out_folder, score=result.score,
                                 percentile=result.percentile, threshold=result.threshold, card=result.card,
                                 variant_score=result.variant, map_score=getattr(result, "map_score", None),
                                 map_percentile=getattr(result, "map_percentile", None),
                                 sample_info=result.sample.info, warnings=result.warnings)
