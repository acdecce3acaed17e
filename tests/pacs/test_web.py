"""Query, retrieve and send over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) against the private Orthanc."""

from __future__ import annotations

import dataclasses

from pacs.cache import Cache
from pacs.client import open_client
from pacs.nodes import Node, keep_password, parse_node
from pacs.records import StudyQuery
from pacs.web import WebClient
from tests.dicom_factory import write_radiograph
from tests.pacs.conftest import PATIENT_ID


def web_node(orthanc) -> Node:
    return Node(name="web", url=orthanc.dicomweb, timeout=10.0)


def test_qido_ping_and_study_search(orthanc, studies):
    client = WebClient(web_node(orthanc))
    assert client.verify().startswith(f"{orthanc.dicomweb}: QIDO-RS ok in ")
    found = client.find_studies(StudyQuery(patient_id=PATIENT_ID, modality="CT"))
    assert [(study.study_instance_uid, study.instances) for study in found] == [(studies["ct"], 12)]
    assert [item.instances for item in client.find_series(studies["ct"])] == [12]


def test_wado_rs_retrieves_a_series_into_the_cache(orthanc, studies, tmp_path):
    cache = Cache(tmp_path / "cache", 1 << 30)
    arrived = []
    result = WebClient(web_node(orthanc)).retrieve(cache, studies["ct"], studies["ct_series"],
                                                   on_instance=arrived.append)
    assert (result.kept, result.method) == (12, "WADO-RS")
    assert sorted(arrived) == cache.instances(studies["ct"])


def test_stow_rs_sends_and_orthanc_holds_it(orthanc, tmp_path):
    path = write_radiograph(tmp_path / "sent.dcm", rows=32, cols=32, extra={"PatientID": "PACS-STOW"})
    [sent] = WebClient(web_node(orthanc)).send([path])
    assert sent.ok, sent.message
    assert len(orthanc.find_instances(PatientID="PACS-STOW")) == 1


def test_password_comes_from_the_keyring_never_the_settings_file(orthanc, memory_keyring, settings_file):
    from pacs.nodes import PacsSettings, save_settings

    node = dataclasses.replace(web_node(orthanc), name="hospital", username="reader")
    keep_password(node, "s3cret-word")
    save_settings(PacsSettings(nodes=[node]))
    assert "s3cret-word" not in settings_file.read_text()
    client = open_client(parse_node("hospital"))
    assert client.client._session.auth == ("reader", "s3cret-word")
    assert client.verify()  # Orthanc has no authentication here: the password is simply sent
