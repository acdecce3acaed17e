"""Query, retrieve and send over DIMSE against the private Orthanc, checked through its REST API."""

from __future__ import annotations

import dataclasses

from pydicom import dcmread

from pacs.cache import Cache
from pacs.dimse import DimseClient
from pacs.records import StudyQuery
from tests.pacs.conftest import PATIENT_ID, PATIENT_NAME, dimse_node


def test_verify_answers_in_one_line(orthanc):
    line = DimseClient(dimse_node(orthanc)).verify()
    assert line.startswith(f"{orthanc.dimse}: C-ECHO ok in ") and "\n" not in line


def test_study_query_by_each_filter(orthanc, studies):
    client = DimseClient(dimse_node(orthanc))
    for query in (StudyQuery(patient_id=PATIENT_ID), StudyQuery(patient_name="pacsfix"),
                  StudyQuery(date_range="20240101-20241231"), StudyQuery(modality="CT", accession="ACC42"),
                  StudyQuery(description="contrast")):
        found = client.find_studies(query)
        assert [study.study_instance_uid for study in found] == [studies["ct"]], query
    study = client.find_studies(StudyQuery(patient_id=PATIENT_ID))[0]
    assert (study.patient_name, study.study_date, study.modalities, study.instances) == (
        PATIENT_NAME, "20240115", ["CT"], 12)
    assert {study.study_instance_uid for study in client.find_studies(StudyQuery())} >= {studies["ct"], studies["dx"]}


def test_series_expansion_has_counts(orthanc, studies):
    series = DimseClient(dimse_node(orthanc)).find_series(studies["ct"])
    assert [(item.series_instance_uid, item.modality, item.instances) for item in series] == [
        (studies["ct_series"], "CT", 12)]


def test_c_get_streams_every_instance_into_the_cache(orthanc, studies, tmp_path):
    cache = Cache(tmp_path / "cache", 1 << 30)
    arrived = []
    result = DimseClient(dimse_node(orthanc)).retrieve(cache, studies["ct"], on_instance=arrived.append)
    assert (result.kept, result.failed, result.method, result.cancelled) == (12, 0, "C-GET", False)
    assert sorted(arrived) == cache.instances(studies["ct"])
    assert {str(dcmread(path).SeriesInstanceUID) for path in arrived} == {studies["ct_series"]}
    assert not list(cache.root.rglob("*.partial"))


def test_refused_c_get_falls_back_to_c_move(orthanc, studies, tmp_path):
    node = dataclasses.replace(dimse_node(orthanc), calling_ae="NOGET")
    cache = Cache(tmp_path / "cache", 1 << 30)
    result = DimseClient(node, move_port=orthanc.move_port).retrieve(cache, studies["dx"])
    assert (result.kept, result.method) == (1, "C-MOVE")
    assert len(cache.instances(studies["dx"])) == 1
