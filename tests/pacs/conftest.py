"""The private Orthanc the PACS tests speak to, with two studies loaded over C-STORE.

The tests skip, saying why, where Debian's ``orthanc`` and ``orthanc-dicomweb`` are not
installed (``scripts/setup`` installs them where it is root).
"""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from pacs.dimse import DimseClient
from pacs.nodes import Node
from tests.dicom_factory import write_ct_series, write_radiograph
from tests.pacs.orthanc import DICOM_AET, Orthanc, dicomweb_plugin, orthanc_binary, start_orthanc

PATIENT_NAME = "Pacsfixture^Alice"
PATIENT_ID = "PACS-0001"


def require_orthanc() -> None:
    """Skip, saying why, where Orthanc or its DICOMweb plugin is not installed."""
    if orthanc_binary() is None or dicomweb_plugin() is None:
        pytest.skip("Orthanc or its DICOMweb plugin is not installed (Debian: orthanc, orthanc-dicomweb; "
                    "scripts/setup installs them as root)")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Orthanc:
    require_orthanc()
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def dimse_node(orthanc: Orthanc, **options) -> Node:
    """Our node for the test Orthanc, over DIMSE."""
    return Node(name="test", ae_title=DICOM_AET, host="127.0.0.1", port=orthanc.dicom_port,
                **{"timeout": 10.0, **options})


@pytest.fixture(scope="session")
def studies(orthanc: Orthanc, tmp_path_factory) -> dict[str, str]:
    """A CT study of 12 slices and a chest radiograph, each of its own patient, stored into Orthanc."""
    folder = tmp_path_factory.mktemp("studies")
    ct = write_ct_series(folder / "ct", 12, rows=32, cols=32, study_uid="1.2.826.0.1.3680043.8.498.1001",
                         series_uid="1.2.826.0.1.3680043.8.498.1001.1",
                         extra={"PatientName": PATIENT_NAME, "PatientID": PATIENT_ID, "AccessionNumber": "ACC42",
                                "StudyDescription": "Chest CT with contrast", "StudyDate": "20240115"})
    xray = write_radiograph(folder / "dx.dcm", rows=64, cols=64, study_uid="1.2.826.0.1.3680043.8.498.2002",
                            extra={"PatientName": "Other^Bob", "PatientID": "PACS-0002", "StudyDate": "20230601",
                                   "StudyDescription": "Chest PA"})
    results = DimseClient(dimse_node(orthanc)).send([*ct, xray])
    assert all(result.ok for result in results), [result.message for result in results]
    return {"ct": "1.2.826.0.1.3680043.8.498.1001", "ct_series": "1.2.826.0.1.3680043.8.498.1001.1",
            "dx": "1.2.826.0.1.3680043.8.498.2002"}


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps passwords in memory: the tests never touch the user's own."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "pacs.json"
    monkeypatch.setenv("LIGHTBOX_PACS_SETTINGS", str(path))
    return path
