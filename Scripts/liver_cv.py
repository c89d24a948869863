"""Recipe-selection cross-validation of the LiverLesionCAD training recipe on the SYNTHETIC phantom.

Patient-level K-fold cross-validation (``engine.splits.kfold``: no patient is on both sides of a fold) on
the TRAINING phantom only -- the lesions ``Scripts/build_liver_model.py`` trains the bundled model on
(``--n-train`` lesions from ``--data-seed``, train acquisition, the task config with alpha 0.1 and channels
16/32/64; the test split is never read). Each candidate differs from the task's ``RECIPE`` only in the
choices the recipe makes (intensity augmentation -- per-phase gamma, noise and +-1 px shift --, the
breath-hold shift augmentation, the number of epochs) and is trained through ``task.train_with_recipe``
(``fitting.fit_network``; its temperature is fitted on a patient-level validation split of the training
folds) on samples built by the one sample path (``dataset.build_dataset`` -> ``lesion_sample``, attention
from the ROI centre + measured diameter, as the product has it). Every candidate sees the same folds and the
same training seed. Score: balanced accuracy on the held-out fold's patients; mean +- sd over folds.

Rule: the candidate with the highest mean balanced accuracy (rounded to the table's 3 decimals) is chosen;
ties go to the simpler one (fewer augmentations on, then fewer epochs). With K folds the sd says how far
apart two means must be before the choice means anything; the table prints it beside every mean.

Writes ``results.md`` and ``results.json`` under ``--out`` atomically (after every training, with
``"complete": false`` until the last). One training thread and deterministic algorithms, as
``make liver-model``; ``--jobs 2`` runs trainings in parallel processes (each still one thread: the same
numbers). Run: ``make liver-cv``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slicercad.atomic import write_json, write_text  # noqa: E402
from slicercad.engine.splits import kfold  # noqa: E402
from slicercad.liver.task import LIVER_LESION, RECIPE, phantom_dataset, train_with_recipe  # noqa: E402

ALPHA = 0.1                 # as Scripts/build_liver_model.py
CHANNELS = (16, 32, 64)
NO_SHIFT = {"breath_hold_shift_mm": 0.0, "breath_hold_shift_p": 0.0}
# name -> overrides of RECIPE (only the recipe's own choices)
CANDIDATES = {
    "recipe": {},
    "epochs_15": {"epochs": 15},
    "no_intensity_aug": {"intensity_augmentation": False},
    "no_breath_hold_aug": dict(NO_SHIFT),
    "plain_15": {"intensity_augmentation": False, **NO_SHIFT, "epochs": 15},
}
DEFAULT_CANDIDATES = tuple(CANDIDATES)
KNOBS = ("intensity_augmentation", "breath_hold_shift_mm", "breath_hold_shift_p", "epochs")


def candidate_recipe(name: str, epochs_scale: float = 1.0) -> dict:
    """The knobs of candidate ``name`` (RECIPE with its overrides; epochs scaled, at least 1)."""
    r = {**RECIPE, **CANDIDATES[name]}
    out = {k: r[k] for k in KNOBS}
    out["epochs"] = max(1, int(round(r["epochs"] * float(epochs_scale))))
    return out


def breath_hold_on(recipe: dict) -> bool:
    return recipe["breath_hold_shift_mm"] > 0 and recipe["breath_hold_shift_p"] > 0


def complexity(recipe: dict) -> tuple:
    """Sort key of simplicity: (augmentations on, epochs); smaller is simpler."""
    return (int(bool(recipe["intensity_augmentation"])) + int(breath_hold_on(recipe)), int(recipe["epochs"]))


def choose(rows: dict, order) -> str:
    """The rule: highest mean balanced accuracy (at 3 decimals); ties -> the simpler (``complexity``), then
    the earlier in ``order``."""
    best = max(round(rows[n]["mean"], 3) for n in order)
    tied = [n for n in order if round(rows[n]["mean"], 3) == best]
    return min(tied, key=lambda n: (complexity(rows[n]["recipe"]), list(order).index(n)))


def subset(ds, idx):
    """The ``RoiDataset`` rows ``idx`` (arrays and per-sample lists indexed; the rest kept)."""
    idx = np.asarray(idx, int)
    n = len(ds.labels)
    out = {}
    for f in dataclasses.fields(ds):
        v = getattr(ds, f.name)
        if isinstance(v, np.ndarray) and v.ndim and len(v) == n:
            v = v[idx]
        elif isinstance(v, list) and len(v) == n:
            v = [v[i] for i in idx]
        out[f.name] = v
    return type(ds)(**out)


def make_folds(patient_ids, k: int, seed: int) -> list:
    """K (train, held-out) index pairs by patient (``engine.splits.kfold``)."""
    return kfold(patient_ids, k=k, seed=seed, by="patient")


def check_disjoint(patient_ids, folds) -> None:
    """Raise if any patient is on both sides of a fold, or a sample is held out other than once."""
    pids = np.asarray([str(p) for p in patient_ids])
    seen = np.zeros(len(pids), int)
    for i, (tr, te) in enumerate(folds):
        both = set(pids[tr]) & set(pids[te])
        if both:
            raise AssertionError(f"fold {i + 1}: patients on both sides: {sorted(both)[:5]}")
        seen[te] += 1
    if not np.all(seen == 1):
        raise AssertionError("every sample must be held out exactly once")


_DS = None   # the dataset, for worker processes (fork)


def _init_worker():
    from slicercad.liver.fitting import deterministic_torch

    deterministic_torch()


def train_and_score(name: str, recipe: dict, fold: int, tr, te, seed: int, ds=None) -> dict:
    """Train candidate ``name`` on rows ``tr`` with ``train_with_recipe``, score on held-out rows ``te``."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from slicercad.liver.fitting import predict_proba

    ds = _DS if ds is None else ds
    t0 = time.time()
    cfg = LIVER_LESION.config({"alpha": ALPHA, "channels": list(CHANNELS)})
    train, held = subset(ds, tr), subset(ds, te)
    model, temperature, info = train_with_recipe(train, cfg, seed, **recipe)
    pred = predict_proba(model, temperature, held).argmax(1)
    return {"candidate": name, "fold": fold, "balanced_accuracy": float(balanced_accuracy_score(held.labels, pred)),
            "accuracy": float(accuracy_score(held.labels, pred)), "n_held_out": int(len(te)),
            "n_held_out_patients": len(set(held.patient_ids)), "n_fit": info["n_train"],
            "n_calibration": info["n_val"], "temperature": float(temperature), "seconds": round(time.time() - t0, 1)}


def summarise(candidates, recipes, results: list, k: int) -> dict:
    rows = {}
    for name in candidates:
        scores = [r["balanced_accuracy"] for r in sorted(results, key=lambda r: r["fold"]) if r["candidate"] == name]
        rows[name] = {"recipe": recipes[name], "overrides": CANDIDATES[name], "fold_balanced_accuracy": scores,
                      "mean": float(np.mean(scores)) if scores else None,
                      "sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
                      "complete": len(scores) == k}
    return rows


def _fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(res: dict) -> str:
    s = res["settings"]
    lines = [
        "# LiverLesionCAD recipe-selection cross-validation (SYNTHETIC phantom)",
        "",
        f"Settings: {s['folds']}-fold patient-level CV (`engine.splits.kfold`, fold seed {s['fold_seed']}) on the "
        f"TRAINING phantom only — {s['n_train']} lesions / {s['n_patients']} patients from data seed "
        f"{s['data_seed']} (train acquisition; the lesions `Scripts/build_liver_model.py` trains on; test split "
        f"never read); epochs scale {s['epochs_scale']:g} (RECIPE epochs {RECIPE['epochs']}); training seed "
        f"{s['seed']} for every candidate; {s['threads']} training thread, deterministic algorithms; "
        f"{s['jobs']} parallel job(s); wall time {s['wall_s']:.0f} s. Command: `{s['command']}`.",
        "",
        "Each candidate is `task.RECIPE` with the overrides shown, trained by `task.train_with_recipe` on the "
        "training folds (temperature on a patient-level validation split inside them) with samples from the one "
        "sample path (attention from ROI centre + measured diameter); score = balanced accuracy on the held-out "
        "fold's patients. Intensity aug = per-phase gamma, noise and ±1 px shift; breath-hold aug = in-plane "
        f"shift up to {RECIPE['breath_hold_shift_mm']:g} mm with p = {RECIPE['breath_hold_shift_p']:g}.",
        "",
        "| candidate | intensity aug | breath-hold aug | epochs | "
        + " | ".join(f"fold {i + 1}" for i in range(s["folds"])) + " | mean ± sd |",
        "|---|---|---|---|" + "---|" * s["folds"] + "---|",
    ]
    held = ", ".join(f"fold {f['fold']} {f['n_held_out']} lesions / {len(f['held_out_patients'])} patients"
                     for f in res["folds"])
    for name, row in res["rows"].items():
        r = row["recipe"]
        folds = row["fold_balanced_accuracy"] + [None] * (s["folds"] - len(row["fold_balanced_accuracy"]))
        mark = " **(chosen)**" if name == res.get("chosen") else ""
        lines.append(f"| {name}{mark} | {'on' if r['intensity_augmentation'] else 'off'} | "
                     f"{'on' if breath_hold_on(r) else 'off'} | {r['epochs']} | "
                     + " | ".join(_fmt(v) for v in folds) + f" | {_fmt(row['mean'])} ± {_fmt(row['sd'])} |")
    lines += ["", f"Held out: {held}. sd = sample sd (n − 1) over the {s['folds']} folds.", "",
              f"Rule: {res['rule']}."]
    if res.get("chosen"):
        c = res["rows"][res["chosen"]]
        lines.append(f"Chosen: **{res['chosen']}** (mean balanced accuracy {_fmt(c['mean'])} ± {_fmt(c['sd'])}). "
                     f"The task recipe (`recipe`) scores {_fmt(res['rows'].get('recipe', {}).get('mean'))}."
                     if "recipe" in res["rows"] else f"Chosen: **{res['chosen']}**.")
        lines.append("Differences smaller than the fold sd are not distinguishable with this many folds; "
                     "SYNTHETIC data only, no claim about real scans.")
    else:
        lines.append("Incomplete: not every candidate × fold has been trained yet.")
    return "\n".join(lines) + "\n"


def run(out: Path, folds: int = 3, n_train: int = 400, epochs_scale: float = 1.0, candidates=DEFAULT_CANDIDATES,
        seed: int = 0, data_seed: int = 1, fold_seed: int = 0, jobs: int = 1, command: str = "") -> dict:
    """Run the cross-validation; returns the results dict (also written to ``out``)."""
    global _DS
    from slicercad.liver.fitting import deterministic_torch

    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; choose from {sorted(CANDIDATES)}")
    deterministic_torch()
    t0 = time.time()
    cfg = LIVER_LESION.config({"alpha": ALPHA, "channels": list(CHANNELS), "n_lesions": n_train,
                               "data_seed": data_seed, "split": "train", "use_masks": False})
    ds = phantom_dataset(cfg)
    _DS = ds
    split = make_folds(ds.patient_ids, folds, fold_seed)
    check_disjoint(ds.patient_ids, split)
    recipes = {c: candidate_recipe(c, epochs_scale) for c in candidates}
    pids = np.asarray([str(p) for p in ds.patient_ids])
    fold_info = [{"fold": i + 1, "n_train": int(len(tr)), "n_held_out": int(len(te)),
                  "train_patients": sorted(set(pids[tr].tolist())), "held_out_patients": sorted(set(pids[te].tolist()))}
                 for i, (tr, te) in enumerate(split)]
    print(f"[liver cv] {len(ds.labels)} training-phantom lesions, {len(set(pids.tolist()))} patients, {folds} folds, "
          f"{len(candidates)} candidates ({len(candidates) * folds} trainings); dataset {time.time() - t0:.0f} s",
          flush=True)
    settings = {"folds": folds, "fold_seed": fold_seed, "n_train": n_train, "n_patients": len(set(pids.tolist())),
                "data_seed": data_seed, "split": "train", "epochs_scale": epochs_scale, "seed": seed, "threads": 1,
                "jobs": jobs, "alpha": ALPHA, "channels": list(CHANNELS), "attention": ds.attention_source,
                "command": command, "wall_s": 0.0}
    rule = ("highest mean balanced accuracy over the held-out folds (compared at 3 decimals); ties -> the simpler "
            "candidate (fewer augmentations on, then fewer epochs)")
    tasks = [(name, recipes[name], i + 1, tr, te) for name in candidates for i, (tr, te) in enumerate(split)]
    results: list = []

    def record(r):
        results.append(r)
        print(f"[liver cv {len(results)}/{len(tasks)}] {r['candidate']} fold {r['fold']}: balanced accuracy "
              f"{r['balanced_accuracy']:.3f} (accuracy {r['accuracy']:.3f}, {r['n_held_out']} lesions / "
              f"{r['n_held_out_patients']} patients held out) {r['seconds']:.0f} s", flush=True)
        write(out, results, complete=len(results) == len(tasks))

    def write(out, results, complete):
        settings["wall_s"] = round(time.time() - t0, 1)
        rows = summarise(candidates, recipes, results, folds)
        res = {"synthetic": True, "complete": complete, "settings": settings, "rule": rule,
               "recipe": {k: v for k, v in RECIPE.items()}, "candidates": list(candidates), "rows": rows,
               "chosen": choose(rows, candidates) if complete else None,
               "folds": fold_info, "trainings": sorted(results, key=lambda r: (list(candidates).index(r["candidate"]),
                                                                               r["fold"]))}
        write_json(Path(out) / "results.json", res)
        write_text(Path(out) / "results.md", markdown(res))
        return res

    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"),
                                 initializer=_init_worker) as pool:
            futures = [pool.submit(train_and_score, *t, seed) for t in tasks]
            for f in as_completed(futures):
                record(f.result())
    else:
        for t in tasks:
            record(train_and_score(*t, seed, ds=ds))
    res = write(out, results, complete=True)
    print(f"[liver cv] chosen: {res['chosen']}; {settings['wall_s']:.0f} s -> {Path(out) / 'results.md'}", flush=True)
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "liver_cv")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=400, help="training-phantom lesions (build_liver_model: 400)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every candidate's epochs")
    parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                        help=f"comma-separated subset of {','.join(CANDIDATES)}")
    parser.add_argument("--seed", type=int, default=0, help="training seed (every candidate, every fold)")
    parser.add_argument("--data-seed", type=int, default=1, help="training phantom seed (build_liver_model: 1)")
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes (one thread each)")
    args = parser.parse_args(argv)
    # small validation splits inside fit_network may lack a class: sklearn's note about it is noise here
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
    command = "python Scripts/liver_cv.py " + " ".join(sys.argv[1:] if argv is None else list(argv))
    run(args.out, args.folds, args.n_train, args.epochs_scale, [c for c in args.candidates.split(",") if c],
        args.seed, args.data_seed, args.fold_seed, args.jobs, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
