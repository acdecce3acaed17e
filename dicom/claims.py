"""What a header claims about its pixels, checked against a memory budget and the bytes present.

A header is a claim: Rows x Columns x frames at some bit depth. Decoders trust it when they
allocate, so a file of a few hundred bytes that claims 65535 x 65535 x 10,000 frames would end
in a ``MemoryError`` long after the damage is done. These checks run on the header alone,
before any pixel is read, and turn an impossible claim into one line.

The limits, and why:

- :data:`MAX_FRAME_BYTES` (256 MiB decoded): the pipeline keeps a few float64 copies of a
  frame, so one frame stays near 1 GiB at worst. The largest frames in radiology
  (mammography, about 45 MB) are far below it.
- :data:`MAX_FRAMES` (100,000): every frame becomes an object the viewer pages through and a
  batch explains; no real series comes near it.
- :data:`MAX_WHOLE_READ_BYTES` (1 GiB): a file that must be read whole to be decoded (no
  preamble, or deflated) is held in memory with its inflated data set and one decoded frame.
- A multi-frame file must hold the bytes its frames need: all of them for native pixels, at
  least an 8-byte item header a frame for compressed (encapsulated) ones. A single frame is
  left to the decoder, which reads only what is there and says why it fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicom.errors import DicomReadError, size_text

MiB = 2**20
GiB = 2**30

#: Most memory one decoded frame may take.
MAX_FRAME_BYTES = 256 * MiB
#: Most memory a file read whole (no preamble, or deflated) may take, with its decoded frame.
MAX_WHOLE_READ_BYTES = 1 * GiB
#: Most frames one file may have.
MAX_FRAMES = 100_000
#: An encapsulated frame needs at least one item: a 4-byte tag and a 4-byte length.
ITEM_HEADER_BYTES = 8


def as_int(value: Any) -> int | None:
    """An integer attribute's value, or None when it is missing, empty or malformed."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def frame_count(dataset: Dataset) -> int:
    """Number of frames in a file; a missing or broken value means one."""
    return max(as_int(dataset.get("NumberOfFrames")) or 1, 1)


def is_encapsulated(dataset: Dataset) -> bool:
    """True when the pixels are compressed in items; an unknown syntax counts as compressed.

    Compressed is the lenient choice: it asks the least of the bytes present, and a syntax no
    decoder knows fails on decoding anyway.
    """
    syntax = getattr(dataset, "file_meta", {}).get("TransferSyntaxUID")
    if not syntax:
        return False
    try:
        return UID(syntax).is_encapsulated
    except ValueError:
        return True


@dataclass(frozen=True)
class PixelClaim:
    """The pixel geometry a header claims; malformed values count as the smallest claim."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    frames: int
    photometric: str
    encapsulated: bool

    @classmethod
    def of(cls, dataset: Dataset) -> PixelClaim:
        """Read the claim off a header without touching its pixels."""
        return cls(
            rows=max(as_int(dataset.get("Rows")) or 0, 0),
            columns=max(as_int(dataset.get("Columns")) or 0, 0),
            samples=max(as_int(dataset.get("SamplesPerPixel")) or 1, 1),
            bits_allocated=max(as_int(dataset.get("BitsAllocated")) or 1, 1),
            frames=frame_count(dataset),
            photometric=str(dataset.get("PhotometricInterpretation", "") or "").upper(),
            encapsulated=is_encapsulated(dataset),
        )

    def frame_bytes(self) -> int:
        """Memory one decoded frame takes: whole bytes per sample, as decoders return them."""
        return self.rows * self.columns * self.samples * math.ceil(self.bits_allocated / 8)

    def stored_bytes(self) -> int:
        """Bytes native (uncompressed) pixels of every frame take in the file.

        1-bit data is packed across frames, and YBR_FULL_422 stores two samples a pixel, not three.
        """
        bits = self.rows * self.columns * self.samples * self.bits_allocated * self.frames
        if self.photometric == "YBR_FULL_422":
            bits = bits * 2 // 3
        return math.ceil(bits / 8)

    def least_bytes(self) -> int:
        """The fewest pixel bytes a file making this claim can hold."""
        return self.frames * ITEM_HEADER_BYTES if self.encapsulated else self.stored_bytes()

    def describe(self) -> str:
        """``512 x 512 pixels, 16 bits`` (with the samples when there are several)."""
        samples = f" x {self.samples} samples" if self.samples > 1 else ""
        return f"{self.columns} x {self.rows} pixels{samples}, {self.bits_allocated} bits"


def check_claim(dataset: Dataset, available: int) -> None:
    """Refuse a header whose pixels could not fit in memory or in the bytes after it.

    ``available`` is how many bytes follow the header: the most its pixel data can hold.
    """
    claim = PixelClaim.of(dataset)
    check_frame_size(claim)
    if claim.frames > MAX_FRAMES:
        raise DicomReadError(f"claims {claim.frames} frames, more than the {MAX_FRAMES} a file may have")
    if claim.frames > 1 and claim.least_bytes() > available:
        raise DicomReadError(
            f"claims {claim.frames} frames of {claim.describe()} but holds only {size_text(available)} "
            "of pixel data"
        )


def check_frame_size(claim: PixelClaim) -> None:
    """Refuse a frame that would take more than :data:`MAX_FRAME_BYTES` once decoded."""
    needed = claim.frame_bytes()
    if needed > MAX_FRAME_BYTES:
        raise DicomReadError(
            f"each frame would take {size_text(needed)} ({claim.describe()}), more than the "
            f"{size_text(MAX_FRAME_BYTES)} a frame may use"
        )


def check_whole_read(file_bytes: int, claim: PixelClaim) -> None:
    """Refuse to read a file whole when it and one decoded frame exceed :data:`MAX_WHOLE_READ_BYTES`."""
    needed = file_bytes + claim.frame_bytes()
    if needed > MAX_WHOLE_READ_BYTES:
        raise DicomReadError(
            f"cannot decode pixels: this file must be read whole, which would take {size_text(needed)}, "
            f"more than {size_text(MAX_WHOLE_READ_BYTES)}"
        )
