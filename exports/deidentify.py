"""De-identified exports: what an exported object may take from its source, and nothing else.

PS3.15's Basic Application Level Confidentiality Profile (Table E.1-1) lists what has to go. A
list of what has to go is only as complete as the one who wrote it down: the data dictionary
knows some five thousand attributes, highdicom copies whole modules of the source into what it
builds (Patient, General Study, Patient Study, Clinical Trial Subject and Study, ...), and a
hostile file can fill any of them. Our own list of that kind missed admission, allergies,
alerts, reasons for visit, clinical trial identifiers and more.

So it is turned round. A de-identified object is built from a *new* header that holds only
the attributes in :data:`FROM_SOURCE`, each passed through the rule that says what the profile
lets us keep of it: a standard UID as it is, any other UID as a pseudonym, the Patient ID as a
pseudonym, the Type 2 names, dates and numbers the objects must have as empty values, and a few
coded facts about the pixels only when they hold one of their few allowed values. Nothing else
of the source — no other attribute, no sequence, no private tag, no overlay — reaches
highdicom, so nothing else can be copied, however the source was filled. Geometry is read from
the source by the exporter as numbers and orientation letters only.

PS3.15 options that apply. The Basic Profile, with the Clean Descriptors Option: the objects'
descriptions (series description, comments, derivation, content label) are written by us and
hold no patient data; none of the source's is carried. No Retain option applies: UIDs are
replaced by pseudonyms (consistent within one session), dates are emptied or replaced by a dummy
(Longitudinal Temporal Information Modified: REMOVED), and patient characteristics, device and
institution identity and private attributes are not carried at all. There is no Clean Pixel
Data: a source whose Burned In Annotation is YES is refused instead, for the DICOM objects, the
report and the PNG alike.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from exports.errors import ExportError

#: A per-process secret: UIDs map the same way within one session, and cannot be traced back.
UID_SECRET = secrets.token_hex(16)
#: What a refused export says, on the status bar and on stderr.
BURNED_IN_REFUSAL = "the source image has burned-in annotation, which cannot be de-identified"
#: Text of a de-identified object: ours only, so it may be any Unicode.
CHARACTER_SET = "ISO_IR 192"
#: Type 1 dates and times of ours that the profile replaces by a dummy (its "D" action).
DUMMY_DATES = {"ContentDate": "19000101", "ContentTime": "000000"}
#: Coded record of what was done (PS3.16 CID 7050).
DEIDENTIFICATION_CODES = (("113100", "Basic Application Confidentiality Profile"),
                          ("113105", "Clean Descriptors Option"))
DEIDENTIFICATION_METHOD = "PS3.15 Basic Profile, Clean Descriptors (Lightbox)"
#: Defined terms of Lossy Image Compression Method (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHODS = frozenset({"ISO_10918_1", "ISO_14495_1", "ISO_15444_1", "ISO_15444_15", "ISO_13818_2",
                           "ISO_14496_10", "ISO_23008_2", "ISO_21122_1"})

Rule = Callable[[Any], Any]


# --- the rules: what of one value may be kept


def uid(value: Any) -> str | None:
    """A UID of the standard (a SOP class) as it is; any other as its session pseudonym ("U")."""
    text = str(value or "").strip()
    if not text:
        return None
    return text if UID(text).keyword else pseudonymous_uid(text)


def patient_pseudonym(value: Any) -> str:
    """The Patient ID as a dummy that keeps one patient's exports together ("Z" allows a dummy).

    A missing ID stays empty: a pseudonym of nothing would make one patient of all who have none.
    """
    text = str(value or "").strip()
    return pseudonymous_patient_id(text) if text else ""


def emptied(_value: Any) -> str:
    """Present but empty: the profile's "Z" for a Type 2 attribute the object must carry."""
    return ""


def positive_integer(value: Any) -> int | None:
    """A count (rows, columns) as an integer above zero; anything else is left out."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def finite_numbers(value: Any) -> list[float] | None:
    """The value's numbers, when each is finite; None for text, NaN or infinity (left out)."""
    try:
        numbers = [float(v) for v in _values(value)]
    except (TypeError, ValueError):
        return None
    return numbers if numbers and all(math.isfinite(n) for n in numbers) else None


def one_of(*allowed: str) -> Rule:
    """A coded value kept only when it is one of ``allowed``: a code cannot then carry a name."""
    def rule(value: Any) -> str | None:
        text = str(value or "").strip().upper()
        return text if text in allowed else None

    return rule


#: Everything a de-identified object takes from its source, and how. Nothing else is read.
FROM_SOURCE: Mapping[str, Rule] = {
    # What the new objects are filed by and what they reference.
    "SOPClassUID": uid,
    "SOPInstanceUID": uid,
    "SeriesInstanceUID": uid,
    "StudyInstanceUID": uid,
    "FrameOfReferenceUID": uid,
    # The Type 2 patient and study attributes the objects must carry.
    "PatientID": patient_pseudonym,
    "PatientName": emptied,
    "PatientBirthDate": emptied,
    "PatientSex": emptied,
    "StudyDate": emptied,
    "StudyTime": emptied,
    "AccessionNumber": emptied,
    "StudyID": emptied,
    "ReferringPhysicianName": emptied,
    "PositionReferenceIndicator": emptied,
    # Facts about the pixels, each in a form that cannot carry a name.
    "Rows": positive_integer,
    "Columns": positive_integer,
    "Laterality": one_of("R", "L"),
    "ImageLaterality": one_of("R", "L"),
    "BurnedInAnnotation": one_of("YES", "NO"),
    "LossyImageCompression": one_of("00", "01"),
    "LossyImageCompressionRatio": finite_numbers,
    "LossyImageCompressionMethod": one_of(*LOSSY_METHODS),
}


def deidentified_source(header: Dataset) -> Dataset:
    """A new header holding only what :data:`FROM_SOURCE` allows, each value through its rule.

    Refuses a source with burned-in annotation: its pixels may carry a name.
    """
    refuse_burned_in(header)
    source = Dataset()
    source.SpecificCharacterSet = CHARACTER_SET
    for keyword, rule in FROM_SOURCE.items():
        value = rule(_read(header, keyword))
        if value is not None:
            setattr(source, keyword, value)
    return source


def _read(header: Dataset, keyword: str) -> Any:
    """A value of the source, None when absent or when pydicom cannot decode it."""
    try:
        return header.get(keyword)
    except (ValueError, TypeError, KeyError):
        return None


def _values(value: Any) -> list[Any]:
    """A value as the list of its values: none, one, or each of a multi-valued one."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return [value]


# --- burned-in annotation


def has_burned_in_annotation(header: Dataset) -> bool:
    """Whether the source says its pixels carry text (a name, a date): Burned In Annotation YES.

    Read leniently, as a hostile file writes it: any case, padded, or one of several values.
    """
    return any(str(v).strip().upper() == "YES" for v in _values(_read(header, "BurnedInAnnotation")))


def refuse_burned_in(header: Dataset) -> None:
    """:class:`ExportError` when de-identifying would copy text burned into the pixels."""
    if has_burned_in_annotation(header):
        raise ExportError(BURNED_IN_REFUSAL)


# --- pseudonyms


def pseudonymous_uid(value: str) -> UID:
    """A new UID for ``value``: the same within this process, unrelatable to it outside."""
    return generate_uid(entropy_srcs=[UID_SECRET, str(value)])


def pseudonymous_patient_id(patient_id: str) -> str:
    """A dummy Patient ID (the profile's "Z" allows one) that keeps one patient's exports together."""
    return "LB-" + pseudonymous_uid(f"patient:{patient_id}").split(".")[-1][-12:]


# --- the finished object


def mark_deidentified(dataset: Dataset) -> None:
    """Say in ``dataset`` what was done, and take the export's own dates out of it.

    The source's dates never reach the object; the ones left are when it was made, which still
    date the study. Type 1 ones become dummies, the others go (empty Type 2 ones stay empty).
    """
    _drop_own_dates(dataset)
    dataset.PatientIdentityRemoved = "YES"
    dataset.LongitudinalTemporalInformationModified = "REMOVED"
    dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
    items = []
    for value, meaning in DEIDENTIFICATION_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    dataset.DeidentificationMethodCodeSequence = items


def _drop_own_dates(dataset: Dataset) -> None:
    """Every non-empty date or time in ``dataset``, nested too: a dummy where Type 1, else removed."""
    for element in list(dataset):
        if element.VR == "SQ":
            for item in element.value:
                _drop_own_dates(item)
        elif element.VR in ("DA", "TM", "DT") and element.value not in (None, ""):
            if element.keyword in DUMMY_DATES:
                element.value = DUMMY_DATES[element.keyword]
            else:
                del dataset[element.tag]
