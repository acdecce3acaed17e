"""Grouping headers into studies and series, and putting slices in anatomical order.

A series is a list of frames; a multi-frame file contributes one frame per frame it holds, so
the viewer pages through a cine loop or an enhanced CT exactly as through a folder of slices.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom.claims import as_int, frame_count
from dicom.files import Header, ReadError, read_headers


def frame_attribute(dataset: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute of one frame, wherever the file keeps it.

    Enhanced multi-frame files put per-frame values inside functional group macros (per frame
    first, then shared); classic files keep them at the top level.
    """
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    groups = []
    if per_frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return dataset.get(keyword)


@dataclass(frozen=True, eq=False)
class Frame:
    """One displayable 2D image: a frame of a file, with the file's header."""

    path: Path
    index: int
    header: Dataset

    @property
    def rows(self) -> int:
        return int(self.header.Rows)

    @property
    def columns(self) -> int:
        return int(self.header.Columns)

    def attribute(self, sequence: str, keyword: str) -> Any:
        """See :func:`frame_attribute`."""
        return frame_attribute(self.header, self.index, sequence, keyword)

    def pixel_spacing(self) -> tuple[float, float] | None:
        """Row and column spacing in mm, so that the view shows square millimetres.

        Pixel Spacing is at the patient; radiographs often only carry Imager Pixel Spacing, at
        the detector, which still gives the right aspect ratio.
        """
        spacing = self.attribute("PixelMeasuresSequence", "PixelSpacing")
        if spacing is None:
            spacing = self.header.get("ImagerPixelSpacing")
        try:
            row, column = (float(v) for v in spacing)
        except (TypeError, ValueError):
            return None
        return (row, column) if is_positive(row) and is_positive(column) else None

    def position_along_normal(self) -> float | None:
        """Distance of this slice along the normal of its plane, None when the file lacks it.

        A position that is not a finite number is as good as none: it cannot be sorted on.
        """
        orientation = self.attribute("PlaneOrientationSequence", "ImageOrientationPatient")
        position = self.attribute("PlanePositionSequence", "ImagePositionPatient")
        try:
            cosines = np.asarray([float(v) for v in orientation], dtype=np.float64)
            origin = np.asarray([float(v) for v in position], dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if cosines.shape != (6,) or origin.shape != (3,):
            return None
        with np.errstate(all="ignore"):  # huge or non-finite values end in NaN or infinity, refused below
            distance = float(np.dot(np.cross(cosines[:3], cosines[3:]), origin))
        return distance if math.isfinite(distance) else None

    def instance_number(self) -> int | None:
        """The InstanceNumber, the fallback order when positions are missing."""
        return as_int(self.header.get("InstanceNumber"))

    def label(self) -> str:
        """The file name, with the frame number for multi-frame files."""
        return self.path.name if frame_count(self.header) == 1 else f"{self.path.name} [{self.index + 1}]"


def is_positive(value: float) -> bool:
    """A usable spacing: finite and above zero (a NaN or infinite one would break the aspect ratio)."""
    return math.isfinite(value) and value > 0


@dataclass(eq=False)
class Series:
    """Frames that belong together, in display order."""

    uid: str
    number: int | None
    modality: str
    description: str
    frames: list[Frame] = field(default_factory=list)

    def title(self) -> str:
        """What the series browser shows under the thumbnail."""
        number = f"{self.number}: " if self.number is not None else ""
        name = self.description or self.modality or "Series"
        return f"{number}{name} ({len(self.frames)})"


@dataclass(eq=False)
class Study:
    """A patient's study: its series, ordered by series number."""

    uid: str
    description: str
    date: str
    patient_name: str
    patient_id: str
    series: list[Series] = field(default_factory=list)


@dataclass(eq=False)
class Collection:
    """What opening some paths gave: studies to show, and files that could not be used."""

    studies: list[Study]
    errors: list[ReadError]

    def all_series(self) -> list[Series]:
        """Every series, study by study."""
        return [series for study in self.studies for series in study.series]


def sort_frames(frames: list[Frame]) -> list[Frame]:
    """Anatomical order along the slice normal, else InstanceNumber, else file and frame order.

    Positions are only trusted when every frame has one and they are distinct; otherwise a
    stack sorted on them would interleave or collapse.
    """
    positions = [frame.position_along_normal() for frame in frames]
    if len(frames) > 1 and None not in positions and len(set(positions)) == len(frames):
        return [f for _, f in sorted(zip(positions, frames), key=lambda pair: pair[0])]
    numbers = [frame.instance_number() for frame in frames]
    if None not in numbers:
        return [f for _, f in sorted(zip(numbers, frames), key=lambda pair: (pair[0], str(pair[1].path), pair[1].index))]
    return sorted(frames, key=lambda f: (str(f.path), f.index))


def group_headers(headers: Iterable[Header]) -> list[Study]:
    """Group by Study and Series Instance UID; a file missing its UIDs stands alone."""
    studies: dict[str, Study] = {}
    series_by_uid: dict[tuple[str, str], Series] = {}
    for header in headers:
        ds = header.dataset
        study_uid = str(ds.get("StudyInstanceUID", "") or f"no-study:{header.path}")
        series_uid = str(ds.get("SeriesInstanceUID", "") or f"no-series:{header.path}")
        study = studies.get(study_uid)
        if study is None:
            study = Study(
                uid=study_uid,
                description=str(ds.get("StudyDescription", "") or ""),
                date=str(ds.get("StudyDate", "") or ""),
                patient_name=str(ds.get("PatientName", "") or ""),
                patient_id=str(ds.get("PatientID", "") or ""),
            )
            studies[study_uid] = study
        series = series_by_uid.get((study_uid, series_uid))
        if series is None:
            series = Series(
                uid=series_uid,
                number=as_int(ds.get("SeriesNumber")),
                modality=str(ds.get("Modality", "") or ""),
                description=str(ds.get("SeriesDescription", "") or ""),
            )
            series_by_uid[(study_uid, series_uid)] = series
            study.series.append(series)
        series.frames.extend(Frame(header.path, i, ds) for i in range(frame_count(ds)))
    for study in studies.values():
        for series in study.series:
            series.frames = sort_frames(series.frames)
        study.series.sort(key=lambda s: (s.number is None, s.number or 0))
    return by_patient(list(studies.values()))


def by_patient(studies: list[Study]) -> list[Study]:
    """Each patient's studies together, newest first as PACS lists them, patients in the order first met.

    The browser's patient > study tree and paging through series then go the same way.
    """
    first: dict[tuple[str, str], int] = {}
    for study in studies:
        first.setdefault((study.patient_id, study.patient_name), len(first))
    newest_first = sorted(studies, key=lambda study: study.date, reverse=True)
    return sorted(newest_first, key=lambda study: first[(study.patient_id, study.patient_name)])


def open_paths(paths: Iterable[Path | str]) -> Collection:
    """Read the headers under ``paths`` and group them; never raises for a bad file."""
    headers, errors = read_headers(paths)
    return Collection(group_headers(headers), errors)
