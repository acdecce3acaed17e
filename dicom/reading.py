"""Opening a file for pydicom: only regular files, of bounded size, read with bounded work.

Anything else a folder can hold is refused before a byte is read. A named pipe blocks the
reader until someone writes to it, and a device such as ``/dev/zero`` never ends; both are
told apart from regular files by ``stat`` before opening, and again after opening (without
blocking), so that a file swapped for a pipe in between is still refused.

Reads are bounded too: never past the size the file had when opened, and never beyond a
budget of bytes and of read calls. pydicom makes a read or two per element, so counting reads
bounds the work of parsing: the 64 MiB a header may take, if all zeros, parse as eight
million empty elements, half a minute of pydicom's time; a million reads stop them in a few
seconds. A deflated data set is inflated here, in 1 MiB steps up to a cap, and parsed under
the same budget; pydicom's own reader would inflate all of it at once, however much that is.

The limits, and why:

- :data:`MAX_FILE_BYTES` (4 GiB): a native Pixel Data value has a 32-bit length, so no image
  we can show needs a larger file.
- :data:`MAX_HEADER_BYTES` (64 MiB) and :data:`MAX_READS` (a million): the largest enhanced
  multi-frame headers (per-frame functional groups of ten thousand frames) take a few
  megabytes, and pydicom reads their sequences in a few hundred reads (it parses a sequence
  of known length only when it is used).
- :data:`MAX_INFLATED_BYTES` (256 MiB): deflate is used for small objects. Inflating this
  much takes about a second, and a file read whole holds it twice (inflated, and its pixel
  data) with a decoded frame, within :data:`~dicom.claims.MAX_WHOLE_READ_BYTES`.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zlib
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom.errors import DicomReadError, size_text

MiB = 2**20
GiB = 2**30

#: Largest regular file read at all.
MAX_FILE_BYTES = 4 * GiB
#: Most bytes reading a header (everything before the pixels) may take.
MAX_HEADER_BYTES = 64 * MiB
#: Most read calls reading a header, or a frame, may take: about one per element parsed.
MAX_READS = 1_000_000
#: Most bytes a deflated data set may inflate to.
MAX_INFLATED_BYTES = 256 * MiB

#: Reads up to this size are not cut to the file's end: they cannot allocate much.
_SMALL_READ = 2**16
#: Inflated bytes produced per step while inflating a deflated data set.
_INFLATE_STEP = 2**20
#: Pixel Data, Float Pixel Data and Double Float Pixel Data: where a header ends.
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

#: Opening flags that keep a named pipe from blocking the open and a terminal from becoming
#: ours; POSIX only (Windows has neither problem nor flag).
_NO_WAITING = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class BoundedFile(io.BufferedReader):
    """A regular file whose reads stop at its size when opened, and at a budget once one is set.

    pydicom asks for as many bytes as an element's length claims; a claim of 4 GiB in a small
    file is cut to what the file holds, and a budget turns too much reading into one line.
    """

    def __init__(self, raw: io.FileIO | io.BytesIO) -> None:
        super().__init__(raw)  # type: ignore[arg-type] - a BytesIO serves as raw stream too
        self.size = raw.seek(0, io.SEEK_END)
        raw.seek(0)
        self.name_of_reading = ""
        self.byte_budget: int | None = None
        self.read_budget: int | None = None
        self.bytes_read = 0
        self.reads = 0

    def limit(self, name: str, *, max_bytes: int | None = None, max_reads: int = MAX_READS) -> None:
        """From now on refuse more than ``max_bytes`` bytes or ``max_reads`` reads, calling them ``name``."""
        self.name_of_reading, self.byte_budget, self.read_budget = name, max_bytes, max_reads
        self.bytes_read = self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._clamped(size)
        self.bytes_read += wanted
        self.reads += 1
        if self.byte_budget is not None and self.bytes_read > self.byte_budget:
            raise DicomReadError(f"{self.name_of_reading} takes more than {size_text(self.byte_budget)}; not read")
        if self.read_budget is not None and self.reads > self.read_budget:
            raise DicomReadError(f"{self.name_of_reading} needs more than {self.read_budget} reads; not read")
        return super().read(wanted)

    def _clamped(self, size: int | None) -> int:
        """``size`` cut to what is left of the file; a small read needs no cutting (nor a ``tell``)."""
        if size is not None and 0 <= size <= _SMALL_READ:
            return size
        remaining = max(self.size - self.tell(), 0)
        return remaining if size is None or size < 0 else min(size, remaining)

    def read_unbudgeted(self, size: int) -> bytes:
        """Up to ``size`` bytes, outside the budget: for bytes that are not parsed."""
        return super().read(max(min(size, self.size - self.tell()), 0))


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def os_reason(error: OSError) -> str:
    """An operating-system error as a short reason, without the path it repeats."""
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    if error.errno == errno.ENOENT:
        return "no such file or folder"
    return f"cannot open: {error.strerror or type(error).__name__}"


def check_regular(mode: int, size: int) -> None:
    """Refuse anything but a regular file of at most :data:`MAX_FILE_BYTES`."""
    kind = file_kind(mode)
    if kind is not None:
        raise DicomReadError(f"not a regular file but {kind}; not read")
    if size > MAX_FILE_BYTES:
        raise DicomReadError(f"file too large: {size_text(size)}, more than {size_text(MAX_FILE_BYTES)}; not read")


def _open_regular_fd(path: str, flags: int) -> int:
    """Open without blocking (a pipe would block) and check what was opened, then close it or keep it."""
    fd = os.open(path, flags | _NO_WAITING)
    try:
        info = os.fstat(fd)
        check_regular(info.st_mode, info.st_size)
        if _NO_WAITING:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: Path) -> BoundedFile:
    """Open a regular file for reading; ``DicomReadError`` with one line for anything else.

    ``os.stat`` looks first, so a device is never opened (opening some has effects); the
    check after opening catches a file swapped in between.
    """
    try:
        info = os.stat(path)
        check_regular(info.st_mode, info.st_size)
        raw = io.FileIO(os.fspath(path), "rb", opener=_open_regular_fd)
    except OSError as error:
        raise DicomReadError(os_reason(error)) from None
    except ValueError as error:  # a path with a NUL byte
        raise DicomReadError(f"cannot open: {error}") from None
    return BoundedFile(raw)


def read_bounded(file: BoundedFile, *, stop_before_pixels: bool, force: bool) -> tuple[Dataset, int]:
    """pydicom's ``dcmread`` within the file's budget: the data set, and the bytes left after it.

    When reading stops before the pixels, what is left is where the pixel data lies: the
    most it can hold. A deflated data set is inflated here, with a cap, and parsed from memory
    under the same budget; pydicom would inflate all of it at once, however much that is.
    """
    start = file.tell()
    deflated = _transfer_syntax(file) == DeflatedExplicitVRLittleEndian
    file.seek(start)
    if deflated:
        return _read_deflated(file, stop_before_pixels=stop_before_pixels)
    dataset = pydicom.dcmread(file, stop_before_pixels=stop_before_pixels, force=force)
    return dataset, file.size - file.tell()


def at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    """pydicom's ``stop_when`` test for reading a header: stop at the pixels."""
    return tag in PIXEL_TAGS


def _transfer_syntax(file: BoundedFile) -> str | None:
    """The file meta's Transfer Syntax UID, None when there is none to read."""
    try:
        read_preamble(file, force=True)
        return _read_file_meta_info(file).get("TransferSyntaxUID")
    except DicomReadError:
        raise
    except Exception:  # noqa: BLE001 - no readable meta: the full read says why
        return None


def _read_deflated(file: BoundedFile, *, stop_before_pixels: bool) -> tuple[FileDataset, int]:
    """What pydicom does with a deflated file (PS3.5 A.5), with the inflating bounded."""
    preamble = read_preamble(file, force=True)
    file_meta = _read_file_meta_info(file)
    with BoundedFile(io.BytesIO(_inflate(file))) as body:
        body.limit(file.name_of_reading, max_bytes=file.byte_budget, max_reads=file.read_budget or MAX_READS)
        dataset = read_dataset(body, is_implicit_VR=False, is_little_endian=True,
                               stop_when=at_pixel_data if stop_before_pixels else None)
        left = body.size - body.tell()
    result = FileDataset(file.name, dataset, preamble, file_meta, is_implicit_VR=False, is_little_endian=True)
    result.set_original_encoding(False, True, dataset._character_set)  # as pydicom's own reader does
    return result, left


def _inflate(file: BoundedFile) -> bytes:
    """The rest of the file inflated, in 1 MiB steps; refused past :data:`MAX_INFLATED_BYTES`.

    The compressed bytes are outside the file's budget (they are not parsed); what they
    inflate to is parsed, under it.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pieces: list[bytes] = []
    total = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail or file.read_unbudgeted(_INFLATE_STEP)
        if not data:
            break
        try:
            pieces.append(inflater.decompress(data, _INFLATE_STEP))
        except zlib.error as error:
            raise DicomReadError(f"the deflated data set is corrupt: {error}") from None
        total += len(pieces[-1])
        if total > MAX_INFLATED_BYTES:
            raise DicomReadError(
                f"the deflated data set inflates to more than {size_text(MAX_INFLATED_BYTES)}; not read"
            )
    return b"".join(pieces)
