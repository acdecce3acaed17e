"""The grey-level pixel pipeline: stored values, modality values, VOI, display.

The order is the standard's (PS3.4 N.2): the modality LUT turns stored values into
meaningful units (HU for CT), the VOI transform picks the range a reader looks at, and
MONOCHROME1 images are inverted only after that. No Qt here, so the command line and the
explanation engine share exactly the pipeline the viewer shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from struct import unpack

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import VR

#: Largest number of distinct levels a lookup table may have; matches 16-bit stored values.
MAX_LEVELS = 65536


@dataclass(frozen=True)
class Window:
    """A VOI window in modality units (PS3.3 C.11.2.1.2).

    ``function`` is the file's VOI LUT Function: ``LINEAR`` (the standard's default, with its
    half-pixel offsets), ``LINEAR_EXACT`` or ``SIGMOID``.
    """

    center: float
    width: float
    label: str = ""
    function: str = "LINEAR"

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Map modality values to [0, 1], black to white before any inversion."""
        x = np.asarray(values, dtype=np.float64)
        c, w = float(self.center), float(self.width)
        if self.function == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / max(w, 1e-12)))
        if self.function == "LINEAR_EXACT":
            w = max(w, 1e-12)
            return np.clip((x - c) / w + 0.5, 0.0, 1.0)
        w = max(w, 1.0)
        if w == 1.0:
            return (x > c - 0.5).astype(np.float64)
        return np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0)

    def describe(self) -> str:
        """Short text for the status bar: ``W 400 L 40``, in whole numbers as every viewer shows them.

        A window narrower than ten units (SUV, a unit image) keeps three significant digits,
        where a whole number would read zero.
        """
        return f"W {readable(self.width)} L {readable(self.center)}"


def readable(value: float) -> str:
    """A window value as a reader wants it: whole from ten up, three significant digits below."""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3g}"


@dataclass(frozen=True, eq=False)
class LookupTable:
    """A DICOM LUT: inputs below ``first_mapped`` take entry 0, those past the end the last."""

    first_mapped: int
    data: np.ndarray
    bits: int
    label: str = ""

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Look each value up; float inputs are truncated, as integers index a LUT."""
        index = np.asarray(values).astype(np.int64) - self.first_mapped
        np.clip(index, 0, len(self.data) - 1, out=index)
        return self.data[index]

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Use the table as a VOI transform: its output range spans black to white."""
        top = max(float(2**self.bits - 1), float(self.data.max(initial=0)), 1.0)
        return self.apply(values).astype(np.float64) / top

    def describe(self) -> str:
        """Short text for the status bar."""
        return f"VOI LUT {self.label}".strip()


Voi = Window | LookupTable


def read_lut(item: Dataset, dataset: Dataset) -> LookupTable:
    """Read a Modality or VOI LUT Sequence item, whatever VR its data was written with."""
    entries, first_mapped, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or MAX_LEVELS
    element = item["LUTData"]
    if element.VR == VR.OW or isinstance(element.value, bytes):
        little = getattr(dataset, "is_little_endian", None)
        if little is None:
            little = dataset.original_encoding[1] if hasattr(dataset, "original_encoding") else True
        raw = bytes(element.value)
        count = min(entries, len(raw) // 2)
        data = np.asarray(unpack(f"{'<' if little is not False else '>'}{count}H", raw[: 2 * count]))
    else:
        values = element.value
        data = np.atleast_1d(np.asarray(values))
    # A signed descriptor first value (US or SS) is written as unsigned; recover its sign.
    if first_mapped >= 32768 and int(dataset.get("PixelRepresentation", 0)) == 1:
        first_mapped -= 65536
    dtype = np.uint8 if bits <= 8 else np.uint16
    return LookupTable(first_mapped, data[:entries].astype(dtype), bits, str(item.get("LUTExplanation", "")))


@dataclass(frozen=True, eq=False)
class ModalityTransform:
    """Stored values to modality values: a rescale line, a LUT, or nothing at all."""

    slope: float | None = None
    intercept: float | None = None
    lut: LookupTable | None = None
    units: str = ""

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """The same values as pydicom's ``apply_modality_lut`` (float64 after a rescale)."""
        if self.lut is not None:
            return self.lut.apply(stored)
        if self.slope is not None and self.intercept is not None:
            # A hostile slope (1e308, NaN) overflows quietly here; callers that need finite
            # values check for them (the model's input, the info command's figures).
            with np.errstate(over="ignore", invalid="ignore"):
                out = np.asarray(stored).astype(np.float64) * self.slope
                out += self.intercept
            return out
        return np.asarray(stored)


class GreyDisplay:
    """A grey frame prepared so that a new window costs one table build and one gather.

    The frame is kept as an index image into a table of modality values. For integer stored
    values (nearly every file) the index is the stored value itself, and the table is the
    modality transform of every possible value, so it is exact. Float or very wide data is
    quantised to 65536 levels, finer than any display. A new window never touches the pixels
    in float, which is what keeps window/level dragging smooth on large radiographs.
    """

    def __init__(self, stored: np.ndarray, modality: ModalityTransform) -> None:
        if stored.size == 0:
            raise ValueError("image has no pixels")
        low, high = stored.min(), stored.max()
        if np.issubdtype(stored.dtype, np.integer) and int(high) - int(low) < MAX_LEVELS:
            self.index = (stored.astype(np.int64) - int(low)).astype(np.uint16)
            self.levels = np.asarray(modality.apply(np.arange(int(low), int(high) + 1)), dtype=np.float64)
            return
        self._quantise(np.asarray(modality.apply(stored), dtype=np.float64))

    def _quantise(self, values: np.ndarray) -> None:
        """Spread the finite values over 65536 levels; NaN and infinite pixels show as the lowest.

        Such pixels (float data may hold them) are not numbers a window can place, and one of
        them must not take the whole range with it.
        """
        finite = np.isfinite(values)
        if not finite.any():
            raise ValueError("image holds no finite value")
        low, high = float(values[finite].min()), float(values[finite].max())
        span = high - low
        scale = (MAX_LEVELS - 1) / span if 0.0 < span < math.inf else 0.0
        if scale:
            self.index = np.rint((np.where(finite, values, low) - low) * scale).astype(np.uint16)
        else:
            self.index = np.zeros(values.shape, dtype=np.uint16)
        self.levels = low + np.arange(MAX_LEVELS if scale else 1, dtype=np.float64) / (scale or 1.0)

    def auto_window(self, low: float = 0.5, high: float = 99.5) -> Window:
        """A window over the central percentiles, for files that carry none.

        Read off the histogram of the index image, so it costs one pass and ignores the few
        hot or dead pixels that would wash out a plain min-max window. Values that are not
        finite (from a hostile rescale) are left out: no window can be centred on them.
        """
        counts = np.bincount(self.index.ravel(), minlength=len(self.levels))
        counts[~np.isfinite(self.levels)] = 0
        if not counts.any():
            return Window(0.0, 1.0, "Auto", "LINEAR_EXACT")
        cumulative = np.cumsum(counts) / counts.sum()
        chosen = self.levels[np.searchsorted(cumulative, [low / 100.0, high / 100.0]).clip(0, len(self.levels) - 1)]
        lo, hi = float(chosen.min()), float(chosen.max())
        if hi <= lo:
            present = self.levels[counts > 0]
            lo, hi = float(present.min()), float(present.max())
        return Window((lo + hi) / 2.0, max(hi - lo, 1e-6), "Auto", "LINEAR_EXACT")

    def lut(self, voi: Voi, invert: bool) -> np.ndarray:
        """The 8-bit grey level of every table entry under this VOI; a value that is not a number is black."""
        with np.errstate(invalid="ignore", over="ignore"):
            unit = np.nan_to_num(voi.to_unit(self.levels), nan=0.0)
        if invert:
            unit = 1.0 - unit
        return np.rint(unit * 255.0).astype(np.uint8)

    def render(self, voi: Voi, invert: bool) -> np.ndarray:
        """The frame as 8-bit grey, row-major, row 0 at the top."""
        return np.take(self.lut(voi, invert), self.index)
