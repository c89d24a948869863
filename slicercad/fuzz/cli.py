"""``slicercad fuzz`` / ``python -m slicercad.fuzz``: fuzz the DICOM loaders and print the figures."""
from __future__ import annotations

import argparse
import sys

from ..cli import main as slicercad_main
from ..errors import InputError, SlicerCADError

HELP = "fuzz the DICOM scan, volume load and TI-scout load with mutated real DICOM files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", type=int, default=1000, help="number of mutated inputs (file + series level)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (same seed, same inputs)")
    parser.add_argument("--out", default="out/fuzz", help="folder for summary.json and crashing inputs")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per input before it counts as a hang")
    parser.add_argument("--memory-mb", type=int, default=1024,
                        help="address-space cap of the worker above its start-up size (MiB)")


def _progress(tally) -> None:
    done = sum(tally.inputs.values())
    if done % 500 == 0:
        print(f"  {done} inputs, {sum(v['count'] for v in tally.crashes.values())} crashes", flush=True)


def run(args) -> int:
    try:
        from .runner import run_fuzz
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        raise SlicerCADError('fuzzing needs hypothesis, from the test extra: pip install "slicercad[test]" '
                             "(or pip install hypothesis)", "slicercad fuzz") from exc
    if args.inputs < 1:
        raise InputError(f"--inputs must be at least 1, got {args.inputs}", "--inputs")
    s = run_fuzz(args.inputs, args.seed, args.out, timeout_s=args.timeout, memory_mb=args.memory_mb,
                 report=_progress)
    print(f"inputs:        {s['inputs']} ({s['file_inputs']} file-level, {s['series_inputs']} series-level)")
    print(f"outcomes:      file {s['outcomes']['file']}  series {s['outcomes']['series']}")
    print(f"typed errors:  {s['typed_errors']} calls {s['typed_errors_by_class']}")
    print(f"crashes:       {s['crashes']} in {len(s['crash_classes'])} class(es)")
    for key, entry in s["crash_classes"].items():
        print(f"  {key}: {entry['count']} x, minimal input in {entry['input']}")
    print(f"peak memory:   worker {s['peak_worker_rss_mb']} MiB RSS (cap +{s['memory_cap_mb']} MiB address "
          f"space), runner {s['peak_runner_rss_mb']} MiB")
    print(f"runtime:       {s['runtime_s']} s (seed {s['seed']}); summary in {args.out}/summary.json")
    return 1 if s["crashes"] else 0


def main(argv=None) -> int:
    """``python -m slicercad.fuzz ARGS`` runs ``slicercad fuzz ARGS``."""
    return slicercad_main(["fuzz", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
