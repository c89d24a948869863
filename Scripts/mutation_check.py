"""Mutation check of the quantities the liver method, AnomalyCT and the evaluation define: change one at a time, in a
throwaway copy of the tree, run the tests that pin it, and report whether they fail ("killed").

    python Scripts/mutation_check.py [--out out/mutation] [--only NAME ...]

A mutation that survives means the quantity is not pinned. Exit status 1 when any survives. The working
tree is never modified (each mutant lives in its own temporary copy).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("slicercad", "SlicerCADLib", "Testing", "LiverLesionCAD", "Resources", "pyproject.toml")
PINS = ["Testing/test_liver_science_pins.py", "Testing/test_engine_ci.py"]
GUARD = ["Testing/test_liver_units_guard.py"]
ANOMALY = ["Testing/test_anomaly_science_pins.py", "Testing/test_anomaly_preprocess.py",
           "Testing/test_anomaly_reference.py"]
# (name, file, original text, mutated text, tests that must fail)
MUTATIONS = [
    ("sigma = diameter / 1.5 (not the radius)", "slicercad/liver/attention.py",
     "return float(diameter_mm) / 2.0 / float(spacing_mm)", "return float(diameter_mm) / 1.5 / float(spacing_mm)", PINS),
    ("alpha 0.1 -> 0.2", "slicercad/liver/attention.py", "DEFAULT_ALPHA = 0.1", "DEFAULT_ALPHA = 0.2", PINS),
    ("ROI 64 px -> 48 px", "slicercad/liver/roi.py", "size_px: int = 64", "size_px: int = 48", PINS),
    ("field of view 3 x diameter -> 2.5 x", "slicercad/liver/roi.py", "fov_factor: float = 3.0",
     "fov_factor: float = 2.5", PINS),
    ("minimum field of view 48 mm -> 40 mm", "slicercad/liver/roi.py", "min_fov_mm: float = 48.0",
     "min_fov_mm: float = 40.0", PINS),
    ("CI level 95 % -> 50 %", "slicercad/engine/ci_settings.py", "CI_LEVEL = 0.95", "CI_LEVEL = 0.50", PINS),
    ("CI at the 25th/75th percentiles", "slicercad/engine/metrics.py", "tail = 50.0 * (1.0 - level)", "tail = 25.0",
     PINS),
    ("size bins: 10 mm into the < 10 bin", "slicercad/engine/ci_settings.py", "SIZE_BIN_EDGES_MM = (10.0, 20.0)",
     "SIZE_BIN_EDGES_MM = (10.5, 20.0)", PINS),
    ("size bins: 20 mm edge -> 25 mm", "slicercad/engine/ci_settings.py", "SIZE_BIN_EDGES_MM = (10.0, 20.0)",
     "SIZE_BIN_EDGES_MM = (10.0, 25.0)", PINS),
    ("bootstrap resamples 1000 -> 200", "slicercad/engine/ci_settings.py", "N_BOOT = 1000", "N_BOOT = 200", PINS),
    ("plausible parenchyma ADC floor 0.6 -> 0.2", "slicercad/liver/guard.py", "PARENCHYMA_ADC = (0.6, 2.5)",
     "PARENCHYMA_ADC = (0.2, 2.5)", GUARD),
    ("anomaly: map smoothing sigma 1 -> 1.5 voxels", "slicercad/anomaly/reference.py",
     "MAP_SMOOTH_SIGMA_VOX = 1.0", "MAP_SMOOTH_SIGMA_VOX = 1.5", ANOMALY),
    ("anomaly: std shrinkage 4 -> 2 pseudo-normals", "slicercad/anomaly/reference.py", "PRIOR_COUNT = 4",
     "PRIOR_COUNT = 2", ANOMALY),
    ("anomaly: std floor half -> a quarter of the median", "slicercad/anomaly/reference.py",
     "np.median(std[seen])) * 0.5", "np.median(std[seen])) * 0.25", ANOMALY),
    ("anomaly: map score top 1 % -> 2 %", "slicercad/anomaly/baselines.py", "TOP_FRACTION, TOP_MIN = 0.01, 5",
     "TOP_FRACTION, TOP_MIN = 0.02, 5", ANOMALY),
    ("anomaly: map score at least 5 -> 3 voxels", "slicercad/anomaly/baselines.py", "TOP_FRACTION, TOP_MIN = 0.01, 5",
     "TOP_FRACTION, TOP_MIN = 0.01, 3", ANOMALY),
    ("anomaly: hyperdense 62 -> 60 HU", "slicercad/anomaly/baselines.py", "HYPERDENSE_HU = 62.0",
     "HYPERDENSE_HU = 60.0", ANOMALY),
    ("anomaly: brain window 40/80 -> 40/100", "slicercad/anomaly/preprocess.py", "BRAIN_WINDOW = (40.0, 80.0)",
     "BRAIN_WINDOW = (40.0, 100.0)", ANOMALY),
    ("anomaly: subdural window 80/200 -> 80/160", "slicercad/anomaly/preprocess.py",
     "SUBDURAL_WINDOW = (80.0, 200.0)", "SUBDURAL_WINDOW = (80.0, 160.0)", ANOMALY),
    ("anomaly: 256 -> 128 quantisation levels", "slicercad/anomaly/scoring.py", "\nN_BINS = 256\n", "\nN_BINS = 128\n",
     ANOMALY),
    ("anomaly: map threshold 95th -> 90th percentile", "slicercad/anomaly/task.py", "MAP_THRESHOLD_PCT = 95.0",
     "MAP_THRESHOLD_PCT = 90.0", ANOMALY),
    ("anomaly: normal-variation limit 15 % -> 20 %", "slicercad/anomaly/experiment.py",
     "NORMAL_VARIATION_LIMIT = 0.15", "NORMAL_VARIATION_LIMIT = 0.20", ANOMALY),
    ("anomaly: chance band 0.1 -> 0.15", "slicercad/anomaly/experiment_report.py", "CHANCE_BAND = 0.1",
     "CHANCE_BAND = 0.15", ANOMALY),
]


def run_mutant(name, rel, original, mutated, tests, workdir: Path) -> dict:
    """Apply one mutation in a fresh copy under ``workdir`` and run ``tests`` there."""
    tree = workdir / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir()
    for item in COPY:
        src = ROOT / item
        (shutil.copytree(src, tree / item, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy2(src, tree / item))
    path = tree / rel
    text = path.read_text()
    if text.count(original) != 1:
        return {"mutation": name, "file": rel, "status": "not applied: the original text is not there exactly once"}
    path.write_text(text.replace(original, mutated))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]),
               SLICERCAD_PROGRESS="")
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=tree, env=env, capture_output=True, text=True)
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    return {"mutation": name, "file": rel, "tests": tests, "status": "killed" if done.returncode else "SURVIVED",
            "failing_test": failed[0][7:] if failed else None, "seconds": round(time.time() - start, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "mutation", help="where results.md/.json go")
    parser.add_argument("--only", nargs="*", help="mutation names to run (substring match)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(s in m[0] for s in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="slicercad-mutants-") as work:
        tests = sorted({t for m in chosen for t in m[4]})
        control = run_mutant("none (control)", MUTATIONS[0][1], MUTATIONS[0][2], MUTATIONS[0][2], tests, Path(work))
        if control["status"] != "SURVIVED":  # the unmutated copy must pass, or every "killed" means nothing
            print(f"the unmutated copy fails its tests ({control.get('failing_test')}): fix that first", flush=True)
            return 2
        for m in chosen:
            rows.append(run_mutant(*m, Path(work)))
            print(f"{rows[-1]['status']:>8}  {m[0]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    lines = ["| mutation | file | result | first failing test |", "|---|---|---|---|"]
    lines += [f"| {r['mutation']} | `{r['file']}` | {r['status']} | {r.get('failing_test') or ''} |" for r in rows]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["status"] == "killed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
