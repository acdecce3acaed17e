"""Decoding one frame on demand and preparing it for display, with a bounded cache.

Pixels are decoded only when a frame is first shown (or asked for by the command line) and
the most recently used frames are kept up to a memory budget, so a 500-slice series scrolls
from memory once seen and never holds more than the budget.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from dicom.claims import PixelClaim, check_frame_size, check_whole_read
from dicom.errors import DicomReadError, one_line
from dicom.pixels import GreyDisplay, LookupTable, ModalityTransform, Voi, Window, read_lut
from dicom.reading import MAX_READS, open_regular, read_bounded
from dicom.series import Frame

COLOUR_PHOTOMETRICS = ("RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


def _number(value: object) -> float | None:
    """A numeric attribute's first value, or None when it is missing or malformed."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _values(value: object) -> list[object]:
    """A possibly multi-valued attribute as a list."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [value]


def modality_transform(frame: Frame) -> ModalityTransform:
    """The frame's modality LUT: a Modality LUT Sequence, else a rescale, else identity."""
    header = frame.header
    units = "HU" if header.get("Modality") == "CT" else ""
    lut_items = header.get("ModalityLUTSequence")
    if lut_items:
        return ModalityTransform(lut=read_lut(lut_items[0], header), units=str(lut_items[0].get("ModalityLUTType", "")))
    slope = _number(frame.attribute("PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _number(frame.attribute("PixelValueTransformationSequence", "RescaleIntercept"))
    if slope is None or intercept is None:
        return ModalityTransform(units=units)
    rescale_type = frame.attribute("PixelValueTransformationSequence", "RescaleType")
    units = str(rescale_type) if rescale_type and rescale_type != "US" else units
    return ModalityTransform(slope=slope, intercept=intercept, units=units)


def file_windows(frame: Frame) -> tuple[Window, ...]:
    """Every window the file suggests for this frame, with its explanation when given.

    A window that is no use is skipped, as if absent: a width not above zero, or a centre or
    width that is not a finite number (NaN or infinity, which would make every pixel NaN).
    """
    centers = _values(frame.attribute("FrameVOILUTSequence", "WindowCenter"))
    widths = _values(frame.attribute("FrameVOILUTSequence", "WindowWidth"))
    labels = _values(frame.attribute("FrameVOILUTSequence", "WindowCenterWidthExplanation"))
    function = str(frame.attribute("FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").upper()
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths)):
        c, w = _number(center), _number(width)
        if c is None or w is None or not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
            continue
        label = str(labels[i]) if i < len(labels) else ""
        windows.append(Window(c, w, label, function if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR"))
    return tuple(windows)


def decode(frame: Frame) -> np.ndarray:
    """Decode one frame with pydicom and its plugins; ``DicomReadError`` with a plain reason.

    The frame's size was checked against the memory budget when its header was read; it is
    checked again here, since a frame can be made from any header. Decoding from the file
    reads just the one frame. Files that cannot be decoded that way (no preamble, deflated
    data sets) are read whole instead, when that fits the budget. Decoder warnings are kept
    out of the user's way, and running out of memory is a reason like any other: what matters
    to the user is whether the pixels came.
    """
    claim = PixelClaim.of(frame.header)
    check_frame_size(claim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _attempt(lambda: _decode_from_file(frame))
        except _DecodingFailed:
            pass
        try:
            return _attempt(lambda: _decode_whole_file(frame, claim))
        except _DecodingFailed as failure:  # pydicom's full read says it best
            raise DicomReadError(f"cannot decode pixels: {failure}") from None


class _DecodingFailed(Exception):
    """One way of decoding failed; the message says why, in one line."""


def _attempt(decoding: Callable[[], np.ndarray]) -> np.ndarray:
    """Run one way of decoding; whatever it raises but an interruption is a one-line reason.

    Decoders raise anything, and those written in Rust (pylibjpeg-rle) panic on some hostile
    frames with a ``PanicException``, which is not even an ``Exception``. Our own refusals
    and running out of memory are final: the other way would fare no better.
    """
    try:
        return decoding()
    except (DicomReadError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except MemoryError:
        raise DicomReadError("cannot decode pixels: not enough memory") from None
    except BaseException as error:  # noqa: BLE001 - see above: a panic is no Exception
        raise _DecodingFailed(one_line(error)) from None


def _decode_from_file(frame: Frame) -> np.ndarray:
    """Just this frame, read from the file; a deflated file is left to the whole read.

    The raw bytes of a deflated data set are no data set, so reading them as one could
    find any claim at all in them.
    """
    syntax = getattr(frame.header, "file_meta", {}).get("TransferSyntaxUID")
    if syntax == DeflatedExplicitVRLittleEndian:
        raise ValueError("a deflated data set is read whole")
    with open_regular(frame.path) as file:
        file.limit("decoding this frame", max_reads=2 * MAX_READS)
        return pixel_array(file, index=frame.index, decoding_plugin=decoding_plugin(frame.header))


def _decode_whole_file(frame: Frame, claim: PixelClaim) -> np.ndarray:
    """This frame, from the file read whole in memory, when the file and one frame fit the budget."""
    with open_regular(frame.path) as file:
        check_whole_read(file.size, claim)
        file.limit("reading this file whole", max_reads=2 * MAX_READS)
        dataset, _ = read_bounded(file, stop_before_pixels=False, force=True)
    return pixel_array(dataset, index=frame.index, decoding_plugin=decoding_plugin(frame.header))


def decoding_plugin(header: Dataset) -> str:
    """The decoder to use: pydicom's own for RLE, else whichever pydicom picks ("").

    pylibjpeg-rle is written in Rust and panics on some hostile frames; the panic prints a
    many-line backtrace on stderr before Python can turn it into one line.
    """
    syntax = getattr(header, "file_meta", {}).get("TransferSyntaxUID")
    return "pydicom" if syntax == RLELossless else ""


def to_rgb8(array: np.ndarray, header: Dataset) -> np.ndarray:
    """A colour frame as 8-bit RGB for display."""
    photometric = str(header.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, header)
    if array.dtype != np.uint8:
        top = float(array.max(initial=0))
        bits = int(header.get("BitsStored", 8)) if photometric != "PALETTE COLOR" else int(np.ceil(np.log2(top + 1)))
        array = (array.astype(np.float64) * (255.0 / max(2.0**bits - 1, 1.0))).clip(0, 255).round().astype(np.uint8)
    return array


@dataclass(frozen=True, eq=False)
class FrameImage:
    """A decoded frame with everything needed to show it and read values off it."""

    frame: Frame
    stored: np.ndarray
    modality: ModalityTransform | None
    windows: tuple[Window, ...]
    voi_luts: tuple[LookupTable, ...]

    @property
    def is_colour(self) -> bool:
        return self.modality is None

    @property
    def photometric(self) -> str:
        return str(self.frame.header.get("PhotometricInterpretation", "")).upper()

    @property
    def inverted_by_default(self) -> bool:
        """MONOCHROME1 shows low values bright; the inversion comes after the VOI."""
        return self.photometric == "MONOCHROME1"

    @cached_property
    def grey(self) -> GreyDisplay:
        """The display table of a grey frame, built once."""
        if self.modality is None:
            raise TypeError("a colour frame has no grey display")
        return GreyDisplay(self.stored, self.modality)

    @cached_property
    def rgb(self) -> np.ndarray:
        """A colour frame as 8-bit RGB, converted once."""
        return to_rgb8(self.stored, self.frame.header)

    def modality_values(self) -> np.ndarray:
        """Values after the modality LUT, as pydicom's ``apply_modality_lut`` gives them."""
        return self.stored if self.modality is None else self.modality.apply(self.stored)

    def value_at(self, row: int, column: int) -> tuple[object, object] | None:
        """Stored and modality value of one pixel, None outside the image."""
        if not (0 <= row < self.stored.shape[0] and 0 <= column < self.stored.shape[1]):
            return None
        stored = self.stored[row, column]
        if self.modality is None:
            return tuple(int(v) for v in stored), None
        return stored.item(), self.modality.apply(np.asarray([stored]))[0].item()

    def voi_choices(self) -> list[Voi]:
        """What the reader can pick from: VOI LUTs first, then the file's windows, then auto."""
        if self.is_colour:
            return []
        return [*self.voi_luts, *self.windows, self.grey.auto_window()]

    def default_voi(self) -> Voi | None:
        """The standard's preference: a VOI LUT, else the first window, else a robust range."""
        choices = self.voi_choices()
        return choices[0] if choices else None

    def unit_values(self, voi: Voi | None, invert: bool) -> np.ndarray:
        """Grey values in [0, 1] after the VOI and any inversion, in float32 for a model.

        Unlike :meth:`render` this keeps full precision: a model sees the window's values,
        not the 256 grey levels of the screen.
        """
        if self.is_colour:
            raise TypeError("a colour frame has no grey values for a model")
        unit = (voi or self.grey.auto_window()).to_unit(self.modality_values())
        return (1.0 - unit if invert else unit).astype(np.float32)

    def render(self, voi: Voi | None, invert: bool) -> np.ndarray:
        """8-bit pixels to show: ``(rows, columns)`` grey or ``(rows, columns, 3)`` RGB."""
        if self.is_colour:
            return 255 - self.rgb if invert else self.rgb
        return self.grey.render(voi or self.grey.auto_window(), invert)

    @property
    def nbytes(self) -> int:
        """Memory this frame holds, for the cache budget (display tables included)."""
        return int(self.stored.nbytes * 2 + self.stored.size * 2)


def load_frame(frame: Frame) -> FrameImage:
    """Decode a frame and gather its display settings; ``DicomReadError`` if it cannot be."""
    stored = decode(frame)
    photometric = str(frame.header.get("PhotometricInterpretation", "")).upper()
    samples = int(frame.header.get("SamplesPerPixel", 1) or 1)
    if photometric in COLOUR_PHOTOMETRICS or samples > 1 or stored.ndim == 3:
        if stored.ndim != 3 and photometric != "PALETTE COLOR":
            raise DicomReadError(f"unexpected pixel layout {stored.shape} for {photometric}")
        return FrameImage(frame, stored, None, (), ())
    if stored.ndim != 2:
        raise DicomReadError(f"unexpected pixel layout {stored.shape}")
    header = frame.header
    try:
        voi_luts = tuple(read_lut(item, header) for item in header.get("VOILUTSequence", []) if "LUTData" in item)
        image = FrameImage(frame, stored, modality_transform(frame), file_windows(frame), voi_luts)
        image.grey  # noqa: B018 - build the display table while still off the GUI's hot path
    except (ValueError, TypeError, KeyError) as error:
        raise DicomReadError(f"cannot display pixels: {one_line(error)}") from None
    except MemoryError:
        raise DicomReadError("cannot display pixels: not enough memory") from None
    return image


class FrameCache:
    """Decoded frames, most recently used kept, within a memory budget. Thread-safe."""

    def __init__(self, budget_bytes: int = 768 * 2**20) -> None:
        self.budget = budget_bytes
        self._frames: OrderedDict[tuple[str, int], FrameImage] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, frame: Frame) -> FrameImage:
        """The decoded frame, from memory when it was seen recently."""
        key = (str(frame.path), frame.index)
        with self._lock:
            image = self._frames.get(key)
            if image is not None:
                self._frames.move_to_end(key)
                return image
        image = load_frame(frame)
        with self._lock:
            if key not in self._frames:
                self._frames[key] = image
                self._used += image.nbytes
            while self._used > self.budget and len(self._frames) > 1:
                _, dropped = self._frames.popitem(last=False)
                self._used -= dropped.nbytes
        return image

    @property
    def used_bytes(self) -> int:
        return self._used
