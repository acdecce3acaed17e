"""What a study query asks and what it answers, shared by the DIMSE and DICOMweb clients.

Both protocols answer with DICOM attributes (a C-FIND identifier, or QIDO-RS JSON read into a
pydicom Dataset), so one reader turns either into records. A PACS may leave attributes out or
fill them oddly: a missing or unreadable value becomes empty (or None for a count), never an
error, as long as the study's UID is there.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pydicom.dataset import Dataset

#: ``FROM-TO`` with either end open; dates as ``YYYYMMDD`` or ``YYYY-MM-DD``.
DATE_RANGE = re.compile(r"(?P<start>\d{4}-?\d{2}-?\d{2})?(?:(?P<dash>-)(?P<end>\d{4}-?\d{2}-?\d{2})?)?")
#: The attributes a study query asks to be returned.
STUDY_RETURN_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyTime", "ModalitiesInStudy",
                     "StudyDescription", "AccessionNumber", "NumberOfStudyRelatedSeries",
                     "NumberOfStudyRelatedInstances")
#: The attributes a series query asks to be returned.
SERIES_RETURN_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                      "NumberOfSeriesRelatedInstances")


@dataclass(frozen=True)
class StudyQuery:
    """The filters of a study search; empty ones match everything.

    Names match from their start (``Doe`` finds ``Doe^Jane``) unless they carry their own
    wildcards; a description matches anywhere in it.
    """

    patient_id: str = ""
    patient_name: str = ""
    date_range: str = ""
    modality: str = ""
    accession: str = ""
    description: str = ""

    def filters(self) -> dict[str, str]:
        """The DICOM matching keys these filters set, by keyword."""
        wanted = {"PatientID": self.patient_id, "PatientName": _wild(self.patient_name, "", "*"),
                  "StudyDate": self.date_range, "ModalitiesInStudy": self.modality.upper(),
                  "AccessionNumber": self.accession, "StudyDescription": _wild(self.description, "*", "*")}
        return {key: value for key, value in wanted.items() if value}


def _wild(text: str, before: str, after: str) -> str:
    """``text`` with wildcards around it, unless it has its own or is empty."""
    text = text.strip()
    return text if not text or any(mark in text for mark in "*?") else f"{before}{text}{after}"


def parse_date_range(text: str) -> str:
    """``FROM-TO`` (either end open, ``YYYYMMDD`` or ``YYYY-MM-DD``) as a DICOM range; ValueError otherwise."""
    match = DATE_RANGE.fullmatch(text.strip())
    if not text.strip() or match is None or not (match["start"] or match["end"]):
        raise ValueError(f"a date range is FROM-TO, FROM-, -TO or one date, as YYYYMMDD or YYYY-MM-DD; not {text!r}")
    start, end = (part.replace("-", "") if part else "" for part in (match["start"], match["end"]))
    if start and end and start > end:
        raise ValueError(f"the date range {text!r} ends before it starts")
    return f"{start}-{end}" if match["dash"] else start


@dataclass(frozen=True)
class Series:
    """One series of a study, with the number of its instances when the PACS says."""

    series_instance_uid: str
    modality: str
    number: int | None
    description: str
    instances: int | None


@dataclass(frozen=True)
class Study:
    """One study as the query window and ``pacs query --json`` show it."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    modalities: list[str]
    description: str
    accession: str
    series: int | None
    instances: int | None

    def as_json(self) -> dict:
        return asdict(self)


def text_of(dataset: Dataset, keyword: str) -> str:
    """An attribute as one line of text; empty when missing, empty or unreadable (without a warning)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns of each invalid value it reads
            value = dataset.get(keyword)
    except Exception:  # a value the PACS encoded wrongly: shown as missing
        return ""
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(item) for item in value)
    return " ".join(str(value).split())


def count_of(dataset: Dataset, keyword: str) -> int | None:
    """A count attribute as an int; None when missing or not a number."""
    text = text_of(dataset, keyword)
    return int(text) if text.isdigit() else None


def study_of(dataset: Dataset) -> Study | None:
    """A study from one query answer; None when it lacks a usable Study Instance UID."""
    uid = text_of(dataset, "StudyInstanceUID")
    if not uid:
        return None
    modalities = [part for part in text_of(dataset, "ModalitiesInStudy").split("\\") if part]
    return Study(study_instance_uid=uid, patient_id=text_of(dataset, "PatientID"),
                 patient_name=text_of(dataset, "PatientName"), study_date=text_of(dataset, "StudyDate"),
                 modalities=modalities, description=text_of(dataset, "StudyDescription"),
                 accession=text_of(dataset, "AccessionNumber"),
                 series=count_of(dataset, "NumberOfStudyRelatedSeries"),
                 instances=count_of(dataset, "NumberOfStudyRelatedInstances"))


def series_of(dataset: Dataset) -> Series | None:
    """A series from one query answer; None when it lacks a usable Series Instance UID."""
    uid = text_of(dataset, "SeriesInstanceUID")
    if not uid:
        return None
    return Series(series_instance_uid=uid, modality=text_of(dataset, "Modality"),
                  number=count_of(dataset, "SeriesNumber"), description=text_of(dataset, "SeriesDescription"),
                  instances=count_of(dataset, "NumberOfSeriesRelatedInstances"))


def records(answers: list[Dataset], read: Callable[[Dataset], Study | Series | None]) -> list:
    """Every answer ``read`` can make a record of, each UID once, in the PACS's order."""
    seen: dict[str, object] = {}
    for answer in answers:
        record = read(answer)
        if record is not None:
            uid = getattr(record, "study_instance_uid", None) or getattr(record, "series_instance_uid")
            seen.setdefault(uid, record)
    return list(seen.values())


@dataclass(frozen=True)
class Retrieved:
    """What a retrieve brought: instances kept (new or already cached), how, and how many the PACS failed."""

    kept: int
    failed: int
    method: str
    cancelled: bool = False


@dataclass(frozen=True)
class Sent:
    """One object sent: its file, whether the PACS took it, and a one-line reason."""

    path: str
    ok: bool
    message: str
