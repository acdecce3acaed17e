"""A private Orthanc for the tests: Debian's ``Orthanc`` with a temporary configuration and storage.

It answers on free ports of 127.0.0.1 only (HTTP refuses other hosts; DICOM lets unknown hosts
do nothing but C-ECHO), with the DICOMweb plugin on. Two modalities are registered, both at the
port our C-MOVE Storage SCP listens on: ``LIGHTBOX`` may do anything, ``NOGET`` is refused C-GET,
so that a retrieve as ``NOGET`` has to fall back to C-MOVE.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PLUGIN_FOLDERS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
DICOM_AET = "ORTHANC"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((str(path) for path in (Path("/usr/sbin/Orthanc"),) if path.exists()), None)


def dicomweb_plugin() -> Path | None:
    return next((path for folder in PLUGIN_FOLDERS for path in sorted(folder.glob("libOrthancDicomWeb.so*"))), None)


@dataclass
class Orthanc:
    """A running private Orthanc and how to reach it."""

    process: subprocess.Popen
    dicom_port: int
    http_port: int
    move_port: int
    log: Path

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"{DICOM_AET}@127.0.0.1:{self.dicom_port}"

    def get(self, path: str) -> object:
        answer = requests.get(f"{self.rest}{path}", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def find_instances(self, **query: str) -> list[dict]:
        """The instances Orthanc holds that match ``query`` (DICOM keywords), with their tags."""
        answer = requests.post(f"{self.rest}/tools/find", timeout=10,
                               json={"Level": "Instance", "Query": query, "Expand": True})
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_orthanc(folder: Path) -> Orthanc:
    """Start Orthanc in ``folder`` and wait until its REST API answers; RuntimeError when it does not."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    dicom_port, http_port, move_port = free_port(), free_port(), free_port()
    modality = {"Host": "127.0.0.1", "Port": move_port}
    config = {
        "Name": "LightboxTest", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": DICOM_AET, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": False, "UnknownSopClassAccepted": True,
        "DicomModalities": {"lightbox": {"AET": "LIGHTBOX", **modality},
                            "noget": {"AET": "NOGET", "AllowGet": False, **modality}},
        "Plugins": [str(plugin)] if plugin else [], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False, "StorageCompression": False, "DicomScpTimeout": 10, "HttpThreadsCount": 8,
        "DicomThreadsCount": 4,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    log = folder / "orthanc.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([binary, str(path)], stdout=output, stderr=subprocess.STDOUT)
    server = Orthanc(process, dicom_port, http_port, move_port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start: {log.read_text()[-2000:]}")
        try:
            server.get("/system")
            return server
        except requests.RequestException:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("Orthanc did not answer within 30 s")
