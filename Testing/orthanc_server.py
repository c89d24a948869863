"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) on free loopback ports for the PACS tests: a
throwaway storage folder, DICOMweb on, HTTP basic auth, this test's AE registered for C-GET/C-STORE and as the
C-MOVE destination on ``move_port`` (the port the client's storage SCP listens on)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
PLUGINS = Path("/usr/share/orthanc/plugins")
USER, PASSWORD = "slicercad", "test-only-password"
AET = "ORTHANCTEST"
CLIENT_AET = "SLICERCAD"


def free_port() -> int:
    """A free loopback port that is not Orthanc's default (8042 / 4242)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in (8042, 4242):
            return port


class Orthanc:
    def __init__(self, folder: Path, unknown_sop_classes: bool = True):
        """``unknown_sop_classes`` False: the DIMSE server refuses SOP classes it does not know (a C-STORE
        refusal a test can provoke)."""
        self.folder = Path(folder)
        self.unknown_sop_classes = unknown_sop_classes
        self.http_port, self.dicom_port = free_port(), free_port()
        self.move_port = free_port()            # our storage SCP for C-MOVE (registered below for CLIENT_AET)
        self.proc = None

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{AET}@127.0.0.1:{self.dicom_port}"

    def config(self) -> dict:
        return {"Name": "SlicerCAD test PACS", "StorageDirectory": str(self.folder / "db"),
                "IndexDirectory": str(self.folder / "db"), "HttpPort": self.http_port,
                "DicomPort": self.dicom_port, "DicomAet": AET, "RemoteAccessAllowed": False,
                "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
                "Plugins": [str(PLUGINS)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                "DicomModalities": {"slicercad": {"AET": CLIENT_AET, "Host": "127.0.0.1", "Port": self.move_port,
                                                  "AllowGet": True, "AllowStore": True, "AllowFind": True,
                                                  "AllowEcho": True, "AllowMove": True}},
                "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
                "UnknownSopClassAccepted": self.unknown_sop_classes, "StorageCompression": False, "HttpTimeout": 30,
                "StableAge": 1, "ConcurrentJobs": 1, "HttpThreadsCount": 4, "SaveJobs": False}

    def start(self, timeout: float = 90.0) -> "Orthanc":
        cfg = {k: v for k, v in self.config().items() if v is not None}
        path = self.folder / "orthanc.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg, indent=1))
        self.log = open(self.folder / "orthanc.log", "w")
        self.proc = subprocess.Popen([ORTHANC, str(path)], stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.folder)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}): "
                                   f"{(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not start in time")

    def get(self, route: str):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{route}")
        req.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()


def available() -> bool:
    return bool(ORTHANC) and (PLUGINS / "libOrthancDicomWeb.so").exists() and \
        os.access(ORTHANC, os.X_OK)
