"""The text a reader expects in the image's corners and at its edges, from the DICOM header.

Who (patient), what (study, series), where in the series (image k of N, slice), the window in
use, and the patient directions at the four edges. No Qt: the view draws these lines, and the
exports may name the same things.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

from dicom.pixels import Voi, Window
from dicom.series import Frame


@dataclass(frozen=True)
class Orientation:
    """Patient directions at the four edges of the image, e.g. R / H / L / F for a PA chest."""

    left: str
    top: str
    right: str
    bottom: str


OPPOSITE = str.maketrans("LRAPHF", "RLPAFH")
#: Letters for the negative and positive ends of the patient axes x, y, z (DICOM's LPS).
AXIS_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))


def direction_letters(vector: np.ndarray) -> str:
    """The directions a unit vector points to, strongest first ("L", or "LP" when oblique)."""
    order = np.argsort(-np.abs(vector))
    return "".join(AXIS_LETTERS[i][int(vector[i] > 0)] for i in order if abs(vector[i]) > 0.25)


def orientation(frame: Frame) -> Orientation | None:
    """Edge labels from Image Orientation (Patient), else from Patient Orientation.

    The row direction points to the right edge and the column direction to the bottom;
    projection images only carry the letters, cross-sections the direction cosines.
    """
    cosines = frame.attribute("PlaneOrientationSequence", "ImageOrientationPatient")
    try:
        values = np.asarray([float(v) for v in cosines], dtype=np.float64)
    except (TypeError, ValueError):
        values = np.empty(0)
    if values.shape == (6,):
        right, bottom = direction_letters(values[:3]), direction_letters(values[3:])
    else:
        letters = frame.header.get("PatientOrientation")
        if not letters or len(letters) != 2:
            return None
        right, bottom = (str(v).upper() for v in letters)
    if not right or not bottom:
        return None
    return Orientation(right.translate(OPPOSITE), bottom.translate(OPPOSITE), right, bottom)


def dicom_date(value: object) -> str:
    """``20040119`` as ``2004-01-19``; anything else as it is."""
    text = str(value or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def dicom_time(value: object) -> str:
    """``153012.5`` as ``15:30``."""
    text = str(value or "")
    return f"{text[:2]}:{text[2:4]}" if len(text) >= 4 and text[:4].isdigit() else ""


def join(*parts: object) -> str:
    return "  ".join(str(p) for p in parts if p not in (None, ""))


def millimetres(value: object, template: str) -> str:
    """A length attribute through ``template``; empty when missing or malformed."""
    try:
        return template.format(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def patient_lines(header: Dataset) -> list[str]:
    """Who: name, ID, birth date and sex."""
    name = header.get("PatientName")
    name = PersonName(name).family_comma_given() if name else ""
    patient_id, birth, sex = header.get("PatientID"), header.get("PatientBirthDate"), header.get("PatientSex")
    details = join(f"DOB {dicom_date(birth)}" if birth else "", f"Sex {sex}" if sex else "")
    return [line for line in (name, f"ID {patient_id}" if patient_id else "", details) if line]


def study_lines(header: Dataset) -> list[str]:
    """What: study, date, series."""
    number = header.get("SeriesNumber")
    series = join(f"Se {number}" if number not in (None, "") else "", header.get("SeriesDescription", ""))
    lines = (
        header.get("InstitutionName", ""),
        header.get("StudyDescription", ""),
        join(dicom_date(header.get("StudyDate")), dicom_time(header.get("StudyTime"))),
        join(header.get("Modality", ""), series),
    )
    return [str(line) for line in lines if line]


def image_lines(frame: Frame, position: tuple[int, int]) -> list[str]:
    """Where in the series: image k/N, slice location and thickness, size."""
    k, n = position
    header = frame.header
    slab = join(
        millimetres(header.get("SliceLocation"), "Loc {:.1f} mm"),
        millimetres(header.get("SliceThickness"), "Thk {:g} mm"),
    )
    return [line for line in (f"Im {k + 1}/{n}", slab, f"{frame.columns} x {frame.rows}") if line]


def describe_voi(voi: Voi | None) -> str:
    """``W 400 L 40 Abdomen``, for the corner text and the status bar."""
    if voi is None:
        return ""
    return join(voi.describe(), voi.label if isinstance(voi, Window) else "")


def as_window(voi: Voi) -> Window:
    """A window to start dragging from; a VOI LUT becomes the window over its input range."""
    if isinstance(voi, Window):
        return voi
    size = len(voi.data)
    return Window(voi.first_mapped + (size - 1) / 2.0, float(size), voi.label, "LINEAR")
