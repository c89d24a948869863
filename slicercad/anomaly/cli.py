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
              "variant_percentile", "map_score", "map_percentile", "map_max", "flagged_voxels", "rotation_deg",
              "scale_xyz", "fit_dice", "upside_down_checked", "truncated_mm2", "lung_distance_mm", "kept_voxels", "map", "warnings", "error")


MIN_CALIBRATION = 10      # fewer calibration normals than this: `anomaly train` warns


def pose_fields(info: dict) -> dict:
    """The head registration's pose and fit (``normalise``), or a chest X-ray's lung frame (``cxr``), for the CSV."""
    if "lung_distance_mm" in info:
        return {"rotation_deg": round(info["rotation_deg"], 1), "lung_distance_mm": round(info["lung_distance_mm"], 1),
                "kept_voxels": info["n_kept"]}
    if "fit_dice" not in info:
        return {}
    return {"rotation_deg": round(info["rotation_deg"], 1), "scale_xyz": " ".join(f"{v:.3f}" for v in info["scale_xyz"]),
            "fit_dice": round(info["fit_dice"], 3), "upside_down_checked": info["upside_down_checked"],
            "truncated_mm2": round(info["truncated_mm2"]), "kept_voxels": info["n_kept"]}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="anomaly_command", required=True)
    s = sub.add_parser("score", help="score every study in FOLDER (DICOM series folders or image files)")
    s.add_argument("folder")
    s.add_argument("--out", required=True, help="output folder: scores.csv (ranked, most anomalous first) + "
                   "maps/<case>.nrrd")
    s.add_argument("--kind", choices=("head_ct", "cxr"), default="head_ct")
    s.add_argument("--model", help="model card (.json); default: the bundled SYNTHETIC Glow for --kind")
    s.add_argument("--device", default="cpu")
    s.add_argument("--rank-by", choices=tuple(RANK_BY), default=DEFAULT_RANK,
                   help="triage order: percentile among held-out normals of the top-1%% map score (map, default), "
                   "the bits/dim (bpd) or the complexity-corrected variant")
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


IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
RANK_BY = {"bpd": ("percentile_among_normals", "score"), "variant": ("variant_percentile", "variant_score"),
           "map": ("map_percentile", "map_score")}
DEFAULT_RANK = "map"   # the top-1% map score: the best case-level separation on the SYNTHETIC phantoms


def case_names(paths) -> list:
    """One unique case name per study: folders keep their whole name (DICOM UIDs hold dots), files lose only
    a known image suffix; repeats get ``-2``, ``-3``, ..."""
    names, seen = [], {}
    for p in paths:
        name = p.name
        if not p.is_dir():
            suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), "")
            name = name[:len(name) - len(suffix)] if suffix else name
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def _cases(folder: Path) -> list:
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    items = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.name.lower().endswith(IMAGE_SUFFIXES):
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
            names = "; ".join(f"{getattr(v, 'description', '') or '?'} ({len(getattr(v, 'files', []) or [])} "
                              "files)" for v in vols[:6])
            raise InputError(f"the folder holds {len(vols)} image series ({names}); put the one to score (the "
                             "axial soft-tissue / brain series) alone in its study folder", path)
        return vols[0].load()
    return read_image(path)


def refusal(exc: Exception) -> str:
    """Why a study was refused: a SlicerCADError's message, or an ITK / SimpleITK RuntimeError's first line.
    RuntimeError's subclasses (NotImplementedError, RecursionError: a bug, not a bad study) are raised again."""
    if isinstance(exc, SlicerCADError):
        return str(exc)
    if type(exc) is not RuntimeError:
        raise exc
    return f"image processing failed: {exc}".splitlines()[0]


def score_folder(folder, out, kind="head_ct", model=None, device="cpu", rank_by=DEFAULT_RANK) -> list:
    """Score every study of ``folder``; rows ranked most anomalous first by ``rank_by`` (``RANK_BY``: the
    percentile among held-out normals of the bits/dim, the complexity variant or the top-1% map score)."""
    from ..imageio import write_image
    from .detector import load_detector

    out = Path(out)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    if rank_by not in RANK_BY:
        raise InputError(f"rank_by must be one of {tuple(RANK_BY)}, got {rank_by!r}", "rank_by")
    det = load_detector(model, kind, device)
    rows = []
    paths = _cases(Path(folder))
    for path, case in zip(paths, case_names(paths)):
        row = {"case": case, "path": str(path), "kind": kind}
        try:
            image = read_case(path)
            res = det.score_image(image, str(path))
            map_path = out / "maps" / f"{case}.nrrd"
            write_image(res.map_image(image), map_path)
            row.update(score=round(res.score, 5), percentile_among_normals=round(res.percentile, 1),
                       variant_score=round(res.variant, 5), variant_percentile=round(res.variant_percentile, 1),
                       map_score=round(res.map_score, 4), map_percentile=round(res.map_percentile, 1),
                       map_max=round(res.map_max, 3), flagged_voxels=res.flagged_voxels, map=str(map_path),
                       warnings="; ".join(res.warnings), **pose_fields(res.sample.info))
        except (SlicerCADError, RuntimeError) as exc:   # named in the CSV, the batch goes on
            row["error"] = refusal(exc)
        rows.append(row)
    pct, raw = RANK_BY[rank_by]
    ok = sorted([r for r in rows if "score" in r], key=lambda r: (-r[pct], -r[raw]))
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
    """Train + calibrate on the normal studies of ``folder``; returns the card path (progress lines on stdout).
    A study that cannot be read or preprocessed is skipped with its reason (progress line, card's
    ``training_data.skipped``)."""
    import numpy as np
    import torch

    from ..engine import progress
    from ..engine.registry import save_model
    from ..engine.tasks import get_task
    from . import task as T

    cases = _cases(Path(folder))
    xs, used, patients, skipped = [], [], [], []
    for i, path in enumerate(cases, 1):
        try:
            image = read_case(path)
            xs.append(T.sample_of(image, kind, str(path)).stacked())
            used.append(path.name)
            patients.append(_patient_id(image, path))
        except (SlicerCADError, RuntimeError) as exc:   # skipped with its reason, training goes on
            reason = refusal(exc)
            skipped.append({"study": path.name, "reason": reason})
            progress.emit("train", message=f"skipped {path.name}: {reason}")
        progress.emit("train", fraction=0.2 * i / len(cases), message=f"read {path.name}")
    n_val = max(2, int(round(val_fraction * len(xs))))
    if len(xs) - n_val < 2:
        raise InputError(f"{len(xs)} usable normal studies: at least {n_val + 2} are needed", folder)
    task_name = T.task_for(kind, family)
    spec = get_task(task_name)
    cfg = spec.config()
    model = spec.build_model(cfg)
    x = torch.from_numpy(np.stack(xs))
    train_idx, val_idx = patient_split(patients, n_val, seed)
    if len(train_idx) < 2 or len(val_idx) < 1:
        raise InputError(f"{len(set(patients))} patient(s) among {len(xs)} normal studies: a patient-level split "
                         "needs at least 3 patients", folder)
    n_val = len(val_idx)
    if n_val < MIN_CALIBRATION:
        progress.emit("train", message=f"warning: only {n_val} calibration normals (at least {MIN_CALIBRATION} "
                                       "advised): the map threshold (95th percentile of their maxima) and the "
                                       "percentiles will be coarse and unstable")
    epochs = epochs or T.epochs_for_steps(len(x) - n_val, T.RECIPE["batch_size"], T.STEP_BUDGET)

    def report(epoch, loss=None, **kw):
        progress.emit("train", epoch=epoch, epochs=epochs, loss=loss, fraction=0.2 + 0.8 * epoch / epochs,
                      message=f"epoch {epoch} done")

    info = T.fit_detector(model, x[train_idx], x[val_idx], epochs, T.RECIPE["batch_size"], T.RECIPE["lr"],
                          seed, report)
    name = name or f"{task_name}_{Path(folder).name}"
    card = {"name": name, "task": task_name, "kind": "likelihood", "model_config": cfg,
            "input_spec": spec.spec_for(cfg), "classes": ["normal", "anomalous"],
            "training_data": {"synthetic": False, "folder": str(folder), "n_train": len(x) - n_val,
                              "n_calibration": n_val, "studies": used, "skipped": skipped, "split_by": "patient",
                            "n_patients": len(set(patients))},
            "metrics": {"map_threshold": info["map_threshold"]}, "temperature": 1.0,
            "training": {"epochs": epochs, "recipe": T.RECIPE},
            "warnings": [f"{n_val} calibration normals (< {MIN_CALIBRATION})"] if n_val < MIN_CALIBRATION else []}
    path = save_model(model, card, out)
    progress.emit("train", fraction=1.0, message="training finished", card=str(path))
    return path


def _patient_id(image, path: Path) -> str:
    """PatientID of a DICOM study (``read_case`` keeps it in the image's metadata where it can), else the
    study's own name (each file or folder its own patient)."""
    for key in ("0010|0020", "PatientID"):
        if image.HasMetaDataKey(key) and image.GetMetaData(key).strip():
            return image.GetMetaData(key).strip()
    if path.is_dir() or path.suffix.lower() == ".dcm":
        import pydicom

        first = path if path.is_file() else next((f for f in sorted(path.rglob("*")) if f.is_file()), None)
        try:
            pid = str(pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["PatientID"]).get(
                "PatientID", "")).strip() if first else ""
        except Exception:  # a non-DICOM file first in the folder: fall back to the study name
            pid = ""
        if pid:
            return pid
    return path.name


def patient_split(patients, n_val: int, seed: int = 0) -> tuple:
    """(train indices, calibration indices): whole patients go to calibration (seeded order) until it holds
    ``n_val`` studies or more; no patient is on both sides."""
    import numpy as np

    groups = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(groups))
    val_patients, count = set(), 0
    for g in order:
        if count >= n_val:
            break
        val_patients.add(groups[g])
        count += sum(1 for p in patients if p == groups[g])
    val = [i for i, p in enumerate(patients) if p in val_patients]
    train = [i for i, p in enumerate(patients) if p not in val_patients]
    return train, val


def run(args) -> int:
    if args.anomaly_command == "train":
        path = train_folder(args.folder, args.out, args.kind, args.family, args.name, args.epochs,
                            args.val_fraction, args.seed)
        print(f"wrote {path}")
        return 0
    if args.anomaly_command == "score":
        rows = score_folder(args.folder, args.out, args.kind, args.model, args.device, args.rank_by)
        n_bad = sum(1 for r in rows if r.get("error"))
        print(f"scored {len(rows) - n_bad} case(s), {n_bad} refused; {Path(args.out) / 'scores.csv'}")
        return 0 if len(rows) > n_bad else 2
    from .experiment import reproduce

    overrides = {k: v for k, v in (("epochs", args.epochs), ("n_train", args.n_train)) if v is not None}
    reproduce(args.out, smoke=args.smoke, seed=args.seed, kinds=tuple(args.kinds), overrides=overrides)
    print(f"wrote {Path(args.out) / 'report.md'} (SYNTHETIC)")
    return 0
