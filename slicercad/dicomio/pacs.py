"""The user's PACS over DICOMweb (QIDO-RS / WADO-RS / STOW-RS, dicomweb-client, basic or bearer auth) or DIMSE
(C-ECHO / C-FIND / C-GET / C-STORE, pynetdicom - imported inside the functions: Slicer does not bundle it).

``pull`` fetches studies (by UID, a UID list or a query) into ``OUT/<StudyInstanceUID>/``: each study is
retrieved into a hidden ``.partial-*`` folder and renamed when complete, so a folder that exists is whole.
``push`` sends result files (SEG, SR, Parametric Map ...) after a pre-flight check - the PACS answers, and every
source series a result references is in it - so a known problem sends nothing. Each instance is logged (JSONL,
fsync'd) only once the PACS confirmed it; a rerun with the same log skips what went and resumes the rest.
Nothing is downloaded from anywhere but the PACS the user names.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

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

    def describe(self) -> str:
        return self.url if self.protocol == "dicomweb" else f"{self.called_aet}@{self.host}:{self.port} (DIMSE)"


def parse_endpoint(text: str, *, username=None, password=None, token=None, calling_aet: str = "SLICERCAD",
                   timeout: float = 30.0) -> Endpoint:
    """'http(s)://host:port/dicom-web' (DICOMweb) or 'dimse://AET@host:port' / 'AET@host:port' (DIMSE).
    Credentials default to $SLICERCAD_PACS_USER / $SLICERCAD_PACS_PASSWORD / $SLICERCAD_PACS_TOKEN."""
    username = username or os.environ.get(ENV_USER) or None
    password = password or os.environ.get(ENV_PASSWORD) or None
    token = token or os.environ.get(ENV_TOKEN) or None
    text = str(text).strip()
    if text.startswith(("http://", "https://")):
        return Endpoint("dicomweb", url=text.rstrip("/"), username=username, password=password, token=token,
                        calling_aet=calling_aet, timeout=timeout)
    rest = text[len("dimse://"):] if text.startswith("dimse://") else text
    if "@" not in rest or ":" not in rest.split("@", 1)[1]:
        raise PacsError("expected http(s)://host:port/dicom-web or dimse://AET@host:port", text)
    aet, hostport = rest.split("@", 1)
    host, port = hostport.rsplit(":", 1)
    if not aet or len(aet) > 16 or not port.isdigit():
        raise PacsError("a DIMSE address needs an AE title (1-16 characters) and a numeric port", text)
    return Endpoint("dimse", host=host, port=int(port), called_aet=aet, calling_aet=calling_aet,
                    username=username, password=password, token=token, timeout=timeout)


def connect(endpoint: Endpoint):
    """A client (``DicomWebPacs`` or ``DimsePacs``) for the endpoint."""
    return DicomWebPacs(endpoint) if endpoint.protocol == "dicomweb" else DimsePacs(endpoint)


def _study_row(ds) -> dict:
    return {k: str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "PatientID", "StudyDate",
                                                  "StudyDescription", "AccessionNumber")}


# ---------------------------------------------------------------------------------------------- DICOMweb
class DicomWebPacs:
    def __init__(self, endpoint: Endpoint):
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.endpoint = endpoint
        session = requests.Session()
        if endpoint.token:
            session.headers["Authorization"] = f"Bearer {endpoint.token}"
        elif endpoint.username:
            session.auth = (endpoint.username, endpoint.password or "")
        self.session = session
        self.client = DICOMwebClient(url=endpoint.url, session=session, timeout=endpoint.timeout)

    def _call(self, what: str, fn, *args, **kwargs):
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise PacsError(f"PACS unreachable ({type(exc).__name__}); check the address and the network",
                            self.endpoint.describe()) from exc
        except requests.exceptions.Timeout as exc:
            raise PacsError(f"PACS did not answer within {self.endpoint.timeout:g} s", self.endpoint.describe()) \
                from exc
        except requests.exceptions.HTTPError as exc:
            code = getattr(exc.response, "status_code", None)
            if code in (401, 403):
                raise PacsError(f"{what}: the PACS refused the credentials (HTTP {code}); set {ENV_USER}/"
                                f"{ENV_PASSWORD} or {ENV_TOKEN}", self.endpoint.describe()) from exc
            raise PacsError(f"{what}: the PACS answered HTTP {code}", self.endpoint.describe()) from exc

    def check(self) -> None:
        """One QIDO request without dicomweb-client's retries, so an unreachable PACS is said at once."""
        def probe():
            resp = self.session.get(f"{self.endpoint.url}/studies", params={"limit": "1"},
                                    headers={"Accept": "application/dicom+json"}, timeout=self.endpoint.timeout)
            resp.raise_for_status()

        self._call("query", probe)

    def find_studies(self, query: dict) -> list:
        from pydicom.dataset import Dataset

        rows = self._call("query", self.client.search_for_studies, search_filters=dict(query or {}),
                          get_remaining=True)
        return [_study_row(Dataset.from_json(r)) for r in rows]

    def series_exists(self, study_uid: str, series_uid: str) -> bool:
        rows = self._call("query", self.client.search_for_series, study_instance_uid=study_uid,
                          search_filters={"SeriesInstanceUID": series_uid})
        return bool(rows)

    def study_exists(self, study_uid: str) -> bool:
        return bool(self._call("query", self.client.search_for_studies,
                               search_filters={"StudyInstanceUID": study_uid}))

    def retrieve_study(self, study_uid: str, folder: Path, progress=None) -> int:
        n = 0
        for ds in self._call("retrieve", self.client.iter_study, study_uid):
            _save_instance(ds, folder)
            n += 1
        return n

    def store_many(self, items, on_stored) -> None:
        """STOW-RS each (path, dataset) in turn; ``on_stored(path, ds)`` once the PACS confirmed it."""
        for path, ds in items:
            self.store(ds)
            on_stored(path, ds)

    def store(self, ds) -> None:
        response = self._call("store", self.client.store_instances, [ds])
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"the PACS refused instance {ds.SOPInstanceUID} (failure reason {reason})",
                            self.endpoint.describe())


# ---------------------------------------------------------------------------------------------- DIMSE
class DimsePacs:
    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    def _associate(self, contexts, roles=None, handlers=None):
        from pynetdicom import AE

        ae = AE(ae_title=self.endpoint.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.endpoint.timeout
        for context in contexts:
            if isinstance(context, tuple):
                ae.add_requested_context(*context)
            else:
                ae.add_requested_context(context)
        assoc = ae.associate(self.endpoint.host, self.endpoint.port, ae_title=self.endpoint.called_aet,
                             ext_neg=roles or [], evt_handlers=handlers or [])
        if not assoc.is_established:
            why = "rejected the association (check the AE titles)" if assoc.is_rejected else \
                "is unreachable or aborted the association"
            raise PacsError(f"the PACS {why}", self.endpoint.describe())
        return assoc

    def check(self) -> None:
        from pynetdicom.sop_class import Verification

        assoc = self._associate([Verification])
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if not status or status.Status != 0:
            raise PacsError("C-ECHO failed", self.endpoint.describe())

    def _find(self, level: str, keys: dict) -> list:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        query = Dataset()
        query.QueryRetrieveLevel = level
        for k in ("StudyInstanceUID", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber"):
            setattr(query, k, "")
        if level == "SERIES":
            query.SeriesInstanceUID = ""
        for k, v in keys.items():
            setattr(query, k, v)
        assoc = self._associate([FIND])
        out = []
        try:
            for status, identifier in assoc.send_c_find(query, FIND):
                if status is None:
                    raise PacsError("C-FIND: the association ended without an answer", self.endpoint.describe())
                if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                    out.append(identifier)
                elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                    raise PacsError(f"C-FIND failed with status 0x{status.Status:04X}", self.endpoint.describe())
        finally:
            assoc.release()
        return out

    def find_studies(self, query: dict) -> list:
        return [_study_row(ds) for ds in self._find("STUDY", dict(query or {}))]

    def study_exists(self, study_uid: str) -> bool:
        return bool(self._find("STUDY", {"StudyInstanceUID": study_uid}))

    def series_exists(self, study_uid: str, series_uid: str) -> bool:
        return bool(self._find("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}))

    def retrieve_study(self, study_uid: str, folder: Path, progress=None) -> int:
        from pydicom.dataset import Dataset
        from pynetdicom import StoragePresentationContexts, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

        received = []

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            _save_instance(ds, folder)
            received.append(str(ds.SOPInstanceUID))
            return 0x0000

        storage = [c.abstract_syntax for c in StoragePresentationContexts][:127]  # 128 contexts at most
        roles = [build_role(uid, scp_role=True) for uid in storage]
        assoc = self._associate([GET] + storage, roles, [(evt.EVT_C_STORE, on_store)])
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        failed = 0
        try:
            for status, identifier in assoc.send_c_get(query, GET):
                if status is None:
                    raise PacsError("C-GET: the association ended without an answer", self.endpoint.describe())
                if status.Status not in (0x0000, 0xFF00, 0xB000):
                    raise PacsError(f"C-GET of study {study_uid} failed with status 0x{status.Status:04X}",
                                    self.endpoint.describe())
                failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
        finally:
            assoc.release()
        if failed:
            raise PacsError(f"C-GET of study {study_uid}: {failed} instance(s) failed", self.endpoint.describe())
        return len(received)

    def store_many(self, items, on_stored) -> None:
        """C-STORE (path, dataset) pairs over as few associations as the 128-context limit allows;
        ``on_stored(path, ds)`` after each confirmed instance."""
        items = list(items)
        while items:
            contexts, batch = {}, []
            for path, ds in items:
                key = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                if key not in contexts and len(contexts) >= 120:
                    break
                contexts[key] = True
                batch.append((path, ds))
            items = items[len(batch):]
            by_class = {}
            for sop_class, transfer in contexts:
                by_class.setdefault(sop_class, []).append(transfer)
            assoc = self._associate([(c, t) for c, t in by_class.items()])
            try:
                for path, ds in batch:
                    self._check_status(ds, assoc.send_c_store(ds))
                    on_stored(path, ds)
            finally:
                if assoc.is_established:
                    assoc.release()

    def _check_status(self, ds, status) -> None:
        if status is None or "Status" not in status:
            raise PacsError(f"C-STORE of {ds.SOPInstanceUID}: no answer (association ended)",
                            self.endpoint.describe())
        if status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
            raise PacsError(f"the PACS refused instance {ds.SOPInstanceUID} (C-STORE status 0x{status.Status:04X})",
                            self.endpoint.describe())

    def store(self, ds) -> None:
        self.store_many([(None, ds)], lambda *_: None)


# ---------------------------------------------------------------------------------------------- shared
def _save_instance(ds, folder: Path) -> Path:
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
    study folders. Studies already logged as done (or present as whole folders) are skipped."""
    client = connect(endpoint)
    client.check()
    uids = resolve_studies(client, study_uids, query)
    log = ResumableLog(log, endpoint)
    out = Path(out)
    folders = []
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
        except PacsError as exc:
            log.write("pull", uid, "failed", error=str(exc))
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if count == 0:
            shutil.rmtree(partial, ignore_errors=True)
            log.write("pull", uid, "failed", error="no instances")
            raise PacsError(f"study {uid}: the PACS sent no instances", endpoint.describe())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        log.write("pull", uid, "done", instances=count, folder=str(final))
        _say(progress, f"[{n}/{len(uids)}] {uid}: {count} instances")
        folders.append(final)
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
