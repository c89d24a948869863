"""CardiacTICorrector results as DICOM: one TID 1500 Comprehensive 3D SR per TI scout with the case values in
TID 1501 - the myocardial null TI on the scout, the blood null, the recommended LGE TI and its optimal range,
the uncertainty (1 SD of the null estimate), the method, and the rule with its assumptions stated as text -
referencing every instance of the scout series, the model (name, version, sha256) as algorithm."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def ti_case_values(record: dict) -> tuple:
    """(numeric case values, text case values) of a ``ti.correct`` record (``record_of``)."""
    rule = record.get("rule") or {}
    low, high = (rule.get("optimal_range_ms") or (None, None))[:2]
    values = {"null_ti_ms": record.get("null_ti_ms"), "blood_null_ti_ms": record.get("blood_null_ti_ms"),
              "recommended_ti_ms": record.get("recommended_ti_ms"),
              "ti_uncertainty_ms": record.get("uncertainty_ms"),
              "optimal_ti_low_ms": None if low is None else round(float(low), 1),
              "optimal_ti_high_ms": None if high is None else round(float(high), 1)}
    relative = record.get("ti_scale") == "relative"
    texts = {"method": f"{record.get('method')}; TIs RELATIVE to the first frame (0 ms)" if relative
             else record.get("method"),
             "rule": rule.get("statement") or ("no absolute LGE TI recommended: the TIs are on a relative scale"
                                               if relative else None),
             "warnings": " | ".join(record.get("warnings") or [])}
    return ({k: v for k, v in values.items() if v is not None}, {k: v for k, v in texts.items() if v})


def ti_algorithm(card: dict | None):
    from .terms import Algorithm, algorithm_from_card

    if card is None:
        return Algorithm("ti_physics_fit", "1", parameters={"model": "none (physics only)"})
    return algorithm_from_card(card)


def write_ti_report(record: dict, scout_files, path, card: dict | None = None) -> Path:
    """The SR of one corrected scout (``record``) on the scout's own files."""
    from .sr import write_measurement_report

    if record.get("null_ti_ms") is None:
        raise InputError("the record has no null TI: nothing to report", str(record.get("series_instance_uid")))
    values, texts = ti_case_values(record)
    notice = "model trained on synthetic data" if (card or {}).get("training_data", {}).get("synthetic") else ""
    return write_measurement_report(path, [], None, scout_files, ti_algorithm(card), case_values=values,
                                    case_texts=texts, notice=notice,
                                    series_description="SlicerCAD TI recommendation (research use)")


def ti_results(path, out_folder, model: str = "bundled", first_ti_ms=None, rule: dict | None = None) -> list:
    """Correct every DICOM TI scout under ``path`` (as ``slicercad ti correct``) and write one SR per scout
    into ``out_folder`` (``ti.sr.dcm``, or ``ti-<n>.sr.dcm`` for several). Returns [{"sr", "record"}]."""
    from ..ti.cli import load_default_model
    from ..ti.correct import correct_scout
    from ..ti.scout import load_dicom_scouts

    net, card = load_default_model(model)
    scouts = load_dicom_scouts(path, first_ti_ms)
    out = []
    for n, scout in enumerate(scouts, start=1):
        record = correct_scout(scout, net, card, rule=rule)
        name = "ti.sr.dcm" if len(scouts) == 1 else f"ti-{n}.sr.dcm"
        out.append({"sr": write_ti_report(record, scout.files, Path(out_folder) / name, card), "record": record})
    return out
