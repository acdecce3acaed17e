"""A private Orthanc for the tests: Debian's ``Orthanc`` with a temporary configuration and storage.

It answers on free ports of 127.0.0.1 only (HTTP refuses other hosts; DICOM lets unknown hosts
do nothing but C-ECHO), with the DICOMweb plugin on. Two modalities are registered, both at the
port our C-MOVE Storage SCP listens on: ``LIGHTBOX`` may do anything, ``NOGET`` is refused C-GET,
so that a retrieve as ``NOGET`` has to fall back to C-MOVE.

Started with :class:`Certificates` (a throwaway CA and a server certificate signed by it, made by
the ``openssl`` command), it speaks DICOM over TLS only, and a :class:`Relay` puts HTTPS in front
of its HTTP: Debian 12's Orthanc 1.10.1, through its civetweb under OpenSSL 3, dies of a
segmentation fault on its first HTTPS request (``SslEnabled``), so the TLS end of HTTPS is ours
while every DICOMweb answer is still Orthanc's own. Its REST API stays plain HTTP for the checks.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
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


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost, as PEM files."""

    ca: Path
    certificate: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """Make a CA and a server certificate signed by it in ``folder`` with the ``openssl`` command."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    csr, certificate, key = folder / "server.csr", folder / "server.pem", folder / "server.key"

    def openssl(*arguments: str | Path) -> None:
        subprocess.run(["openssl", *map(str, arguments)], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Lightbox test CA",
            "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", extensions, "-out", certificate)
    return Certificates(ca, certificate, key)


def tls_settings(certificates: Certificates) -> dict:
    """Orthanc's settings for DICOM over TLS; our client presents no certificate of its own."""
    return {"DicomTlsEnabled": True, "DicomTlsCertificate": str(certificates.certificate),
            "DicomTlsPrivateKey": str(certificates.key), "DicomTlsTrustedCertificates": str(certificates.ca),
            "DicomTlsRemoteCertificateRequired": False}


class Relay:
    """Passes the connections it accepts on a free port to ``target`` on 127.0.0.1, and the answers back.

    With ``context`` it is the server end of TLS (HTTPS in front of Orthanc's HTTP). With ``budget``
    it passes that many bytes of answer, then holds every line open and silent: a PACS that stalls.
    """

    def __init__(self, target: int, context: ssl.SSLContext | None = None, budget: int | None = None) -> None:
        self.target, self.context, self.budget = target, context, budget
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.sockets.append(client)
        try:
            if self.context is not None:
                client = self.context.wrap_socket(client, server_side=True)
                self.sockets.append(client)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets.append(upstream)
            self._pass(client, upstream)
        except (OSError, ValueError):  # a client that refused our certificate, or a line closed under us
            client.close()

    def _pass(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both ways in one thread: an SSL socket must not read in one thread while another writes to it."""
        answered = 0
        while True:
            buffered = isinstance(client, ssl.SSLSocket) and client.pending()  # decrypted, unseen by select
            for source in [client] if buffered else select.select([client, upstream], [], [])[0]:
                data = source.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                if source is upstream and self.budget is not None:
                    if answered + len(data) > self.budget:
                        return  # silence: neither closed nor answered
                    answered += len(data)
                (upstream if source is client else client).sendall(data)

    def close(self) -> None:
        for item in self.sockets:
            item.close()


def https_relay(http_port: int, certificates: Certificates) -> Relay:
    """HTTPS on a free port in front of ``http_port``, with the server certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.certificate, certificates.key)
    return Relay(http_port, context)


@dataclass
class Orthanc:
    """A running private Orthanc and how to reach it; ``ca_file`` and ``https`` are set when it speaks TLS."""

    process: subprocess.Popen
    dicom_port: int
    http_port: int
    move_port: int
    log: Path
    ca_file: str = ""
    https: Relay | None = None

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_https(self) -> str:
        assert self.https is not None, "started without certificates"
        return f"https://127.0.0.1:{self.https.port}/dicom-web"

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
        if self.https is not None:
            self.https.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_orthanc(folder: Path, certificates: Certificates | None = None) -> Orthanc:
    """Start Orthanc in ``folder``, with DICOM TLS and HTTPS given ``certificates``, and wait until it answers.

    RuntimeError when it does not answer.
    """
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
        "DicomThreadsCount": 4, **(tls_settings(certificates) if certificates else {}),
    }
    path = folder / "orthanc.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    log = folder / "orthanc.log"
    # Debian's DCMTK leaves Nagle's algorithm on unless TCP_NODELAY says otherwise: each instance Orthanc
    # sends would wait 40 ms for a delayed acknowledgement, ten times the time it takes.
    with open(log, "wb") as output:
        process = subprocess.Popen([binary, str(path)], stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TCP_NODELAY": "1"})
    server = Orthanc(process, dicom_port, http_port, move_port, log)
    if certificates is not None:
        server.ca_file, server.https = str(certificates.ca), https_relay(http_port, certificates)
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
