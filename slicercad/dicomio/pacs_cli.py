"""``slicercad pacs``: echo / find / pull / push against the user's PACS (DICOMweb or DIMSE)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InputError

HELP = ("the user's PACS over DICOMweb (http(s)://host:port/dicom-web) or DIMSE (dimse://AET@host:port): check it, "
        "find studies, pull studies into a folder (DIMSE: C-GET or C-MOVE), push SEG/SR results (pre-flight checked, "
        "resumable JSONL log). "
        "Credentials: --user with $SLICERCAD_PACS_PASSWORD, or $SLICERCAD_PACS_TOKEN (bearer)")


def _common(p) -> None:
    p.add_argument("--pacs", required=True, help="http(s)://host:port/dicom-web or dimse://AET@host:port")
    p.add_argument("--user", help="HTTP basic user, or DIMSE User Identity (password from $SLICERCAD_PACS_PASSWORD)")
    p.add_argument("--calling-aet", default="SLICERCAD", help="our AE title (DIMSE)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per network operation")
    p.add_argument("--retrieve", choices=("get", "move"), default="get",
                   help="DIMSE pull: C-GET, or C-MOVE to our own storage SCP (the PACS must know our AE title)")
    p.add_argument("--move-port", type=int, default=0, help="C-MOVE: port our storage SCP listens on, as "
                                                             "registered in the PACS for --calling-aet")
    p.add_argument("--listen-host", default="", help="C-MOVE: address our storage SCP binds to (default: our "
                                                     "address on the route to the PACS)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="pacs_command", required=True)
    e = sub.add_parser("echo", help="check the PACS answers (C-ECHO / a QIDO query)")
    _common(e)
    f = sub.add_parser("find", help="list studies matching a query")
    _common(f)
    f.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. PatientID=SYN*, StudyDate=20240101-20241231 (repeat)")
    pl = sub.add_parser("pull", help="pull studies (UIDs, a UID list file, or a query) into OUT/<StudyUID>/")
    _common(pl)
    pl.add_argument("--study", action="append", default=[], help="StudyInstanceUID (repeat)")
    pl.add_argument("--study-list", help="text file: one StudyInstanceUID a line (# comments)")
    pl.add_argument("--query", action="append", default=[], metavar="KEY=VALUE", help="pull every match")
    pl.add_argument("--out", required=True, help="folder for the studies")
    pl.add_argument("--log", help="resumable JSONL log (default OUT/pull-log.jsonl)")
    ps = sub.add_parser("push", help="push result files / folders (SEG, SR, ...) after checking their sources")
    _common(ps)
    ps.add_argument("paths", nargs="+", help="DICOM files or folders")
    ps.add_argument("--log", help="resumable JSONL log of what was sent (default: push-log.jsonl beside the "
                                  "first path)")
    ps.add_argument("--no-source-check", action="store_true",
                    help="send even when a referenced source series is not in the PACS")


def _query(items) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"expected KEY=VALUE, got {item!r}", "--query")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _progress(text):
    print(text, file=sys.stderr, flush=True)


def run(args) -> int:
    from .pacs import connect, parse_endpoint, pull, push

    endpoint = parse_endpoint(args.pacs, username=args.user, calling_aet=args.calling_aet, timeout=args.timeout,
                              retrieve=args.retrieve, move_port=args.move_port, listen_host=args.listen_host)
    if args.pacs_command == "echo":
        connect(endpoint).check()
        print(f"{endpoint.describe()}: answers")
        return 0
    if args.pacs_command == "find":
        client = connect(endpoint)
        client.check()
        print(json.dumps(client.find_studies(_query(args.query)), indent=1))
        return 0
    if args.pacs_command == "pull":
        uids = list(args.study)
        if args.study_list:
            lines = Path(args.study_list).read_text().splitlines()
            uids += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
        query = _query(args.query)
        if not uids and not query:
            raise InputError("give --study, --study-list or --query", "pacs pull")
        log = args.log or str(Path(args.out) / "pull-log.jsonl")
        folders = pull(endpoint, args.out, study_uids=uids, query=query or None, log=log, progress=_progress)
        print(f"{len(folders)} studies in {args.out} (log {log})")
        return 0
    log = args.log or str(Path(args.paths[0]).resolve().parent / "push-log.jsonl")
    result = push(endpoint, args.paths, log=log, check_sources=not args.no_source_check, progress=_progress)
    print(f"sent {result['sent']}, already there {result['skipped']}, of {result['total']} files (log {log})")
    return 0
