"""Finding DICOM files and reading their headers, one clear line for each that fails.

Headers are read without pixel data, so opening a 500-slice folder costs a little I/O per
file and almost no memory; pixels are decoded later, one frame at a time, when shown.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

# pydicom logs what it finds odd in a file, values included; patient data never goes to logs.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)
# A viewer shows what it can of imperfect files: values that break a VR's rules are kept as
# they are, without a warning each time one is read (pydicom converts values lazily, on access).
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

#: The Media Storage Directory SOP Class: a DICOMDIR, an index of other files.
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class ReadError:
    """A file that could not be used, and why, in one line a reader understands."""

    path: Path
    error: str


class DicomReadError(Exception):
    """A file is not a DICOM image we can show; the message is one plain line."""


def one_line(error: BaseException) -> str:
    """Squash an exception into a single line without the traceback."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_header(path: Path) -> Dataset:
    """Read everything but the pixel data; raise ``DicomReadError`` if this is no DICOM image.

    Files without the 128-byte preamble (older or hand-made ones) are read again leniently,
    and kept as DICOM only when they name a SOP class, a modality or an image size, so that
    random bytes are not taken for DICOM. Reader warnings about sloppy encoding stay quiet:
    the reader either gets a usable header or a one-line reason.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                dataset = pydicom.dcmread(path, stop_before_pixels=True)
            except InvalidDicomError:
                dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                if not any(keyword in dataset for keyword in ("SOPClassUID", "Modality", "Rows")):
                    raise DicomReadError("not a DICOM file") from None
        except DicomReadError:
            raise
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - a broken file may raise anything
            raise DicomReadError(f"unreadable DICOM header: {one_line(error)}") from None
    if is_dicomdir(dataset):
        return dataset
    if "Rows" not in dataset or "Columns" not in dataset:
        name = getattr(dataset.get("SOPClassUID"), "name", "") or "unknown kind"
        raise DicomReadError(f"no image in this DICOM file ({name})")
    return dataset


def is_dicomdir(dataset: Dataset) -> bool:
    """True for a DICOMDIR, whose records point at the images."""
    meta = getattr(dataset, "file_meta", None)
    return (meta is not None and meta.get("MediaStorageSOPClassUID") == DICOMDIR_CLASS) or (
        "DirectoryRecordSequence" in dataset
    )


def dicomdir_files(path: Path, dataset: Dataset) -> list[Path]:
    """The files a DICOMDIR references, resolved against the folder it lies in."""
    root = path.parent
    found = []
    for record in dataset.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        found.append(root.joinpath(*parts))
    return found


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file below a folder, in a stable order, skipping hidden files and folders."""
    for current, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(current) / name


@dataclass(frozen=True, eq=False)
class Header:
    """A readable file and its header, before any pixel is decoded."""

    path: Path
    dataset: Dataset


def read_headers(paths: Iterable[Path | str]) -> tuple[list[Header], list[ReadError]]:
    """Read the headers of files, folders (recursively) and DICOMDIRs.

    Each file is read once, however it was reached; DICOMDIRs met inside a folder are
    followed too, which costs nothing extra since their files are already in the folder.
    """
    headers: list[Header] = []
    errors: list[ReadError] = []
    seen: set[Path] = set()
    pending: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            pending.extend(walk_files(path))
        elif path.exists():
            pending.append(path)
        else:
            errors.append(ReadError(path, "no such file or folder"))
    while pending:
        path = pending.pop(0)
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            dataset = read_header(path)
        except DicomReadError as error:
            errors.append(ReadError(path, str(error)))
            continue
        if is_dicomdir(dataset):
            referenced = dicomdir_files(path, dataset)
            errors.extend(ReadError(p, "listed in the DICOMDIR but missing") for p in referenced if not p.exists())
            pending.extend(p for p in referenced if p.exists())
            continue
        headers.append(Header(path, dataset))
    return headers, errors
