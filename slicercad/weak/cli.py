"""``slicercad weak``: lesion labels from a centre and a size -- batch segmentation of a lesion list over
a folder of studies, RT dose as a label, and the SYNTHETIC generalisation experiment."""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

from ..atomic import write_text
from ..errors import InputError

HELP = ("weak labels: segment a lesion list (centre + size) over studies, isodose labels from an RTDOSE, or "
        "reproduce the synthetic unseen-type experiment")
METHOD_CHOICES = ("unet", "sphere", "region_growing", "watershed")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="weak_command", required=True)
    s = sub.add_parser("segment", help="label every lesion of a CSV list (see slicercad.weak.lesion_list)")
    s.add_argument("--studies", required=True, help="folder holding the studies named in the list's 'study' column")
    s.add_argument("--lesions", required=True, help="lesion list CSV")
    s.add_argument("--out", required=True, help="output folder: <study>/<lesion_id>.<format> + labels.csv")
    s.add_argument("--method", choices=METHOD_CHOICES, default="unet")
    s.add_argument("--model", help="model card (.json); default: the bundled SYNTHETIC demo model")
    s.add_argument("--format", choices=("nrrd", "nii.gz"), default="nrrd")
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.add_argument("--dicom-seg", action="store_true",
                   help="also write <lesion_id>.seg.dcm (highdicom) for lesions on a DICOM series")
    d = sub.add_parser("dose", help="isodose label (one component per target) from an RTDOSE on an image grid")
    d.add_argument("--rtdose", required=True)
    d.add_argument("--image", required=True, help="reference image (NRRD/NIfTI) or DICOM series folder")
    d.add_argument("--level", required=True, type=float, help="isodose level")
    d.add_argument("--unit", choices=("Gy", "%", "%max"), default="Gy",
                   help="Gy, %% of the prescription (100 = the prescription isodose, also for a Gamma Knife plan "
                        "prescribed at the 50 %% isodose) or %%max (%% of the maximum dose)")
    d.add_argument("--prescription", type=float, help="prescription dose in Gy (for a level in %%)")
    d.add_argument("--rtplan", help="read the prescription from this RTPLAN")
    d.add_argument("--relative-scale", choices=("auto", "fraction", "percent"), default="auto",
                   help="how a RELATIVE RTDOSE stores its values (auto: percent when the maximum exceeds 2)")
    d.add_argument("--min-volume", type=float, default=0.0, help="drop components below this volume (mm^3)")
    d.add_argument("--out", required=True, help="label file to write (.nrrd / .nii.gz)")
    r = sub.add_parser("reproduce", help="train on two lesion types, test on the third (SYNTHETIC)")
    r.add_argument("--out", required=True)
    r.add_argument("--n-train", type=int, help="training lesions per type")
    r.add_argument("--n-test", type=int, help="test lesions per type")
    r.add_argument("--epochs", type=int)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch (checks the pipeline only)")


def _read_reference(path: Path) -> tuple:
    """(image, FrameOfReferenceUID or "" for an image file) of a reference image file or series folder."""
    from ..imageio import read_image

    if path.is_dir():
        import pydicom

        from ..dicom.scan import scan_folder

        vols = [v for v in scan_folder(path).volumes() if v.kind == "volume"]
        if len(vols) != 1:
            raise InputError(f"the folder holds {len(vols)} volumes; give one series folder or an image file", path)
        header = pydicom.dcmread(str(vols[0].files[0]), stop_before_pixels=True)
        return vols[0].load(), str(header.get("FrameOfReferenceUID", ""))
    return read_image(path), ""


class _Study:
    """A study: one image file, or a DICOM folder (volumes by series number / UID)."""

    def __init__(self, path: Path):
        self.path = path
        self.scan = None
        self.cache = {}
        if path.is_dir():
            from ..dicom.scan import scan_folder

            self.scan = scan_folder(path)
        elif not path.is_file():
            raise InputError("study not found (a DICOM folder or an image file)", path)

    def volume_for(self, row):
        """(volume record or None, image) for the row's series (DICOM) or the single image."""
        from ..imageio import read_image

        if self.scan is None:
            if "image" not in self.cache:
                self.cache["image"] = read_image(self.path)
            return None, self.cache["image"]
        vols = [v for v in self.scan.volumes() if v.kind == "volume"]
        if row.series is not None:
            vols = [v for v in vols if row.series in (v.tags.series_instance_uid, str(v.tags.series_number))]
        elif len(vols) > 1:
            raise InputError(f"the study has {len(vols)} volumes: give series_number with x, y, z", row.source)
        if not vols:
            raise InputError(f"series {row.series!r} not found in the study", row.source)
        vol = vols[0]
        if vol.volume_id not in self.cache:
            self.cache[vol.volume_id] = vol.load()
        return vol, self.cache[vol.volume_id]


def _center(row, vol):
    from ..dicom.frames import frames_from_header, read_header
    from .lesion_list import pixel_to_lps

    if row.center_lps is not None:
        return row.center_lps
    frames = vol.frames or []
    if not frames:
        frames = [f for p in vol.files for f in frames_from_header(read_header(p), p)]
    match = [f for f in frames if f.instance_number == row.instance_number]
    if not match:
        raise InputError(f"instance {row.instance_number} not found in series {row.series}", row.source)
    return pixel_to_lps(match[0], *row.pixel_rc)


def _segment_row(args, row, studies, model, card) -> dict:
    """Label one lesion row; returns its labels.csv record (raises on a bad row)."""
    import numpy as np
    import SimpleITK as sitk

    from ..imageio import write_image
    from .segment import segment_baseline, segment_lesion

    out = Path(args.out)
    if row.study not in studies:
        studies[row.study] = _Study(Path(args.studies) / row.study)
    vol, image = studies[row.study].volume_for(row)
    center = _center(row, vol)
    if args.method == "unet":
        result = segment_lesion(model, card, image, center, row.diameters_mm, "LPS", device=args.device)
    else:
        result = segment_baseline(args.method, image, center, row.diameters_mm, "LPS")
    target = out / row.study / f"{row.lesion_id}.{args.format}"
    if not result.empty:
        label = sitk.GetImageFromArray(result.mask.astype(np.uint8))
        label.CopyInformation(image)
        write_image(label, target)
        if args.dicom_seg and vol is not None:
            from .dicom_seg import write_dicom_seg

            write_dicom_seg(result.mask, image, vol.files, target.with_suffix("").with_suffix(".seg.dcm")
                            if args.format == "nii.gz" else target.with_suffix(".seg.dcm"),
                            row.lesion_id, args.method, card=card)
    return {"status": "empty" if result.empty else "ok", "volume_mm3": f"{result.volume_mm3:.1f}",
            "file": str(target) if not result.empty else "", "center_x_lps": f"{center[0]:.2f}",
            "center_y_lps": f"{center[1]:.2f}", "center_z_lps": f"{center[2]:.2f}",
            "warnings": "; ".join(result.warnings), "error": ""}


def _segment(args) -> int:
    """Every row of the lesion list; a bad row is recorded (status ``error`` and its message in
    labels.csv) and the batch goes on; exit status 1 when any row failed."""
    from ..errors import SlicerCADError
    from .lesion_list import read_lesion_list

    warnings.filterwarnings("ignore", category=FutureWarning)
    rows = read_lesion_list(args.lesions)
    model = card = None
    if args.method == "unet":
        from .segment import load_segmenter

        model, card = load_segmenter(args.model)
    studies, out_rows, failed = {}, [], 0
    for row in rows:
        base = {"study": row.study, "lesion_id": row.lesion_id, "method": args.method}
        try:
            rec = _segment_row(args, row, studies, model, card)
        except (SlicerCADError, RuntimeError, OSError) as exc:   # RuntimeError: SimpleITK
            failed += 1
            rec = {"status": "error", "volume_mm3": "", "file": "", "center_x_lps": "", "center_y_lps": "",
                   "center_z_lps": "", "warnings": "", "error": str(exc)}
            print(f"{row.study}/{row.lesion_id}: error: {exc}")
        else:
            print(f"{row.study}/{row.lesion_id}: {rec['status']} {float(rec['volume_mm3']) / 1000:.2f} mL"
                  + (f" [{rec['warnings']}]" if rec["warnings"] else ""))
        out_rows.append({**base, **rec})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(out_rows[0]))
    writer.writeheader()
    writer.writerows(out_rows)
    write_text(Path(args.out) / "labels.csv", buf.getvalue())
    if card is not None and card.get("training_data", {}).get("synthetic"):
        print("note: the model was trained on SYNTHETIC data only (research use)")
    if failed:
        print(f"{failed} of {len(rows)} lesion(s) failed: see the 'error' column of {Path(args.out) / 'labels.csv'}")
        return 1
    return 0


def _dose(args) -> int:
    from ..imageio import write_image
    from .rtdose import frame_of_reference_warnings, isodose_label, prescription_from_rtplan, read_rtdose

    grid = read_rtdose(args.rtdose, args.relative_scale)
    notes = grid.warnings()
    prescription = args.prescription
    if prescription is None and args.rtplan:
        prescription, plan_notes = prescription_from_rtplan(args.rtplan)
        notes += plan_notes
    reference, frame = _read_reference(Path(args.image))
    notes += frame_of_reference_warnings(grid.frame_of_reference, frame)
    for note in notes:
        print(f"warning: {note}")
    label, table = isodose_label(grid.image, reference, args.level, args.unit,
                                 prescription, grid.units, args.min_volume, args.rtdose)
    write_image(label, args.out)
    for row in table:
        print(f"target {row['label']}: {row['volume_mm3'] / 1000:.2f} mL, max dose {row['max_dose']:.2f}")
    return 0


def _reproduce(args) -> int:
    from .experiment import FULL, SMOKE, run

    warnings.filterwarnings("ignore", category=FutureWarning)
    base = SMOKE if args.smoke else FULL
    n_train = args.n_train or base["n_train"]
    n_test = args.n_test or base["n_test"]
    epochs = args.epochs or base["epochs"]
    results = run(args.out, n_train, n_test, epochs, args.seed)
    print((Path(args.out) / "results.md").read_text())
    del results
    return 0


def run(args) -> int:
    return {"segment": _segment, "dose": _dose, "reproduce": _reproduce}[args.weak_command](args)
