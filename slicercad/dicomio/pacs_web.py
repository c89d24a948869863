"""The PACS over DICOMweb: QIDO-RS queries, WADO-RS study retrieval, STOW-RS stores (dicomweb-client, which
Slicer 5.12 bundles; HTTP basic or bearer authentication). Errors become ``PacsError`` naming the endpoint."""
from __future__ import annotations

import warnings
from pathlib import Path

from .pacs import ENV_PASSWORD, ENV_TOKEN, ENV_USER, Endpoint, PacsError, save_instance, study_row


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
        if (endpoint.token or endpoint.username) and endpoint.url.startswith("http://") and \
                not _loopback(endpoint.url):
            warnings.warn(f"credentials for {endpoint.url} go over plain http:// (readable on the network); use "
                          "https://", stacklevel=2)
        self.session = session
        self.client = DICOMwebClient(url=endpoint.url, session=session, timeout=endpoint.timeout)

    def _call(self, what: str, fn, *args, **kwargs):
        import requests
        import urllib3

        try:
            return fn(*args, **kwargs)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                urllib3.exceptions.HTTPError) as exc:
            raise PacsError(f"{what}: the connection broke off mid-answer ({type(exc).__name__})",
                            self.endpoint.describe()) from exc
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
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"{what}: {type(exc).__name__}: {exc}", self.endpoint.describe()) from exc

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
        return [study_row(Dataset.from_json(r)) for r in rows]

    def series_exists(self, study_uid: str, series_uid: str) -> bool:
        rows = self._call("query", self.client.search_for_series, study_instance_uid=study_uid,
                          search_filters={"SeriesInstanceUID": series_uid})
        return bool(rows)

    def study_exists(self, study_uid: str) -> bool:
        return bool(self._call("query", self.client.search_for_studies,
                               search_filters={"StudyInstanceUID": study_uid}))

    def retrieve_study(self, study_uid: str, folder: Path, progress=None) -> int:
        """WADO-RS the study into ``folder``; a connection lost while the answer streams is a PacsError."""
        def fetch():
            n = 0
            for ds in self.client.iter_study(study_uid):
                save_instance(ds, folder)
                n += 1
            return n

        return self._call("retrieve", fetch)

    def store_many(self, items, on_stored) -> None:
        """STOW-RS each (path, dataset) in turn; ``on_stored(path, ds)`` once the PACS confirmed it."""
        for path, ds in items:
            self.store(ds)
            on_stored(path, ds)

    def store(self, ds) -> None:
        """STOW-RS one instance; done only when the PACS lists it in its ReferencedSOPSequence."""
        response = self._call("store", self.client.store_instances, [ds])
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"the PACS refused instance {ds.SOPInstanceUID} (failure reason {reason})",
                            self.endpoint.describe())
        stored = {str(i.get("ReferencedSOPInstanceUID", "")) for i in
                  (response.get("ReferencedSOPSequence") or [] if response is not None else [])}
        if str(ds.SOPInstanceUID) not in stored:
            raise PacsError(f"the PACS did not confirm instance {ds.SOPInstanceUID} (not in its "
                            f"ReferencedSOPSequence)", self.endpoint.describe())


def _loopback(url: str) -> bool:
    from urllib.parse import urlparse

    return (urlparse(url).hostname or "") in ("localhost", "127.0.0.1", "::1")
