"""Source headers built to leak: every attribute a de-identified export might copy, filled with a marker.

A de-identified export must hold nothing of its source but what it needs, changed as PS3.15
asks. The way to test that is not to list what we know to be identifying, but to fill *every*
attribute pydicom's data dictionary knows with a recognisable value, nest a sequence item with
more of them under every sequence, add private tags and an overlay, and then look for any of
those values in what was written.

The attributes the image itself is read by (pixels, geometry, display) keep the factory's
values: the explanation needs a picture to explain.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.datadict import DicomDictionary, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

#: Found in every text value we plant; nothing we write ourselves contains it.
MARKER = "QXPHI"
#: Values planted in attributes whose VR cannot hold the marker text.
MARKED_VALUES = {"DA": "18880808", "TM": "131313", "DT": "18880808131313", "AS": "087Y", "DS": "87.125",
                 "IS": "8787", "FL": 87.125, "FD": 87.125, "US": 8787, "SS": 8787, "UL": 8787, "SL": 8787,
                 "UV": 8787, "SV": 8787}
#: Coded values a builder checks against its enumeration: planted valid, found by comparison.
ENUMERATED = {"PatientSex": "F"}
#: Planted UIDs start with this root: a leaked reference is found by it.
MARKED_UID_ROOT = "2.25.878787"
#: What the item planted under every sequence holds, each marked.
ITEM_ATTRIBUTES = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning", "LongCodeValue", "TextValue", "PersonName",
                   "Date", "Time", "DateTime", "UID", "ReferencedSOPInstanceUID", "InstitutionName",
                   "ContentCreatorName", "PatientID")
#: Groups never planted: command and file meta, directory records, pixel data and item delimiters.
SKIPPED_GROUPS = (0x0000, 0x0002, 0x0004, 0x7FE0, 0xFFFE)
#: What is left as the factory wrote it: the image is read by it, or highdicom would take the source
#: for a slide by it. None of it is patient data.
IMAGE_READ_BY = frozenset({
    "SpecificCharacterSet", "SOPClassUID", "Modality", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PlanarConfiguration", "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing", "ImageOrientationPatient",
    "ImagePositionPatient", "PatientOrientation", "SliceThickness", "RescaleSlope", "RescaleIntercept",
    "RescaleType", "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction",
    "PresentationLUTShape", "BurnedInAnnotation", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "SmallestImagePixelValue", "LargestImagePixelValue", "PixelAspectRatio", "FrameIncrementPointer",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "ModalityLUTSequence", "VOILUTSequence",
    "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "PixelDataProviderURL",
    "PixelPresentation", "FloatPixelPaddingValue", "DoubleFloatPixelPaddingValue", "IconImageSequence",
    "PresentationLUTSequence", "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "AlphaPaletteColorLookupTableDescriptor", "LossyImageCompression",
    "LossyImageCompressionRatio", "LossyImageCompressionMethod", "ImageOrientationSlide",
    "ImageCenterPointCoordinatesSequence", "TotalPixelMatrixOriginSequence",
})


def marked_value(keyword: str, vr: str, serial: int) -> object | None:
    """A value for ``keyword`` that can be recognised wherever it ends up; None for binary VRs."""
    text = f"{MARKER}-{keyword}"
    if keyword in ENUMERATED:
        return ENUMERATED[keyword]
    if vr in ("LO", "LT", "ST", "UT", "UC"):
        return text[:64]
    if vr in ("SH", "AE"):
        return text[:16]
    if vr == "CS":
        return f"{MARKER}{serial}"[:16]
    if vr == "PN":
        return f"{MARKER}^{keyword[:50]}"
    if vr == "UR":
        return f"http://{MARKER.lower()}.example/{keyword}"
    if vr == "UI":
        return f"{MARKED_UID_ROOT}{serial}"
    return MARKED_VALUES.get(vr)


def marked_item(depth: int = 1) -> Dataset:
    """A sequence item holding marked values, with one more level below it (nested sequences leak too)."""
    item = Dataset()
    for serial, keyword in enumerate(ITEM_ATTRIBUTES):
        vr = DicomDictionary[Tag(keyword)][0]
        setattr(item, keyword, marked_value(keyword, vr, 90000 + serial))
    if depth > 0:
        item.ContentSequence = Sequence([marked_item(depth - 1)])
    return item


def plantable() -> Iterator[tuple[int, str, str]]:
    """``(tag, keyword, VR)`` of every current (non-retired) attribute a source header may carry."""
    for tag, (vr, _vm, _name, retired, keyword) in sorted(DicomDictionary.items()):
        if retired or not keyword or Tag(tag).group in SKIPPED_GROUPS or keyword in IMAGE_READ_BY:
            continue
        yield tag, keyword, vr.split(" or ")[0]


def mark_everything(header: Dataset) -> dict[int, object]:
    """Fill every plantable attribute of ``header`` with a marked value; returns what was planted.

    Attributes already there are overwritten (the patient's name, the study's UIDs, ...), so the
    only values left from the factory are those the image is read by.
    """
    planted: dict[int, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CS and AE values break their VR's character set on purpose
        for serial, (tag, keyword, vr) in enumerate(plantable()):
            value = Sequence([marked_item()]) if vr == "SQ" else marked_value(keyword, vr, serial)
            if value is not None:
                header.add_new(tag, vr, value)
                planted[tag] = value
        header.add_new(0x00090010, "LO", f"{MARKER} private creator")
        header.add_new(0x00091011, "LO", f"{MARKER}-private")
        header.add_new(0x60000022, "LO", f"{MARKER}-OverlayDescription")
        header.add_new(0x60004000, "LT", f"{MARKER}-OverlayComments")
    return planted


def leaked_in(dataset: Dataset, planted: dict[int, object]) -> list[str]:
    """Where ``dataset`` holds a planted value, a marker or a planted UID: ``keyword = value``, nested too."""
    found = []
    for element in dataset.iterall():
        if element.VR == "SQ" or element.value is None:
            continue
        text = str(element.value)
        same = element.tag in planted and element.value == planted[element.tag] and element.value != ""
        marked_text = (MARKER, MARKED_UID_ROOT, MARKED_VALUES["DA"], MARKED_VALUES["TM"])
        if same or any(marked in text for marked in marked_text):
            found.append(f"{keyword_for_tag(element.tag) or element.tag} = {text[:60]}")
    return found


def reread(path: Path) -> Dataset:
    """A written file as pydicom reads it back, every value decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path)
        for element in dataset.iterall():
            element.value  # noqa: B018 - decoding each value is the point
    return dataset
