"""The user's PACS over DICOMweb (QIDO-RS / WADO-RS / STOW-RS, dicomweb-client, basic or bearer auth) or DIMSE
(C-ECHO / C-FIND / C-GET or C-MOVE / C-STORE, pynetdicom - imported inside the functions: Slicer does not bundle
it). C-GET brings the instances back on our own association; C-MOVE (for a PACS that offers only that) has the
PACS send them to a move destination: our own storage SCP, started for the retrieve on ``move_port`` under our
AE title, which the PACS must know as a modality (AE title, our host, that port).

``pull`` fetches studies (by UID, a UID list or a query) into ``OUT/<StudyInstanceUID>/``: each study is
retrieved into a hidden ``.partial-*`` folder and renamed when complete, so a folder that exists is whole.
``push`` sends result files (SEG, SR, Parametric Map ...) after a pre-flight check - the PACS answers, and every
source series a result references is in it - so a known problem sends nothing. Each instance is logged (JSONL,
fsync'd) only once the PACS confirmed it; a rerun with the same log skips what went and resumes the rest.
Nothing is downloaded from anywhere but the PACS the user names. The clients: ``pacs_web`` (DICOMweb) and
``pacs_dimse`` (DIMSE).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SlicerCADError

ENV_USER, ENV_PASSWORD, ENV_TOKEN = "SLICERCAD_PACS_USER", "SLICERCAD_PACS_PASSWORD", "SLICERCAD_PACS_TOKEN"
QUERY_KEYS = ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyDescription",
              "StudyInstanceUID")


class PacsError(SlicerCADError):
    """The PACS is unreachable, refused a request, or lacks what was asked for."""


@dataclass
class Endpoint:
    """Where the PACS is: ``protocol`` 'dicomweb' (``url``) or 'dimse' (``host``, ``port``, ``called_aet``)."""

    protocol: str
    url: str = ""
    host: str = ""
    port: int = 0
    called_aet: str = ""
    calling_aet: str = "SLICERCAD"
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 30.0
    retrieve: str = "get"          # DIMSE retrieve: 'get' (C-GET) or 'move' (C-MOVE to our storage SCP)
    move_port: int = 0             # C-MOVE: the port our storage SCP listens on (as the PACS has it configured)
    listen_host: str = ""          # C-MOVE: the address our storage SCP binds to ('' = the one facing the PACS)

    def describe(self) -> str:
        return self.url if self.protocol == "dicomweb" else f"{self.called_aet}@{self.host}:{self.port} (DIMSE)"


def parse_endpoint(text: str, *, username=None, password=None, token=None, calling_aet: str = "SLICERCAD",
                   timeout: float = 30.0, retrieve: str = "get", move_port: int = 0,
                   listen_host: str = "") -> Endpoint:
    """'http(s)://host:port/dicom-web' (DICOMweb) or 'dimse://AET@host:port' / 'AET@host:port' (DIMSE).
    Credentials default to $SLICERCAD_PACS_USER / $SLICERCAD_PACS_PASSWORD / $SLICERCAD_PACS_TOKEN; over DIMSE
    a user (and password) goes as User Identity Negotiation, a bearer token is refused.
    ``retrieve`` 'move' needs ``move_port`` (our storage SCP's port, registered in the PACS for our AE title);
    the SCP binds ``listen_host``, by default our address on the route to the PACS (loopback for a local one)."""
    if retrieve not in ("get", "move"):
        raise PacsError(f"retrieve must be 'get' or 'move', got {retrieve!r}", "--retrieve")
    username = username or os.environ.get(ENV_USER) or None
    password = password or os.environ.get(ENV_PASSWORD) or None
    token = token or os.environ.get(ENV_TOKEN) or None
    text = str(text).strip()
    if text.startswith(("http://", "https://")):
        if retrieve == "move":
            raise PacsError("--retrieve move is for a DIMSE PACS (dimse://AET@host:port); DICOMweb retrieves "
                            "with WADO-RS", text)
        return Endpoint("dicomweb", url=text.rstrip("/"), username=username, password=password, token=token,
                        calling_aet=calling_aet, timeout=timeout)
    rest = text[len("dimse://"):] if text.startswith("dimse://") else text
    if "@" not in rest or ":" not in rest.split("@", 1)[1]:
        raise PacsError("expected http(s)://host:port/dicom-web or dimse://AET@host:port", text)
    aet, hostport = rest.split("@", 1)
    host, port = hostport.rsplit(":", 1)
    if not aet or len(aet) > 16 or not port.isdigit():
        raise PacsError("a DIMSE address needs an AE title (1-16 characters) and a numeric port", text)
    if token:
        raise PacsError(f"a bearer token is for DICOMweb; a DIMSE PACS takes --user (password from {ENV_PASSWORD}) "
                        f"or no credentials (unset {ENV_TOKEN})", text)
    if password and not username:
        raise PacsError("a DIMSE password needs a user (--user)", text)
    if retrieve == "move" and not 0 < int(move_port) < 65536:
        raise PacsError("C-MOVE needs --move-port: the port of our storage SCP, as registered in the PACS for our "
                        f"AE title {calling_aet}", "--move-port")
    return Endpoint("dimse", host=host, port=int(port), called_aet=aet, calling_aet=calling_aet,
                    username=username, password=password, timeout=timeout, retrieve=retrieve,
                    move_port=int(move_port), listen_host=listen_host or address_towards(host))


def address_towards(host: str) -> str:
    """Our local address on the route to ``host`` (no packet is sent); loopback for a local PACS."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def connect(endpoint: Endpoint):
    """A client (``pacs_web.DicomWebPacs`` or ``pacs_dimse.DimsePacs``) for the endpoint."""
    if endpoint.protocol == "dicomweb":
        from .pacs_web import DicomWebPacs

        return DicomWebPacs(endpoint)
    from .pacs_dimse import DimsePacs

    return DimsePacs(endpoint)


def study_row(ds) -> dict:
    """The study-level fields a find answers with."""
    return {k: str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "PatientID", "StudyDate",
                                                  "StudyDescription", "AccessionNumber")}


def save_instance(ds, folder: Path) -> Path:
    """Save a received instance as ``folder/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    target = Path(folder) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(target), enforce_file_format=True)
    return target


class ResumableLog:
    """JSON lines of what went: {"op", "endpoint", "key", "status", ...}; ``done(op, key)`` says a record of
    status 'done' exists for this endpoint. Every line is flushed and fsync'd before the next step."""

    def __init__(self, path, endpoint: Endpoint):
        self.path = Path(path) if path else None
        self.endpoint = endpoint.describe()
        self._done = set()
        if self.path and self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue                       # a line cut by a crash: that step is redone
                if rec.get("status") == "done" and rec.get("endpoint") == self.endpoint:
                    self._done.add((rec.get("op"), rec.get("key")))

    def done(self, op: str, key: str) -> bool:
        return (op, key) in self._done

    def write(self, op: str, key: str, status: str, **extra) -> None:
        if status == "done":
            self._done.add((op, key))
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "op": op, "endpoint": self.endpoint, "key": key,
               "status": status, **extra}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _say(progress, text):
    if progress:
        progress(text)


def resolve_studies(client, study_uids=None, query: dict | None = None) -> list:
    """Study UIDs to pull: given UIDs (each checked to exist) or the matches of a query."""
    uids = [u.strip() for u in (study_uids or []) if u and u.strip()]
    for uid in uids:
        if not client.study_exists(uid):
            raise PacsError(f"study {uid} is not in the PACS", client.endpoint.describe())
    if query:
        bad = [k for k in query if k not in QUERY_KEYS]
        if bad:
            raise PacsError(f"unknown query key(s) {bad}; use {list(QUERY_KEYS)}", "query")
        found = [r["StudyInstanceUID"] for r in client.find_studies(query) if r["StudyInstanceUID"]]
        if not found:
            raise PacsError(f"no study in the PACS matches {query}", client.endpoint.describe())
        uids += found
    return list(dict.fromkeys(uids))


def pull(endpoint: Endpoint, out, *, study_uids=None, query=None, log=None, progress=print) -> list:
    """Pull studies into ``out/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; returns the
    study folders. Studies already logged as done (and present) are skipped. A study that fails is logged and
    left out (no folder), the others are pulled; at the end a PacsError names the failed ones."""
    client = connect(endpoint)
    client.check()
    uids = resolve_studies(client, study_uids, query)
    log = ResumableLog(log, endpoint)
    out = Path(out)
    folders, failed = [], []
    for n, uid in enumerate(uids, start=1):
        final = out / uid
        if log.done("pull", uid) and final.is_dir():
            _say(progress, f"[{n}/{len(uids)}] {uid}: already pulled")
            folders.append(final)
            continue
        partial = out / f".partial-{uid}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            count = client.retrieve_study(uid, partial)
            if count == 0:
                raise PacsError(f"study {uid}: the PACS sent no instances", endpoint.describe())
        except PacsError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            log.write("pull", uid, "failed", error=str(exc))
            _say(progress, f"[{n}/{len(uids)}] {uid}: FAILED ({exc})")
            failed.append((uid, exc))
            continue
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        log.write("pull", uid, "done", instances=count, folder=str(final))
        _say(progress, f"[{n}/{len(uids)}] {uid}: {count} instances")
        folders.append(final)
    if failed:
        first = failed[0][1]
        raise PacsError(f"{len(failed)} of {len(uids)} studies failed ({', '.join(u for u, _ in failed)}); first: "
                        f"{first} - {len(folders)} pulled into {out}; rerun with the same log for the rest",
                        endpoint.describe())
    return folders


def referenced_series(ds) -> list:
    """(study UID, series UID) of every source series a result file references (SEG / PM / SR evidence)."""
    out = []
    for item in ds.get("ReferencedSeriesSequence", []):
        out.append((str(ds.StudyInstanceUID), str(item.SeriesInstanceUID)))
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for item in study.get("ReferencedSeriesSequence", []):
            out.append((str(study.StudyInstanceUID), str(item.SeriesInstanceUID)))
    return list(dict.fromkeys(out))


_ORDER = {"SEG": 0, "RWV": 0, "OT": 0, "MR": 0, "CT": 0, "SR": 2}


def result_files(paths) -> list:
    """DICOM files under ``paths`` (files or folders), results ordered so referenced objects go first."""
    import pydicom

    files = []
    for p in map(Path, paths):
        candidates = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in candidates:
            if not q.exists():
                raise PacsError("no such file", str(q))
            try:
                ds = pydicom.dcmread(str(q), stop_before_pixels=True)
            except Exception:                       # noqa: BLE001 - not DICOM: skipped when inside a folder
                if p.is_dir():
                    continue
                raise PacsError("not a DICOM file", str(q))
            files.append((q, ds))
    files.sort(key=lambda fd: (_ORDER.get(str(fd[1].get("Modality", "")), 1), str(fd[0])))
    return files


def push(endpoint: Endpoint, paths, *, log=None, check_sources: bool = True, progress=print) -> dict:
    """Push result files after the pre-flight check; returns {"sent", "skipped", "total"}."""
    import pydicom

    files = result_files(paths)
    if not files:
        raise PacsError("no DICOM files to push", ", ".join(map(str, paths)))
    client = connect(endpoint)
    client.check()
    own = {(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)) for _, ds in files}
    if check_sources:
        missing = {}
        for path, ds in files:
            for ref in referenced_series(ds):
                if ref in own or ref in missing:
                    continue
                if not client.series_exists(*ref):
                    missing[ref] = path
        if missing:
            (study, series), path = next(iter(missing.items()))
            raise PacsError(f"the source series {series} (study {study}) that {path.name} references is not in the "
                            f"PACS; push the images first (nothing was sent)", endpoint.describe())
    log = ResumableLog(log, endpoint)
    todo = [(p, h) for p, h in files if not log.done("push", str(h.SOPInstanceUID))]
    skipped, sent = len(files) - len(todo), []

    def datasets():
        for path, _ in todo:
            yield path, pydicom.dcmread(str(path))

    def stored(path, ds):
        log.write("push", str(ds.SOPInstanceUID), "done", file=str(path), modality=str(ds.get("Modality", "")),
                  study=str(ds.StudyInstanceUID), series=str(ds.SeriesInstanceUID))
        sent.append(path)
        _say(progress, f"[{skipped + len(sent)}/{len(files)}] sent {path.name} ({ds.get('Modality', '')})")

    try:
        client.store_many(datasets(), stored)
    except PacsError as exc:
        failed = todo[len(sent)][0] if len(sent) < len(todo) else None
        log.write("push", str(todo[len(sent)][1].SOPInstanceUID) if failed else "", "failed", file=str(failed),
                  error=str(exc))
        raise PacsError(f"{exc} - {skipped + len(sent)} of {len(files)} files are in the PACS (log: "
                        f"{log.path or 'none'}); fix and rerun to send the rest") from exc
    sent = len(sent)
    return {"sent": sent, "skipped": skipped, "total": len(files)}
