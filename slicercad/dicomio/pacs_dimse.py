"""The PACS over DIMSE (pynetdicom, imported inside the methods: Slicer does not bundle it): C-ECHO, C-FIND,
C-GET or C-MOVE (to our own storage SCP on ``Endpoint.move_port``, bound to the address facing the PACS; it
refuses instances of any study but the one asked for), C-STORE over as few associations as the
128-presentation-context limit allows; a user (and password) goes as User Identity Negotiation. Errors become
``PacsError`` naming the endpoint."""
from __future__ import annotations

from pathlib import Path

from .pacs import Endpoint, PacsError, save_instance, study_row

# what we accept on retrieve: uncompressed, and the compressed syntaxes PACS keep CT / MR in (JPEG baseline and
# lossless, JPEG-LS, JPEG 2000); pydicom decodes them when its pixel handlers are present
RETRIEVE_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                     "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
                     "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5")


class DimsePacs:
    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    def _identity(self) -> list:
        """User Identity Negotiation (PS3.7 D.3.3.7): type 2 (user + password) or 1 (user only); none without
        a user."""
        from pynetdicom.pdu_primitives import UserIdentityNegotiation

        if not self.endpoint.username:
            return []
        item = UserIdentityNegotiation()
        item.user_identity_type = 2 if self.endpoint.password else 1
        item.primary_field = self.endpoint.username.encode()
        if self.endpoint.password:
            item.secondary_field = self.endpoint.password.encode()
        return [item]

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
                             ext_neg=list(roles or []) + self._identity(), evt_handlers=handlers or [])
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
        # return keys of this level only (PS3.4 C.4.1.2.1: a SERIES query holds the study's UID, no other
        # study attributes)
        returned = ("StudyInstanceUID", "SeriesInstanceUID", "Modality") if level == "SERIES" else \
            ("StudyInstanceUID", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber")
        for k in returned:
            setattr(query, k, "")
        for k, v in keys.items():
            setattr(query, k, v)
        assoc = self._associate([FIND])
        out = []
        try:
            for status, identifier in assoc.send_c_find(query, FIND):
                if status is None or "Status" not in status:
                    raise PacsError(f"C-FIND: the PACS ended the association without an answer (may AE title "
                                    f"{self.endpoint.calling_aet} query it?)", self.endpoint.describe())
                if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                    out.append(identifier)
                elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                    raise PacsError(f"C-FIND failed with status 0x{status.Status:04X}", self.endpoint.describe())
        finally:
            assoc.release()
        return out

    def find_studies(self, query: dict) -> list:
        return [study_row(ds) for ds in self._find("STUDY", dict(query or {}))]

    def study_exists(self, study_uid: str) -> bool:
        return bool(self._find("STUDY", {"StudyInstanceUID": study_uid}))

    def series_exists(self, study_uid: str, series_uid: str) -> bool:
        return bool(self._find("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}))

    def retrieve_study(self, study_uid: str, folder: Path, progress=None) -> int:
        """C-GET or C-MOVE (``endpoint.retrieve``) every instance of a study into ``folder``; returns the count."""
        from pydicom.dataset import Dataset

        received = []

        def on_store(event):
            ds = event.dataset
            if str(ds.get("StudyInstanceUID", "")) != study_uid:     # not what we asked for: refused
                return 0xC000
            ds.file_meta = event.file_meta
            save_instance(ds, folder)
            received.append(str(ds.SOPInstanceUID))
            return 0x0000

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        move = self.endpoint.retrieve == "move"
        responses = self._move(query, on_store) if move else self._get(query, on_store)
        what = "C-MOVE" if move else "C-GET"
        try:
            failed = self._check_retrieve(responses, what, study_uid)
        finally:
            responses.close()                       # releases the association (and stops our storage SCP)
        if failed:
            raise PacsError(f"{what} of study {study_uid}: {failed} instance(s) failed", self.endpoint.describe())
        return len(received)

    def _check_retrieve(self, responses, what: str, study_uid: str) -> int:
        """Walk C-GET / C-MOVE responses; returns the failed sub-operations of the last one."""
        failed = 0
        for status, _ in responses:
            if status is None or "Status" not in status:
                raise PacsError(f"{what}: the PACS ended the association without an answer (may AE title "
                                f"{self.endpoint.calling_aet} retrieve from it?)", self.endpoint.describe())
            if status.Status == 0xA801:
                raise PacsError(f"C-MOVE: the PACS does not know the move destination {self.endpoint.calling_aet}; "
                                f"register it there (AE title {self.endpoint.calling_aet}, this host, port "
                                f"{self.endpoint.move_port})", self.endpoint.describe())
            if status.Status not in (0x0000, 0xFF00, 0xB000):
                hint = "" if what != "C-MOVE" else (f" (can the PACS reach our storage SCP, AE title "
                                                    f"{self.endpoint.calling_aet}, port {self.endpoint.move_port}?)")
                raise PacsError(f"{what} of study {study_uid} failed with status 0x{status.Status:04X}{hint}",
                                self.endpoint.describe())
            failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
        return failed

    def _get(self, query, on_store):
        """C-GET responses (the instances come back as C-STOREs on the same association)."""
        from pynetdicom import StoragePresentationContexts, build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

        storage = [c.abstract_syntax for c in StoragePresentationContexts][:127]  # 128 contexts at most
        roles = [build_role(uid, scp_role=True) for uid in storage]
        assoc = self._associate([GET] + [(uid, list(RETRIEVE_SYNTAXES)) for uid in storage], roles,
                                [(evt.EVT_C_STORE, on_store)])
        try:
            yield from assoc.send_c_get(query, GET)
        finally:
            assoc.release()

    def _move(self, query, on_store):
        """C-MOVE responses; the PACS sends the instances to our storage SCP (``move_port``) meanwhile."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

        scp_ae = AE(ae_title=self.endpoint.calling_aet)
        for context in AllStoragePresentationContexts:
            scp_ae.add_supported_context(context.abstract_syntax, list(RETRIEVE_SYNTAXES))
        scp_ae.network_timeout = scp_ae.dimse_timeout = self.endpoint.timeout
        try:
            server = scp_ae.start_server((self.endpoint.listen_host, self.endpoint.move_port), block=False,
                                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
        except OSError as exc:
            raise PacsError(f"C-MOVE: cannot listen on port {self.endpoint.move_port} for the PACS's C-STOREs "
                            f"({exc})", f"{self.endpoint.listen_host}:{self.endpoint.move_port}") from exc
        try:
            assoc = self._associate([MOVE])
            try:
                yield from assoc.send_c_move(query, self.endpoint.calling_aet, MOVE)
            finally:
                assoc.release()
        finally:
            server.shutdown()

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
                    try:
                        status = assoc.send_c_store(ds)
                    except (ValueError, RuntimeError) as exc:     # e.g. the PACS accepted no context for it
                        raise PacsError(f"C-STORE of {ds.SOPInstanceUID} ({ds.SOPClassUID}): {exc}",
                                        self.endpoint.describe()) from exc
                    self._check_status(ds, status)
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
