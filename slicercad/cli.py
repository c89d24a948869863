"""``slicercad`` command line. Each sub-command lives in its own module exposing
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; only the module of the command
given is imported, so ``slicercad --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SlicerCADError

# sub-command name -> (module path, one-line help for the command list); add new commands here
COMMANDS = {
    "phantom": ("slicercad.synth.phantom_cli", "write a SYNTHETIC multi-phase phantom study and assign its phases"),
    "scan": ("slicercad.dicom.scan_cli", "scan a DICOM folder and list studies, series and volumes"),
    "evaluate": ("slicercad.engine.evaluate_cli", "evaluate predictions and write metrics and a report"),
    "audit": ("slicercad.engine.audit", "audit a research export for identifiers"),
    "train": ("slicercad.engine.train_cli", "train a registered task (DDP under torchrun)"),
    "fuzz": ("slicercad.fuzz.cli", "fuzz the DICOM loaders with mutated real DICOM files"),
    "liver": ("slicercad.liver.cli", "liver lesions: classify a study's lesions, or reproduce the synthetic tables"),
    "ti": ("slicercad.ti.cli", "cardiac LGE inversion time from a TI scout: correct series, or reproduce the synthetic table"),
    "weak": ("slicercad.weak.cli", "weak labels: sphere / U-Net from centre + size, RT dose as label, synthetic experiment"),
    "anomaly": ("slicercad.anomaly.cli", "anomaly detection from normals only (Glow 2D/3D, f-AnoGAN): score a folder, or reproduce"),
    "renal": ("slicercad.renal.cli", "renal masses on 4-phase CT: KiTS23 clinical baseline, synthetic reproduce, batch assess"),
    "results": ("slicercad.dicomio.results_cli", "results as DICOM (liver, weak labels, TI, anomaly, renal): SEG / Parametric Map / TID 1500 SR, or read one back"),
    "pacs": ("slicercad.dicomio.pacs_cli", "the user's PACS (DICOMweb or DIMSE): echo, find, pull studies, push SEG/SR results"),
}


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to an option's help, except for flags and options without a default."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or action.default == []:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows the options' defaults, sub-parsers (nested too) included."""

    def __init__(self, *args, formatter_class=DefaultsFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported and its arguments added."""
    parser = Parser(prog="slicercad", description="SlicerCAD core tools: DICOM, phases, phantoms, "
                    "training, evaluation, audit and the liver module (research use only).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (path, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(path)
        p = sub.add_parser(name, help=help_text, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SlicerCADError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
