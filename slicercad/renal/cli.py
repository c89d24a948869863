"""``slicercad renal``: the KiTS23 clinical baseline, the SYNTHETIC reproduce tables, and batch assessment."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_json, write_text

HELP = ("renal masses on 4-phase CT (seed 004): KiTS23 clinical baseline, SYNTHETIC reproduce tables, "
        "batch assessment of studies")


def add_arguments(parser) -> None:
    from .constants import CV_FOLDS, CV_REPEATS

    sub = parser.add_subparsers(dest="renal_command", required=True)
    c = sub.add_parser("clinical-baseline", help="age + sex + size model on KiTS23 solid masses <= 4 cm (real data)")
    c.add_argument("--kits23", required=True, help="path of KiTS23's dataset/kits23.json (read, never downloaded)")
    c.add_argument("--json", required=True, help="results JSON to write")
    c.add_argument("--sex-policy", default="assigned-at-birth", choices=("assigned-at-birth", "exclude"),
                   help="how gender 'transgender_male_to_female' is coded (see slicercad/renal/kits23.py)")
    c.add_argument("--folds", type=int, default=CV_FOLDS, help="stratified CV folds")
    c.add_argument("--repeats", type=int, default=CV_REPEATS, help="CV repeats")
    c.add_argument("--permutations", type=int, default=50, help="label permutations of the control")
    c.add_argument("--seed", type=int, default=0, help="random seed")
    r = sub.add_parser("reproduce", help="per-phase AUC table, Youden accuracy, regression table on the SYNTHETIC phantom")
    r.add_argument("--out", required=True, help="folder for results.json and results.md")
    r.add_argument("--n-patients", type=int, default=300, help="SYNTHETIC patients (about 10 %% have two masses)")
    r.add_argument("--epochs", type=int, default=15, help="training epochs of every CNN")
    r.add_argument("--folds", type=int, default=CV_FOLDS, help="patient-level outer folds")
    r.add_argument("--seed", type=int, default=0, help="random seed")
    r.add_argument("--kits23", help="also run the clinical baseline on this KiTS23 JSON and report it beside")
    r.add_argument("--arch", default="small", choices=("small", "inception_v3"),
                   help="per-phase network: small (from scratch) or the report's Inception-v3 (needs torchvision)")
    r.add_argument("--imagenet-weights", help="local Inception-v3 ImageNet weights file (never downloaded)")
    r.add_argument("--smoke", action="store_true", help="tiny data, 2 folds, 1 epoch (checks the pipeline only)")
    a = sub.add_parser("assess", help="assess masses of DICOM studies with a saved renal model -> CSV")
    a.add_argument("--model", help="renal model card (.json) beside its .safetensors files (default: the bundled "
                                   "renal_mass_demo, trained on SYNTHETIC data)")
    a.add_argument("--masses", required=True,
                   help="CSV: study,mass_id,x,y,z,coordinate_system,diameter_mm[,age,sex] (study = DICOM folder)")
    a.add_argument("--out", required=True, help="results CSV to write")
    a.add_argument("--protocol", default="renal_ct", choices=("renal_ct", "auto"),
                   help="phase assignment protocol: renal_ct (default, as the panel) or auto (renal from descriptions, "
                        "or from timing at capped confidence)")


def _clinical(args) -> int:
    from .clinical import clinical_baseline

    out = clinical_baseline(args.kits23, args.sex_policy, args.folds, args.repeats, args.seed,
                            n_permutations=args.permutations)
    out.pop("auc_per_repeat", None)
    path = write_json(args.json, out)
    print(json.dumps({k: out[k] for k in ("n_masses", "n_benign", "auc", "auc_ci95")}))
    print(f"KiTS23 (real data) clinical baseline written to {path}")
    return 0


def _reproduce(args) -> int:
    from ..engine.metrics import jsonable
    from .study import reproduce
    from .tables import results_markdown

    n, folds, epochs, n_boot = (40, 2, 1, 200) if args.smoke else (args.n_patients, args.folds, args.epochs, 2000)
    out = reproduce(n, args.seed, folds, {"epochs": epochs, "arch": args.arch,
                                          "imagenet_weights": args.imagenet_weights}, n_boot)
    out["smoke"] = bool(args.smoke)
    if args.kits23:
        from .clinical import clinical_baseline

        kb = clinical_baseline(args.kits23, n_permutations=5 if args.smoke else 50,
                               repeats=2 if args.smoke else 10)
        kb.pop("auc_per_repeat", None)
        out["kits23_clinical_baseline"] = kb
    out = jsonable(out)
    path = write_json(Path(args.out) / "results.json", out)
    write_text(Path(args.out) / "results.md", results_markdown(out))
    print(json.dumps({m: round(v["auc"], 3) for m, v in out["models"].items()}))
    print(f"SYNTHETIC results written to {path}")
    return 0


def _assess(args) -> int:
    from .inference import assess_csv

    rows = assess_csv(args.model, args.masses, args.out, args.protocol)
    for r in rows:
        print(f"{r['mass_id']}: {r['status']} p_combined={r.get('p_combined', '')}")
    print(f"results written to {args.out} (research use; model trained on synthetic data when its card says so)")
    return 0


def run(args) -> int:
    return {"clinical-baseline": _clinical, "reproduce": _reproduce, "assess": _assess}[args.renal_command](args)
