"""``slicercad`` command line. Each sub-command lives in its own module exposing
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; they load lazily so
``slicercad --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SlicerCADError

# sub-command name -> module path (add new commands here)
COMMANDS = {
    "phantom": "slicercad.synth.phantom_cli",
    "scan": "slicercad.dicom.scan_cli",
    "evaluate": "slicercad.engine.evaluate_cli",
    "audit": "slicercad.engine.audit",
    "train": "slicercad.engine.train_cli",
    "fuzz": "slicercad.fuzz.cli",
    "liver": "slicercad.liver.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slicercad", description="SlicerCAD core tools: DICOM, phases, phantoms, "
                                     "training, evaluation, audit and the liver module (research use only).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, path in COMMANDS.items():
        mod = importlib.import_module(path)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SlicerCADError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
