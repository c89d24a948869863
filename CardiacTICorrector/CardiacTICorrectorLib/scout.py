"""TI scout <-> MRML: load a scout (DICOM, or images with TIs) as a sequence over TI with a browser,
Estimate (physics, CNN when a model is given, fused), per-frame table, and a plot of myocardial and
blood signal vs TI with the fitted curves and the nulls. Imports slicer, never qt; torch only
through the model the caller passes in (after ensure_dependencies)."""
from __future__ import annotations

import numpy as np

from slicercad.errors import InputError
from slicercad.ti.constants import OFFSET_CLASSES, OPEN_CLASSES
from slicercad.ti.scout import TIScout, load_scout_folder
from SlicerCADLib.app import ensure_scene
from SlicerCADLib.plots import add_curves
from SlicerCADLib.sequences import frames_to_sequence, sequence_to_frames
from SlicerCADLib.tables import append_rows

SCOUT_ATTRIBUTE = "SlicerCAD.TIScout"     # sequence node attribute: JSON of the scout's metadata


def unique_index_values(ti_ms) -> tuple[np.ndarray, list]:
    """Sequence index values for sorted TIs: a repeated TI gets +0.01 ms per repeat (a sequence holds
    one item per value), with a warning; the exact TIs travel in the scout attribute."""
    ti = np.asarray(ti_ms, float)
    index, warnings, seen = ti.copy(), [], {}
    for i, t in enumerate(ti):
        key = f"{t:g}"
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n:
            index[i] = t + 0.01 * n
            warnings.append(f"duplicate TI {t:g} ms: frame {i} indexed {index[i]:g} in the sequence browser "
                            "(the estimate uses the true TI)")
    return index, warnings


def load_scout(scene, path, ti=None, first_ti=None) -> list:
    """[(sequence node, browser node, TIScout)] for every scout under ``path``."""
    import json

    scene = ensure_scene(scene)
    out = []
    for k, scout in enumerate(load_scout_folder(path, ti, first_ti)):
        name = f"TI scout {scout.series_description or scout.series_instance_uid or k}".strip()
        index, more = unique_index_values(scout.ti_ms)
        scout.warnings = list(scout.warnings) + more
        seq, browser = frames_to_sequence(scout.frames, index, scout.reference, name, scene=scene,
                                          spacing_mm=scout.pixel_spacing_mm)
        seq.SetAttribute(SCOUT_ATTRIBUTE, json.dumps({
            "series_instance_uid": scout.series_instance_uid, "relative": scout.relative,
            "ti_source": scout.ti_source, "meta": scout.meta, "warnings": scout.warnings,
            "photo": scout.photo, "pixel_spacing_mm": scout.pixel_spacing_mm,
            "ti_ms": [float(t) for t in scout.ti_ms], "index_values": [f"{v:g}" for v in index]}))
        out.append((seq, browser, scout))
    return out


def scout_in_scene(scene, seq) -> bool:
    """Whether ``seq`` (a scout sequence node, or None) is still a node of ``scene``: after the scene is
    closed or the sequence deleted, a panel holding it must load a scout again instead of using it."""
    return bool(seq is not None and scene is not None and seq.GetScene() is scene and scene.IsNodePresent(seq))


def scout_from_sequence(seq) -> TIScout:
    """The TIScout behind a sequence node (frames from the nodes; metadata from its attribute)."""
    import json

    frames, ti, first = sequence_to_frames(seq)
    info = json.loads(seq.GetAttribute(SCOUT_ATTRIBUTE) or "{}")
    exact = dict(zip(info.get("index_values", []), info.get("ti_ms", [])))
    ti = np.array([exact.get(seq.GetNthIndexValue(i), t) for i, t in enumerate(ti)], float)
    spacing = info.get("pixel_spacing_mm") or (first.GetSpacing()[1], first.GetSpacing()[0])
    order = np.argsort(ti, kind="stable")
    return TIScout(frames=frames[order], ti_ms=ti[order], ti_source=info.get("ti_source", "sequence index"),
                   relative=bool(info.get("relative", False)), series_instance_uid=info.get("series_instance_uid", ""),
                   pixel_spacing_mm=tuple(spacing), meta=info.get("meta", {}), warnings=info.get("warnings", []),
                   reference=first, photo=bool(info.get("photo", False)))


def roi_mask(seq, segmentation_node=None, segment_id=None):
    """The myocardial ROI as a [rows, cols] bool array on the scout's grid (None when not given)."""
    if segmentation_node is None or not segment_id:
        return None
    from SlicerCADLib.segmentations import segment_to_label_array

    reference = seq.GetNthDataNode(0)
    mask = segment_to_label_array(segmentation_node, segment_id, reference)
    if mask.shape[0] != 1:
        raise InputError(f"ROI has {mask.shape[0]} slices on the scout grid; one expected", segment_id)
    if mask.sum() < 3:
        raise InputError("the myocardial ROI covers fewer than 3 pixels of the scout", segment_id)
    return mask[0].astype(bool)


def estimate(scene, seq, model=None, card=None, segmentation_node=None, segment_id=None, rule=None,
             table_node=None, chart_node=None) -> dict:
    """Estimate on a scout sequence; writes the per-frame table and the plot. Returns
    {record, table, chart, frames_table}."""
    from slicercad.ti.correct import correct_frames, record_of
    from slicercad.ti.physics import ir_signal

    scene = ensure_scene(scene)
    scout = scout_from_sequence(seq)
    mask = roi_mask(seq, segmentation_node, segment_id)
    out = correct_frames(scout.frames, scout.ti_ms, scout.pixel_spacing_mm, model, card, mask, None,
                         scout.meta, scout.relative, rule, photo=scout.photo)
    record = record_of(scout, out, card)
    rows = []
    classes = list(card["classes"]) if card else []
    for i, t in enumerate(scout.ti_ms):
        row = {"frame": i, "TI (ms)": float(t)}
        if out.get("proba") is not None:
            p = out["proba"][i]
            row["category"] = classes[int(np.argmax(p))]
            row["probability"] = float(np.max(p))
            row["null from frame (ms)"] = float(out["frame_nulls_ms"][i])
        if out["estimate"] is not None:
            row["myocardium signal"] = float(out["estimate"].myo_curve[i])
            if out["estimate"].blood_curve is not None:
                row["blood signal"] = float(out["estimate"].blood_curve[i])
        rows.append(row)
    if table_node is not None:
        table_node.GetTable().Initialize()
    frames_table = append_rows(rows, table_node, name=f"{seq.GetName()} frames", scene=scene)
    curves = []
    est = out["estimate"]
    grid = np.linspace(0.0, float(scout.ti_ms.max()) * 1.05, 200)
    if est is not None:
        for label, curve, fit, color in (("myocardium", est.myo_curve, est.myocardium, (0.85, 0.2, 0.2)),
                                         ("blood", est.blood_curve, est.blood, (0.2, 0.3, 0.9))):
            if curve is None:
                continue
            curves.append({"name": f"{label} signal", "x": scout.ti_ms, "y": curve, "color": color,
                           "line": False, "marker": "circle"})
            if fit is not None and np.isfinite(fit.null_ms):
                curves.append({"name": f"{label} fit", "x": grid, "y": ir_signal(grid, fit.a, fit.b, fit.t1star_ms),
                               "color": color})
                curves.append({"name": f"{label} null {fit.null_ms:.0f} ms", "x": [fit.null_ms, fit.null_ms],
                               "y": [0.0, float(np.max(curve))], "color": color})
    if record["null_ti_ms"] is not None:
        top = float(np.max(est.myo_curve)) if est is not None else 1.0
        curves.append({"name": f"{record['method']} null {record['null_ti_ms']:.0f} ms",
                       "x": [record["null_ti_ms"]], "y": [0.0], "color": (0.1, 0.6, 0.1), "line": False,
                       "marker": "diamond"})
        del top
    chart, series, tables = add_curves(curves, f"{seq.GetName()}: signal vs TI", "TI (ms)", "signal (ROI median)",
                                       scene, chart_node) if curves else (None, {}, {})
    return {"record": record, "chart": chart, "series": series, "frames_table": frames_table,
            "classes": classes or list(OFFSET_CLASSES if not card else card["classes"]), "out": out,
            "open_classes": list(OPEN_CLASSES)}
