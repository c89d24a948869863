"""Results as a DICOM TID 1500 Measurement Report in a Comprehensive 3D SR (highdicom.sr).

Per lesion (tracking identifier = lesion id, one tracking UID shared by its groups):
- TID 1410 with an Image Region SCOORD3D POINT at the lesion centre (LPS mm): finding type = the predicted
  class's code (``terms.class_code``), finding site, the diameter (mm), one NUM "Probability" (private P001,
  UCUM '1') per class with the class named by a HAS CONCEPT MOD "Finding" (DCM 121071) = the class's code,
  further model outputs (e.g. per-phase probabilities) as NUM "Model score" (P008) named by a HAS CONCEPT MOD
  "Model score name" (P025, a private code per name), and a qualitative evaluation Finding = the predicted class
  (a cut-off's call need not be the most probable class; an unscored lesion has no probabilities, its type as
  Finding and a "Result status" (P023) qualitative evaluation saying why).
- TID 1410 with a two-point SCOORD POLYLINE on the source slice nearest the centre: the diameter as a line
  through the centre along the image rows, with its Length.
- TID 1411 referencing the lesion's SEG segment where one exists, with the segment's volume (mm3): SCT Volume
  for a segmentation, "ROI sphere volume" (private P026, no model as its algorithm) for a sphere built from the
  centre and diameter.
Case-level values (TI values, anomaly score...) and texts (method, rule, warnings, status) go in one TID 1501
group (tracking identifier 'case'), which also carries the research-use notice as a Comment. Every group names
the model (name, version, parameters 'model_sha256=...') in its TID 4019 Algorithm Identification; the observer
is the device. UIDs derive from the source series, the model and the content, so a rerun writes the same UIDs.
SCOORD pixel coordinates follow PS3.3 C.18.6.1.1 (the top-left corner of the top-left pixel is 0,0, so the
centre of pixel (i, j) is (i + 0.5, j + 0.5)).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .sources import SeriesRef, nearest_slice, series_sources, sorted_sources
from .terms import (MANUFACTURER, PRIVATE_SCHEME, RESEARCH_NOTICE, SITES, Algorithm, class_code, class_name, code,
                    coding_scheme_identification, derived_uids, distinct_class_codes, named_code, parse_parameters, private_code)

# case-level value -> (private concept key, UCUM unit, unit meaning)
CASE_VALUES = {"null_ti_ms": ("null_ti", "ms", "millisecond"),
               "blood_null_ti_ms": ("blood_null_ti", "ms", "millisecond"),
               "recommended_ti_ms": ("recommended_ti", "ms", "millisecond"),
               "ti_uncertainty_ms": ("ti_uncertainty", "ms", "millisecond"),
               "optimal_ti_low_ms": ("optimal_ti_low", "ms", "millisecond"),
               "optimal_ti_high_ms": ("optimal_ti_high", "ms", "millisecond"),
               "anomaly_score": ("anomaly_score", "1", "no units"),
               "anomaly_percentile": ("anomaly_percentile", "%", "percent"),
               "anomaly_variant_score": ("anomaly_variant_score", "1", "no units"),
               "anomaly_map_threshold": ("anomaly_map_threshold", "1", "no units"),
               "anomaly_map_score": ("anomaly_map_score", "1", "no units"),
               "anomaly_map_percentile": ("anomaly_map_percentile", "%", "percent"),
               "anomaly_flagged_volume_mm3": ("anomaly_flagged_volume", "mm3", "cubic millimeter")}
# case-level text (TID 1501 TEXT rows) -> private concept key
CASE_TEXTS = {"method": "method", "rule": "rule", "warnings": "warnings", "status": "status",
              "alignment": "alignment"}


@dataclass
class LesionFinding:
    """One lesion's result row as the SR holds it."""

    lesion_id: str
    centre_lps: tuple
    diameter_mm: float
    predicted_class: str
    probabilities: dict = field(default_factory=dict)
    segment_number: int | None = None
    volume_mm3: float | None = None
    site: str | None = "liver"
    scores: dict = field(default_factory=dict)      # further unitless model outputs, e.g. per-phase probabilities
    status: str | None = None                       # why a lesion is unscored (a qualitative evaluation)
    sphere_roi: bool = False                        # the segment is a sphere from centre + diameter, not a label

    @classmethod
    def from_liver_result(cls, result: dict, lesion, segment_number: int | None = None,
                          volume_mm3: float | None = None) -> "LesionFinding":
        """From a ``liver.inference.classify_lesions`` result dict and its ``roi.Lesion`` (segment: a sphere)."""
        return cls(str(result["lesion_id"]), tuple(float(v) for v in lesion.center_lps()),
                   float(result["diameter_mm"]), str(result["predicted_class"]),
                   {str(k): float(v) for k, v in result["probabilities"].items()}, segment_number, volume_mm3,
                   sphere_roi=True)


def _measurement(name, value, unit, meaning, algorithm=None, modifier=None):
    """A TID 300 NUM; ``modifier`` (concept, code) adds a HAS CONCEPT MOD naming what it is of."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    item = hd.sr.Measurement(name=name, value=float(value), unit=Code(unit, "UCUM", meaning), algorithm_id=algorithm)
    if modifier is not None:
        mod = hd.sr.CodeContentItem(name=modifier[0], value=modifier[1],
                                    relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)
        if "ContentSequence" in item[0]:
            item[0].ContentSequence.append(mod)
        else:
            item[0].ContentSequence = hd.sr.ContentSequence([mod], is_root=False)
    return item


def _diameter_line(image, sources, finding: LesionFinding):
    """Two SCOORD pixel points (column, row) on the slice nearest the centre, ``diameter_mm`` apart along rows."""
    k, i, j = nearest_slice(image, finding.centre_lps)
    if not 0 <= k < len(sources):
        raise InputError(f"lesion centre {finding.centre_lps} lies outside the source series", finding.lesion_id)
    half = finding.diameter_mm / 2.0 / float(image.GetSpacing()[0])
    return sources[k], np.array([[i - half + 0.5, j + 0.5], [i + half + 0.5, j + 0.5]], dtype=float)


def _lesion_groups(finding, image, sources, ref: SeriesRef, algorithm, seg_ds):
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    if finding.predicted_class not in finding.probabilities and finding.probabilities:
        raise InputError(f"predicted class {finding.predicted_class!r} is not among the probabilities "
                         f"{sorted(finding.probabilities)}", finding.lesion_id)
    distinct_class_codes(finding.probabilities, finding.lesion_id)
    uid = generate_uid(entropy_srcs=[ref.series_uid, str(finding.lesion_id), "tracking"])
    algo = algorithm.sr_identification()
    sites = [hd.sr.FindingSite(code(SITES[finding.site]))] if finding.site in SITES else None
    finding_type = class_code(finding.predicted_class)

    def tracking():
        return hd.sr.TrackingIdentifier(uid=uid, identifier=str(finding.lesion_id)[:64])

    measurements = [_measurement(codes.SCT.Diameter, finding.diameter_mm, "mm", "millimeter", algo)]
    measurements += [_measurement(private_code("probability"), p, "1", "no units", algo,
                                  (codes.DCM.Finding, class_code(c))) for c, p in finding.probabilities.items()]
    measurements += [_measurement(private_code("model_score"), v, "1", "no units", algo,
                                  (private_code("score_name"), named_code("S", k))) for k, v in finding.scores.items()]
    evaluations = [hd.sr.QualitativeEvaluation(codes.DCM.Finding, finding_type)]
    if finding.status:
        evaluations.append(hd.sr.QualitativeEvaluation(private_code("status"), named_code("R", finding.status)))
    point = hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                graphic_data=np.array([finding.centre_lps], dtype=float),
                                frame_of_reference_uid=ref.frame_of_reference_uid)
    groups = [hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking(), referenced_region=point, finding_type=finding_type, algorithm_id=algo,
        finding_sites=sites, measurements=measurements, qualitative_evaluations=evaluations,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure)]
    source, line = _diameter_line(image, sources, finding)
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=line,
                               source_image=hd.sr.SourceImageForRegion.from_source_image(source))
    groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking(), referenced_region=region, finding_type=finding_type, algorithm_id=algo,
        finding_sites=sites, measurements=[_measurement(codes.SCT.Length, finding.diameter_mm, "mm", "millimeter",
                                                        algo)]))
    if finding.segment_number is not None:
        if seg_ds is None:
            raise InputError("a lesion references a SEG segment but no SEG file was given", finding.lesion_id)
        numbers = {int(s.SegmentNumber) for s in seg_ds.SegmentSequence}
        if finding.segment_number not in numbers:
            raise InputError(f"segment {finding.segment_number} is not in the SEG (segments {sorted(numbers)})",
                             finding.lesion_id)
        segment = hd.sr.ReferencedSegment(
            sop_class_uid=str(seg_ds.SOPClassUID), sop_instance_uid=str(seg_ds.SOPInstanceUID),
            segment_number=int(finding.segment_number),
            source_series=hd.sr.SourceSeriesForSegmentation(ref.series_uid))
        volume = [] if finding.volume_mm3 is None else [
            _measurement(private_code("roi_sphere_volume"), finding.volume_mm3, "mm3", "cubic millimeter")
            if finding.sphere_roi else
            _measurement(codes.SCT.Volume, finding.volume_mm3, "mm3", "cubic millimeter", algo)]
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking(), referenced_segment=segment, finding_type=finding_type,
            algorithm_id=algo, finding_sites=sites, measurements=volume, qualitative_evaluations=evaluations))
    return groups


def _text(name, value):
    import highdicom as hd

    return hd.sr.TextContentItem(name=name, value=str(value)[:5000],
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _case_group(case_values: dict, case_texts: dict, algorithm: Algorithm, notice: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algo = algorithm.sr_identification()
    measurements = []
    for key, value in (case_values or {}).items():
        if value is None:
            continue
        if key not in CASE_VALUES:
            raise InputError(f"unknown case-level value {key!r} (known: {sorted(CASE_VALUES)})", key)
        concept, unit, meaning = CASE_VALUES[key]
        measurements.append(_measurement(private_code(concept), value, unit, meaning, algo))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="case"), algorithm_id=algo,
        measurements=measurements or None)
    for key, value in (case_texts or {}).items():
        if key not in CASE_TEXTS:
            raise InputError(f"unknown case-level text {key!r} (known: {sorted(CASE_TEXTS)})", key)
        if value:
            group[0].ContentSequence.append(_text(private_code(CASE_TEXTS[key]), value))
    group[0].ContentSequence.append(_text(codes.DCM.Comment, notice[:1024]))
    return group


def write_measurement_report(path, findings, image, source_files, algorithm: Algorithm, *, seg_path=None,
                             case_values: dict | None = None, case_texts: dict | None = None,
                             notice: str = RESEARCH_NOTICE, series_number: int = 910,
                             series_description: str = "SlicerCAD results") -> Path:
    """Write a TID 1500 Comprehensive 3D SR of ``findings`` (``LesionFinding``) on the source series.
    ``image`` None: case-level values only, the SR references every instance of ``source_files`` (one series,
    any geometry - e.g. a TI scout whose frames share one slice position)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    findings = list(findings)
    if image is None and findings:
        raise InputError("lesion findings need the source image grid", str(path))
    sources = sorted_sources(source_files, image) if image is not None else series_sources(source_files)
    ref = SeriesRef.of(sources)
    seg_ds = None
    if seg_path is not None:
        seg_ds = pydicom.dcmread(str(seg_path))
        refs = {str(s.SeriesInstanceUID) for s in seg_ds.get("ReferencedSeriesSequence", [])}
        if ref.series_uid not in refs:
            raise InputError("the SEG does not reference the SR's source series", str(seg_path))
    notice = RESEARCH_NOTICE if not notice or notice == RESEARCH_NOTICE else f"{RESEARCH_NOTICE}; {notice}"
    groups = []
    for finding in findings:
        groups.extend(_lesion_groups(finding, image, sources, ref, algorithm, seg_ds))
    groups.append(_case_group(case_values, case_texts, algorithm, notice))
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[algorithm.name, algorithm.version, str(algorithm.sha256)]),
            name=algorithm.name[:64], manufacturer_name=MANUFACTURER, model_name=str(algorithm.version)[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport)
    evidence = list(sources) + ([seg_ds] if seg_ds is not None else [])
    content = json.dumps([[asdict(f) for f in findings], case_values, case_texts, notice, series_description,
                          None if seg_ds is None else str(seg_ds.SOPInstanceUID)], sort_keys=True, default=str)
    series_uid, sop_uid = derived_uids(ref.series_uid, algorithm, content)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        is_final=False, is_verified=False, series_description=series_description[:64])
    sr.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    with atomic_path(path) as tmp:
        sr.save_as(str(tmp))
    return Path(path)


def _num(item):
    return float(item.MeasuredValueSequence[0].NumericValue)


def _triple(c) -> tuple:
    return str(c.CodingSchemeDesignator), str(c.CodeValue), str(c.CodeMeaning)


def _is(name, private_value: str) -> bool:
    return name.CodingSchemeDesignator == PRIVATE_SCHEME and name.CodeValue == private_value


def _modifier(num, concept_value: str, lesion_id) -> tuple:
    """(scheme, value, meaning) of a NUM's HAS CONCEPT MOD with concept ``concept_value``."""
    for item in num.get("ContentSequence", []):
        if item.RelationshipType == "HAS CONCEPT MOD" and item.ConceptNameCodeSequence[0].CodeValue == concept_value:
            return _triple(item.ConceptCodeSequence[0])
    raise InputError(f"a {num.ConceptNameCodeSequence[0].CodeMeaning} value names no class or score "
                     f"(no HAS CONCEPT MOD {concept_value})", str(lesion_id))


def read_measurement_report(path) -> dict:
    """{"lesions": [LesionFinding], "case": {key: value}, "case_text": {key: text}, "notice": str, "algorithm":
    {name, version, model_sha256}, "source_series_uid", "seg_instance_uid"} read back from an SR written here.
    A lesion's predicted class is the class whose code is its Finding (else the most probable one)."""
    import highdicom as hd
    import pydicom

    ds = pydicom.dcmread(str(path))
    sr = hd.sr.srread(str(path))
    by_id, out = {}, {"case": {}, "case_text": {}, "notice": "", "algorithm": {}, "seg_instance_uid": None}
    out["source_series_uid"] = str(ds.CurrentRequestedProcedureEvidenceSequence[0]
                                   .ReferencedSeriesSequence[0].SeriesInstanceUID)
    probability_value, score_value = private_code("probability").value, private_code("model_score").value
    sphere_value, status_value = private_code("roi_sphere_volume").value, private_code("status").value
    score_name_value = private_code("score_name").value
    case_names = {private_code(v[0]).value: k for k, v in CASE_VALUES.items()}
    text_names = {private_code(v).value: k for k, v in CASE_TEXTS.items()}
    root = ds.ContentSequence
    container = next(i for i in root if i.ConceptNameCodeSequence[0].CodeValue == "126010")   # Imaging Measurements
    for group in container.ContentSequence:
        items = group.ContentSequence
        ident = next(str(i.TextValue) for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112039")
        if not out["algorithm"]:                                                      # TID 4019 items
            texts = {}
            for i in items:
                if i.ValueType == "TEXT":
                    texts.setdefault(str(i.ConceptNameCodeSequence[0].CodeValue), []).append(str(i.TextValue))
            if "111001" in texts:                          # Algorithm Name, Version (111003), Parameters (111002)
                out["algorithm"] = {"name": texts["111001"][0], "version": (texts.get("111003") or [None])[0],
                                    "model_sha256": parse_parameters(texts.get("111002", [])).get("model_sha256")}
        if ident == "case":
            for i in items:
                name = i.ConceptNameCodeSequence[0]
                if i.ValueType == "NUM" and name.CodeValue in case_names:
                    out["case"][case_names[name.CodeValue]] = _num(i)
                if i.ValueType == "TEXT" and name.CodeValue == "121106":
                    out["notice"] = str(i.TextValue)
                elif i.ValueType == "TEXT" and name.CodeValue in text_names:
                    out["case_text"][text_names[name.CodeValue]] = str(i.TextValue)
            continue
        row = by_id.setdefault(ident, {"lesion_id": ident, "probabilities": {}, "scores": {}})
        for i in items:
            name = i.ConceptNameCodeSequence[0]
            if i.ValueType == "SCOORD3D" and i.GraphicType == "POINT":
                row["centre_lps"] = tuple(float(v) for v in i.GraphicData[:3])
            elif i.ValueType == "NUM" and name.CodeValue == "81827009":
                row["diameter_mm"] = _num(i)
            elif i.ValueType == "NUM" and (name.CodeValue == "118565006" or _is(name, sphere_value)):
                row["volume_mm3"], row["sphere_roi"] = _num(i), _is(name, sphere_value)
            elif i.ValueType == "NUM" and _is(name, probability_value):
                row["probabilities"][class_name(*_modifier(i, "121071", row["lesion_id"]))] = _num(i)
            elif i.ValueType == "NUM" and _is(name, score_value):
                row["scores"][_modifier(i, score_name_value, row["lesion_id"])[2]] = _num(i)
            elif i.ValueType == "CODE" and name.CodeValue == "363698007":                # Finding Site
                value = str(i.ConceptCodeSequence[0].CodeValue)
                row["site"] = next((k for k, t in SITES.items() if t[1] == value), value)
            elif i.ValueType == "CODE" and name.CodeValue == "121071":                  # Finding
                row["finding_code"] = _triple(i.ConceptCodeSequence[0])
            elif i.ValueType == "CODE" and _is(name, status_value):
                row["status"] = str(i.ConceptCodeSequence[0].CodeMeaning)
            elif i.ValueType == "IMAGE" and name.CodeValue == "121191":                 # Referenced Segment
                row["segment_number"] = int(i.ReferencedSOPSequence[0].ReferencedSegmentNumber)
                out["seg_instance_uid"] = str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    lesions = []
    for row in by_id.values():
        probs = row["probabilities"]
        predicted = max(probs, key=probs.get) if probs else ""
        if "finding_code" in row:                     # the call (by its code; unscored: the finding type's name)
            predicted = class_name(*row["finding_code"])
            if probs and predicted not in probs:
                raise InputError(f"SR finding {row['finding_code']} is none of the classes {sorted(probs)}",
                                 row["lesion_id"])
        lesions.append(LesionFinding(row["lesion_id"], row.get("centre_lps"), row.get("diameter_mm"), predicted,
                                     probs, row.get("segment_number"), row.get("volume_mm3"), row.get("site"),
                                     scores=row["scores"], status=row.get("status"),
                                     sphere_roi=row.get("sphere_roi", False)))
    out["lesions"] = lesions
    out["highdicom_groups"] = len(sr.content.get_planar_roi_measurement_groups())
    return out
