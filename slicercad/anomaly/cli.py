"""``slicercad anomaly``: score a folder of studies for triage (ranked CSV + NRRD maps), or reproduce the
SYNTHETIC seed-001-part-2 experiment."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import write_text
from ..errors import InputError, SlicerCADError

HELP = ("anomaly detection trained on normals only: score a folder of head CT / chest X-ray studies (ranked CSV "
        "+ NRRD maps), or reproduce the SYNTHETIC experiment")
CSV_FIELDS = ("rank", "case", "path", "kind", "score", "percentile_among_normals", "variant_score",
              "variant_percentile", "map_score", "map_percentile", "map_max", "flagged_voxels", "map", "error")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="anomaly_command", required=True)
    s = sub.add_parser("score", help="score every study in FOLDER (DICOM series folders or image files)")
    s.add_argument("folder")
    s.add_argument("--out", required=True, help="output folder: scores.csv (ranked, most anomalous first) + "
                   "maps/<case>.nrrd")
    s.add_argument("--kind", choices=("head_ct", "cxr"), default="head_ct")
    s.add_argument("--model", help="model card (.json); default: the bundled SYNTHETIC Glow for --kind")
    s.add_argument("--device", default="cpu")
    t = sub.add_parser("train", help="train a detector on a folder of NORMAL studies (one study per entry)")
    t.add_argument("folder")
    t.add_argument("--out", required=True, help="folder for <name>.safetensors + <name>.json")
    t.add_argument("--kind", choices=("head_ct", "cxr"), default="head_ct")
    t.add_argument("--family", choices=("glow", "gan"), default="glow")
    t.add_argument("--name", default=None)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--val-fraction", type=float, default=0.25, help="held-out normals for calibration")
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("reproduce", help="AUROC tables on the SYNTHETIC phantoms (Glow, variant, GAN, baselines)")
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch (checks the pipeline only)")
    r.add_argument("--kinds", nargs="+", choices=("head_ct", "cxr"), default=["head_ct", "cxr"])
    r.add_argument("--epochs", type=int)
    r.add_argument("--n-train", type=int)


def _cases(folder: Path) -> list:
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    items = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.suffix.lower() in (".nrrd", ".nii", ".gz", ".mha", ".mhd", ".dcm"):
            items.append(p)
    if not items:
        raise InputError("no studies found (sub-folders with DICOM series, or .nrrd/.nii.gz/.mha/.dcm files)",
                         folder)
    return items


def read_case(path: Path):
    from ..imageio import read_image

    if path.is_dir() or path.suffix.lower() == ".dcm":
        from ..dicom.scan import scan_folder
        from ..dicom.volume import load_volume

        if path.is_file():
            return load_volume([str(path)])[0]
        vols = [v for v in scan_folder(path).volumes()]
        if len(vols) != 1:
            raise InputError(f"the folder holds {len(vols)} image series; give one per study folder", path)
        return vols[0].load()
    return read_image(path)


def score_folder(folder, out, kind="head_ct", model=None, device="cpu") -> list:
    from ..imageio import write_image
    from .detector import load_detector

    out = Path(out)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    det = load_detector(model, kind, device)
    rows = []
    for path in _cases(Path(folder)):
        case = path.name.split(".")[0]
        row = {"case": case, "path": str(path), "kind": kind}
        try:
            image = read_case(path)
            res = det.score_image(image, str(path))
            map_path = out / "maps" / f"{case}.nrrd"
            write_image(res.map_image(image), map_path)
            row.update(score=round(res.score, 5), percentile_among_normals=round(res.percentile, 1),
                       variant_score=round(res.variant, 5), variant_percentile=round(res.variant_percentile, 1),
                       map_score=round(res.map_score, 4), map_percentile=round(res.map_percentile, 1),
                       map_max=round(res.map_max, 3), flagged_voxels=res.flagged_voxels, map=str(map_path))
        except SlicerCADError as exc:
            row["error"] = str(exc)
        rows.append(row)
    ok = sorted([r for r in rows if "score" in r], key=lambda r: -r["percentile_among_normals"] - 1e-6 * r["score"])
    bad = [r for r in rows if "score" not in r]
    for i, r in enumerate(ok, 1):
        r["rank"] = i
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in ok + bad:
        w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    write_text(out / "scores.csv", buf.getvalue())
    return ok + bad


def train_folder(folder, out, kind="head_ct", family="glow", name=None, epochs=None, val_fraction=0.25, seed=0):
    """Train + calibrate on the normal studies of ``folder``; returns the card path (progress lines on stdout)."""
    import numpy as np
    import torch

    from ..engine import progress
    from ..engine.registry import save_model
    from ..engine.tasks import get_task
    from . import task as T

    cases = _cases(Path(folder))
    xs, used = [], []
    for i, path in enumerate(cases, 1):
        try:
            xs.append(T.sample_of(read_case(path), kind, str(path)).stacked())
            used.append(path.name)
        except SlicerCADError as exc:
            progress.emit("train", message=f"skipped {path.name}: {exc}")
        progress.emit("train", fraction=0.2 * i / len(cases), message=f"read {path.name}")
    n_val = max(2, int(round(val_fraction * len(xs))))
    if len(xs) - n_val < 2:
        raise InputError(f"{len(xs)} usable normal studies: at least {n_val + 2} are needed", folder)
    task_name = T.task_for(kind, family)
    spec = get_task(task_name)
    cfg = spec.config()
    model = spec.build_model(cfg)
    x = torch.from_numpy(np.stack(xs))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    epochs = epochs or T.epochs_for_steps(len(x) - n_val, T.RECIPE["batch_size"], T.STEP_BUDGET)

    def report(epoch, loss=None, **kw):
        progress.emit("train", epoch=epoch, epochs=epochs, loss=loss, fraction=0.2 + 0.8 * epoch / epochs,
                      message=f"epoch {epoch} done")

    info = T.fit_detector(model, x[perm[n_val:]], x[perm[:n_val]], epochs, T.RECIPE["batch_size"], T.RECIPE["lr"],
                          seed, report)
    name = name or f"{task_name}_{Path(folder).name}"
    card = {"name": name, "task": task_name, "kind": "likelihood", "model_config": cfg,
            "input_spec": spec.spec_for(cfg), "classes": ["normal", "anomalous"],
            "training_data": {"synthetic": False, "folder": str(folder), "n_train": len(x) - n_val,
                              "n_calibration": n_val, "studies": used},
            "metrics": {"map_threshold": info["map_threshold"]}, "temperature": 1.0,
            "training": {"epochs": epochs, "recipe": T.RECIPE}}
    path = save_model(model, card, out)
    progress.emit("train", fraction=1.0, message="training finished", card=str(path))
    return path


def run(args) -> int:
    if args.anomaly_command == "train":
        path = train_folder(args.folder, args.out, args.kind, args.family, args.name, args.epochs,
                            args.val_fraction, args.seed)
        print(f"wrote {path}")
        return 0
    if args.anomaly_command == "score":
        rows = score_folder(args.folder, args.out, args.kind, args.model, args.device)
        n_bad = sum(1 for r in rows if r.get("error"))
        print(f"scored {len(rows) - n_bad} case(s), {n_bad} refused; {Path(args.out) / 'scores.csv'}")
        return 0 if len(rows) > n_bad else 2
    from .experiment import reproduce

    overrides = {k: v for k, v in (("epochs", args.epochs), ("n_train", args.n_train)) if v is not None}
    reproduce(args.out, smoke=args.smoke, seed=args.seed, kinds=tuple(args.kinds), overrides=overrides)
    print(f"wrote {Path(args.out) / 'report.md'} (SYNTHETIC)")
    return 0
