"""Finding DICOM files and reading their headers, one clear line for each that fails.

Headers are read without pixel data, so opening a 500-slice folder costs a little I/O per
file and almost no memory; pixels are decoded later, one frame at a time, when shown.

A folder or a DICOMDIR may be hostile, so what is read is decided here:

- A path the reader opened is followed wherever it leads, a link included: they chose it.
- Inside an opened folder only what lies inside it is read. A link that leads out of it is
  reported, not followed; links to folders are never walked (the folder's own files are).
- A DICOMDIR's Referenced File IDs name files inside the DICOMDIR's folder. An absolute ID,
  one with ``..``, or one a link leads out of the folder is reported, not read.
- Only regular files are read, of bounded size and with bounded work (:mod:`dicom.reading`);
  a pipe, a device or a link loop is one line, and the other files go on.
- A header's pixel claim is checked against memory and the bytes present
  (:mod:`dicom.claims`) before anything is decoded.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pydicom.config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom.claims import check_claim
from dicom.errors import DicomReadError, one_line, printable
from dicom.reading import MAX_HEADER_BYTES, BoundedFile, open_regular, os_reason, read_bounded

__all__ = ["DicomReadError", "Header", "ReadError", "one_line", "read_header", "read_headers"]

# pydicom logs what it finds odd in a file, values included; patient data never goes to logs.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)
# A viewer shows what it can of imperfect files: values that break a VR's rules are kept as
# they are, without a warning each time one is read (pydicom converts values lazily, on access).
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

#: Deepest nesting of sequences a header may have; image headers nest a few levels at most.
MAX_SEQUENCE_DEPTH = 32
#: Values larger than this that are no sequence are not converted when a header is read.
MAX_SETTLED_BYTES = 2**20

#: The Media Storage Directory SOP Class: a DICOMDIR, an index of other files.
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

LEAVES_FOLDER = "a link leading outside the opened folder; open the link itself to read it"
LEAVES_DICOMDIR = "a link leading outside the DICOMDIR's folder; not read"


@dataclass(frozen=True)
class ReadError:
    """A file that could not be used, and why, in one line a reader understands."""

    path: Path
    error: str


def read_header(path: Path) -> Dataset:
    """Read everything but the pixel data; raise ``DicomReadError`` if this is no DICOM image.

    Files without the 128-byte preamble (older or hand-made ones) are read again leniently,
    and kept as DICOM only when they name a SOP class, a modality or an image size, so that
    random bytes are not taken for DICOM. Reader warnings about sloppy encoding stay quiet:
    the reader either gets a usable header or a one-line reason.
    """
    try:
        with open_regular(path) as file:
            dataset, available = _read_header(file)
    except MemoryError:
        raise DicomReadError("not enough memory to read this header") from None
    settle(dataset)
    settle(getattr(dataset, "file_meta", Dataset()))
    if is_dicomdir(dataset):
        return dataset
    if "Rows" not in dataset or "Columns" not in dataset:
        name = printable(getattr(dataset.get("SOPClassUID"), "name", "") or "unknown kind")
        raise DicomReadError(f"no image in this DICOM file ({name if len(name) <= 80 else name[:77] + '...'})")
    check_claim(dataset, available)
    return dataset


def _read_header(file: BoundedFile) -> tuple[Dataset, int]:
    """The header, and how many bytes follow it: the most its pixel data can hold.

    Reading it may take at most :data:`~dicom.reading.MAX_HEADER_BYTES` and
    :data:`~dicom.reading.MAX_READS` reads, whatever the file claims.
    """
    file.limit("the header", max_bytes=MAX_HEADER_BYTES)
    return _parse_header(file)


def _parse_header(file: BoundedFile) -> tuple[Dataset, int]:
    """pydicom's reading of the header, strict first and then lenient; one line if neither works."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                return read_bounded(file, stop_before_pixels=True, force=False)
            except InvalidDicomError:
                file.seek(0)
                dataset, available = read_bounded(file, stop_before_pixels=True, force=True)
                if not any(keyword in dataset for keyword in ("SOPClassUID", "Modality", "Rows")):
                    raise DicomReadError("not a DICOM file") from None
                return dataset, available
        except (DicomReadError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - a broken file may raise anything
            raise DicomReadError(f"unreadable DICOM header: {one_line(error)}") from None


def settle(dataset: Dataset, depth: int = 0) -> None:
    """Convert every element now, dropping those that cannot be; refuse sequences nested too deep.

    pydicom converts an element's bytes on first use, and a hostile value (an unknown VR, a
    length that fits no value) would then raise wherever that happens: in the viewer, an
    export, a batch. Converted once here, a broken element is simply missing. Nesting deeper
    than :data:`MAX_SEQUENCE_DEPTH` is refused: no image comes near it, and code that walks a
    header recursively (copying it for an export) would run out of stack. Large values that
    are no sequence stay as read (see :func:`left_as_read`).
    """
    if depth > MAX_SEQUENCE_DEPTH:
        raise DicomReadError(f"sequences nested more than {MAX_SEQUENCE_DEPTH} deep; not read")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag in list(dataset.keys()):
            try:
                if left_as_read(dataset.get_item(tag)):
                    continue
                element = dataset[tag]
            except Exception:  # noqa: BLE001 - whatever its bytes raise, the element is unusable
                del dataset[tag]
                continue
            if element.VR == "SQ":
                for item in element.value:
                    settle(item, depth + 1)


def left_as_read(element: DataElement | RawDataElement) -> bool:
    """True for a value over :data:`MAX_SETTLED_BYTES` that is no sequence: it stays bytes.

    Nothing here reads such values (overlays, private blobs), and converting a long numeric
    one would make a Python object of every number in it: a gigabyte for 64 MiB.
    """
    if not isinstance(element, RawDataElement) or element.value is None:
        return False
    vr = element.VR or dictionary_vr(element.tag)
    return len(element.value) > MAX_SETTLED_BYTES and vr != "SQ"


def dictionary_vr(tag: int) -> str | None:
    """The VR the data dictionary gives a tag, None for one it does not know (a private tag)."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def is_dicomdir(dataset: Dataset) -> bool:
    """True for a DICOMDIR, whose records point at the images."""
    meta = getattr(dataset, "file_meta", None)
    return (meta is not None and meta.get("MediaStorageSOPClassUID") == DICOMDIR_CLASS) or (
        "DirectoryRecordSequence" in dataset
    )


@dataclass(frozen=True)
class Candidate:
    """A path to read: the real folder it must lie in (None when the reader opened it), and
    whether a DICOMDIR named it rather than a folder walk finding it."""

    path: Path
    within: Path | None = None
    listed: bool = False

    def real_path(self) -> Path:
        """Where the path really leads; ``DicomReadError`` when that is missing or outside its folder."""
        real = real_path(self.path, missing="listed in the DICOMDIR but missing" if self.listed else None)
        if self.within is not None and not real.is_relative_to(self.within):
            raise DicomReadError(LEAVES_DICOMDIR if self.listed else LEAVES_FOLDER)
        return real


def real_path(path: Path, missing: str | None = None) -> Path:
    """The path with every link followed; ``DicomReadError`` for a loop or a missing target."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError as error:
        raise DicomReadError(missing or os_reason(error)) from None
    except OSError as error:
        raise DicomReadError(os_reason(error)) from None
    except ValueError as error:  # a NUL byte in the path
        raise DicomReadError(f"cannot open: {error}") from None


def dicomdir_files(path: Path, real: Path, dataset: Dataset) -> tuple[list[Candidate], list[ReadError]]:
    """The files a DICOMDIR (shown as ``path``, really at ``real``) references, bound to its real folder.

    A Referenced File ID is a relative path inside that folder, one component a value; those
    that are absolute or climb out with ``..`` are refused here, in one line however many
    there are, and one a link leads out of the folder is refused when it is read.
    """
    shown_root, real_root = path.parent, real.parent
    found: list[Candidate] = []
    outside: list[Any] = []
    for record in dataset.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = file_id_parts(file_id)
        if parts is None:
            outside.append(file_id)
        else:
            found.append(Candidate(shown_root.joinpath(*parts), real_root, listed=True))
    return found, [ReadError(path, names_outside(outside))] if outside else []


def names_outside(file_ids: list[Any]) -> str:
    """The one line for a DICOMDIR's file IDs that leave its folder, showing the first."""
    more = f", and {len(file_ids) - 1} more" if len(file_ids) > 1 else ""
    files = "a file" if len(file_ids) == 1 else f"{len(file_ids)} files"
    return f"names {files} outside its folder ({shown_id(file_ids[0])}{more}); not read"


def file_id_parts(file_id: Any) -> list[str] | None:
    """The path components of a Referenced File ID; None when it would leave its folder.

    Components are the value's parts; a ``/`` or ``\\`` inside one also separates, so that a
    component cannot smuggle a path in. Absolute IDs, ``..``, empty parts and NUL bytes are
    refused: none names a file inside the folder.
    """
    values = [file_id] if isinstance(file_id, str) else list(file_id)
    parts = [piece.strip() for value in values for piece in re.split(r"[\\/]", str(value))]
    if not parts or any(part in ("", ".", "..") or "\0" in part for part in parts):
        return None
    return parts


def shown_id(file_id: Any) -> str:
    """A Referenced File ID as one printable, short piece of text."""
    values = [file_id] if isinstance(file_id, str) else list(file_id)
    text = printable("\\".join(str(value) for value in values))
    return text if len(text) <= 80 else text[:77] + "..."


def walk_files(folder: Path, errors: list[ReadError] | None = None) -> Iterator[Path]:
    """Every entry below a folder that is not a folder, in a stable order, skipping hidden ones.

    Links are yielded, never walked into: where they may lead is decided by the caller. The
    walk keeps its own stack, so a folder nested thousands deep cannot exhaust Python's; a
    folder that cannot be listed is one error in ``errors``.
    """
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as error:
            if errors is not None:
                errors.append(ReadError(current, f"cannot list this folder: {os_reason(error)}"))
            continue
        folders = []
        for entry in entries:
            if _is_folder(entry):
                folders.append(Path(entry.path))
            else:
                yield Path(entry.path)
        stack.extend(reversed(folders))


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """A real folder, not a link to one; an entry that cannot be looked at is no folder."""
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


@dataclass(frozen=True, eq=False)
class Header:
    """A readable file and its header, before any pixel is decoded."""

    path: Path
    dataset: Dataset


def opened_candidates(paths: Iterable[Path | str], errors: list[ReadError]) -> list[Candidate]:
    """What the reader opened: files as they are, folders as the files inside them."""
    found: list[Candidate] = []
    for item in paths:
        path = Path(item)
        try:
            real = real_path(path)
        except DicomReadError as error:
            errors.append(ReadError(path, str(error)))
            continue
        if real.is_dir():
            found.extend(Candidate(file, real) for file in walk_files(path, errors))
        else:
            found.append(Candidate(path))
    return found


def read_headers(paths: Iterable[Path | str]) -> tuple[list[Header], list[ReadError]]:
    """Read the headers of files, folders (recursively) and DICOMDIRs.

    Each file is read once, however it was reached, and each path gets at most one line;
    DICOMDIRs met inside a folder are followed too, which costs nothing extra since their
    files are already in the folder.
    """
    headers: list[Header] = []
    errors: list[ReadError] = []
    looked_at: set[Path] = set()
    read: set[Path] = set()
    pending = deque(opened_candidates(paths, errors))
    while pending:
        candidate = pending.popleft()
        shown = Path(os.path.abspath(candidate.path))
        if shown in looked_at:
            continue
        looked_at.add(shown)
        try:
            real = candidate.real_path()
            if real in read or (real.is_dir() and not candidate.listed):
                continue  # read already, or a link to a folder inside the tree: walked already
            read.add(real)
            dataset = read_header(real)
        except DicomReadError as error:
            errors.append(ReadError(candidate.path, str(error)))
            continue
        if is_dicomdir(dataset):
            referenced, refused = dicomdir_files(candidate.path, real, dataset)
            errors.extend(refused)
            pending.extend(referenced)
            continue
        headers.append(Header(candidate.path, dataset))
    return headers, errors
