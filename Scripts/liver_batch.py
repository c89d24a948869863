"""Batch liver lesion classification: DICOM study folder(s) + lesion list(s) -> results CSV + overlay PNGs.

Runs inside Slicer (``Slicer --no-main-window --python-script Scripts/liver_batch.py -- ARGS``; the
application's scene is used) and in plain Python with the slicer-core wheel (a scene of its own)::

    python Scripts/liver_batch.py --model card.json --study DIR --lesions DIR/lesions.mrk.json \
        [--study DIR2 --lesions list2.csv] --out results/

Per study: load every volume, fill the phases by the core phase assignment (highest-b DWI),
classify each listed lesion (CSV with a coordinate_system column and optional per-phase breath-hold
offsets ``offset_<phase>_x/y/z`` in mm in the row's coordinate system -- without them every phase is cut
at the listed centre, the card's "zero offsets" figures apply --, or a Slicer ``.mrk.json``; field
strength, DWI b-value and ADC units read from the DICOM tags, as in the panel) and render its Grad-CAM over the hepatobiliary phase through Slicer's slice logic. ``results.csv``
carries the provenance of every row (model sha256, alpha, phases, study folder).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "LiverLesionCAD"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from LiverLesionCADLib.classify import (load_liver_model, phase_images, phase_tags, result_rows,  # noqa: E402
                                        show_lesion_overlay)
from LiverLesionCADLib.phase_nodes import phase_nodes_from_scene  # noqa: E402
from slicercad.atomic import atomic_path  # noqa: E402
from slicercad.errors import InputError, SlicerCADError  # noqa: E402
from slicercad.geometry import lps_to_ras  # noqa: E402
from slicercad.liver.inference import classify_lesions  # noqa: E402
from slicercad.liver.lesion_files import read_lesions  # noqa: E402
from slicercad.liver.phases import REFERENCE_PHASE  # noqa: E402
from SlicerCADLib.app import close_scene, ensure_scene  # noqa: E402
from SlicerCADLib.render import lesion_fov_mm, render_slice_png  # noqa: E402
from SlicerCADLib.study import load_study  # noqa: E402


def _scene():
    """Slicer's own scene inside the application, else a fresh slicer-core scene (owned: closed after)."""
    import slicer

    if getattr(slicer, "app", None) is not None:
        return slicer.mrmlScene, False
    return ensure_scene(slicer.vtkMRMLScene()), True


def classify_study(scene, study_dir, lesion_file, model, card, png_dir: Path, alpha="card") -> list:
    """Rows (``result_rows`` + study and overlay columns) for every lesion of one study; PNGs written."""
    lesions = read_lesions(lesion_file)
    loaded = load_study(scene, study_dir)
    nodes = phase_nodes_from_scene(list(loaded.volume_nodes.values()))
    results = classify_lesions(model, card, phase_images(nodes), lesions, with_cam=True, alpha=alpha,
                               device=card["device"], tags=phase_tags(nodes))
    rows = result_rows(results, card)
    ref = nodes.get(REFERENCE_PHASE)
    for lesion, result, row in zip(lesions, results, rows):
        row["study"] = str(study_dir)
        row["overlay_png"] = ""
        if ref is not None:
            overlay = show_lesion_overlay(result, ref, "cam")
            png = png_dir / f"{Path(study_dir).name}_{result['lesion_id']}.png"
            render_slice_png(png, ref, overlay, 0.5, center_ras=lps_to_ras(lesion.center_lps()),
                             fov_mm=lesion_fov_mm(lesion.diameter_mm))
            scene.RemoveNode(overlay)
            row["overlay_png"] = png.name
    for node in loaded.volume_nodes.values():
        scene.RemoveNode(node)
    scene.RemoveNode(loaded.table_node)
    return rows


def write_rows(path: Path, rows: list) -> Path:
    """All rows as one CSV (atomic); columns in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            writer.writerows(rows)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="liver model card (.json) beside its .safetensors")
    parser.add_argument("--study", action="append", required=True, help="DICOM study folder (repeatable)")
    parser.add_argument("--lesions", action="append", required=True,
                        help="lesion list for the study in the same position: .csv or .mrk.json")
    parser.add_argument("--out", required=True, help="folder for results.csv and the overlay PNGs")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    if len(args.study) != len(args.lesions):
        raise InputError(f"{len(args.study)} --study but {len(args.lesions)} --lesions; give one list per study",
                         "--lesions")
    out = Path(args.out)
    model, card = load_liver_model(args.model, args.device)
    scene, owned = _scene()
    rows = []
    try:
        for study, lesions in zip(args.study, args.lesions):
            rows.extend(classify_study(scene, study, lesions, model, card, out))
    finally:
        if owned:
            close_scene(scene)
    path = write_rows(out / "results.csv", rows)
    for row in rows:
        print(f"{row['study']} {row['lesion']}: {row['class']}" + (f"  [{row['warnings']}]" if row["warnings"] else ""))
    if rows and rows[0]["notice"]:
        print(rows[0]["notice"])
    print(f"{len(rows)} lesion(s) written to {path}")
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except SlicerCADError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    import slicer

    if getattr(slicer, "app", None) is not None:
        slicer.app.exit(code)
    else:
        sys.exit(code)
