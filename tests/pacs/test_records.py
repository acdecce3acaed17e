"""NODE parsing, date ranges and query answers with odd or missing attributes; no PACS needed."""

from __future__ import annotations

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pacs.errors import PacsError
from pacs.nodes import Node, PacsSettings, parse_node
from pacs.records import StudyQuery, parse_date_range, records, study_of


def test_node_forms():
    assert parse_node("PACS@10.0.0.5:11112", PacsSettings()).address() == "PACS@10.0.0.5:11112"
    assert parse_node("PACS@[::1]:104", PacsSettings(), calling_ae="ME").calling_ae == "ME"
    assert parse_node("https://pacs.example/dicom-web/", PacsSettings()).url == "https://pacs.example/dicom-web"
    named = Node(name="archive", ae_title="ARCH", host="pacs", port=104)
    assert parse_node("archive", PacsSettings(nodes=[named])) == named
    for text in ("archive", "PACS@host", "PACS@host:99999", "https://user:pw@pacs/dicom-web"):
        with pytest.raises(PacsError):
            parse_node(text, PacsSettings())


@pytest.mark.parametrize("text, dicom", [("20240101-20241231", "20240101-20241231"), ("2024-01-01-", "20240101-"),
                                         ("-20241231", "-20241231"), ("2024-03-05", "20240305")])
def test_date_ranges(text, dicom):
    assert parse_date_range(text) == dicom


@pytest.mark.parametrize("text", ["", "-", "2024", "20241231-20240101", "yesterday"])
def test_bad_date_ranges(text):
    with pytest.raises(ValueError):
        parse_date_range(text)


def test_filters_add_wildcards_only_where_none_are_given():
    assert StudyQuery(patient_name="Doe", description="chest").filters() == {
        "PatientName": "Doe*", "StudyDescription": "*chest*"}
    assert StudyQuery(patient_name="D?e^J*").filters() == {"PatientName": "D?e^J*"}


def test_odd_and_missing_attributes_become_empty_not_errors():
    bare = Dataset()
    bare.StudyInstanceUID = "1.2.3"
    odd = Dataset()
    odd.StudyInstanceUID = "1.2.4"
    # As a PACS sends it: raw bytes that pydicom only decodes (and fails to) when read.
    odd[0x00201208] = RawDataElement(Tag(0x00201208), "IS", 4, b"many", 0, True, True)
    odd.ModalitiesInStudy = ["CT", "", "SR"]
    odd[0x00080020] = RawDataElement(Tag(0x00080020), "DA", 4, b"2024", 0, True, True)
    odd.PatientName = "Odd^  Name\r\n"
    no_uid = Dataset()
    no_uid.PatientID = "X"
    found = records([bare, odd, no_uid, bare], study_of)
    assert [study.study_instance_uid for study in found] == ["1.2.3", "1.2.4"]
    assert (found[0].patient_name, found[0].modalities, found[0].instances) == ("", [], None)
    assert (found[1].instances, found[1].modalities, found[1].study_date, found[1].patient_name) == (
        None, ["CT", "SR"], "2024", "Odd^ Name")
