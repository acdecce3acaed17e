"""Reading measurements: lengths, angles and region statistics, as a radiologist reads them off a frame.

No Qt here, so the maths is tested on its own and the exports can describe what the viewer drew.

Geometry: points are ``(x, y)`` = (column, row) on the frame's stored pixel grid, continuous, so
pixel ``(row, column)`` covers ``[column, column + 1) x [row, row + 1)`` and its centre is at
``(column + 0.5, row + 0.5)``. Distances and angles are taken in millimetres, after scaling each axis
by its own spacing: with anisotropic pixels an angle measured in pixels would be wrong.

Values: region statistics are taken on the stored pixels inside the shape (a pixel counts when its
centre lies inside), after the modality LUT, so a CT region reads in HU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from dicom.image import FrameImage
from dicom.series import Frame, is_positive

Point = tuple[float, float]


class Kind(Enum):
    """What a measurement is, with the number of points that define it."""

    LENGTH = ("Length", 2)
    ANGLE = ("Angle", 3)
    ELLIPSE = ("Ellipse ROI", 2)
    RECTANGLE = ("Rectangle ROI", 2)

    @property
    def title(self) -> str:
        return self.value[0]

    @property
    def points(self) -> int:
        return self.value[1]

    @property
    def is_region(self) -> bool:
        return self in (Kind.ELLIPSE, Kind.RECTANGLE)


@dataclass(frozen=True)
class Measurement:
    """One drawn measurement: its kind and defining points (an angle's are end, vertex, end;
    a region's are two opposite corners of its bounding box)."""

    kind: Kind
    points: tuple[Point, ...]

    def moved(self, dx: float, dy: float) -> Measurement:
        """The same shape shifted by ``dx`` columns and ``dy`` rows."""
        return replace(self, points=tuple((x + dx, y + dy) for x, y in self.points))

    def with_point(self, index: int, point: Point) -> Measurement:
        """The shape with one defining point moved, as when a handle is dragged."""
        points = list(self.points)
        points[index] = point
        return replace(self, points=tuple(points))


@dataclass(frozen=True)
class Calibration:
    """Millimetres per pixel along rows and columns, and where they come from.

    ``source`` is ``"patient"`` (Pixel Spacing), ``"detector"`` (Imager Pixel Spacing only: sizes at
    the detector, magnified by the beam's divergence) or ``""`` when the file has neither, and
    distances are then in pixels. ``stated`` says whether the source must be written beside a value:
    always for the detector and for no calibration, and for Pixel Spacing on a projection image that
    also carries Imager Pixel Spacing, where the reader could take one for the other.
    """

    row_mm: float = 1.0
    column_mm: float = 1.0
    source: str = ""
    stated: bool = True

    @property
    def unit(self) -> str:
        return "mm" if self.source else "px"

    @property
    def note(self) -> str:
        """``(detector)``, ``(patient)``, ``(no calibration)`` or empty, to follow a length or an area."""
        if not self.stated:
            return ""
        return f"({self.source})" if self.source else "(no calibration)"


def _spacing(value: object) -> tuple[float, float] | None:
    """A usable (row, column) spacing from an attribute's value, None when it is missing or unusable."""
    try:
        row, column = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (row, column) if is_positive(row) and is_positive(column) else None


def calibration(frame: Frame) -> Calibration:
    """The frame's calibration: Pixel Spacing first, then Imager Pixel Spacing, then pixels.

    The same order as :meth:`~dicom.series.Frame.pixel_spacing`, so what is measured matches what is shown.
    """
    imager = _spacing(frame.header.get("ImagerPixelSpacing"))
    patient = _spacing(frame.attribute("PixelMeasuresSequence", "PixelSpacing"))
    if patient is not None:
        return Calibration(*patient, "patient", stated=imager is not None)
    if imager is not None:
        return Calibration(*imager, "detector")
    return Calibration()


def length(a: Point, b: Point, cal: Calibration) -> float:
    """Distance between two points in the calibration's unit (mm, or pixels)."""
    return math.hypot((b[0] - a[0]) * cal.column_mm, (b[1] - a[1]) * cal.row_mm)


def angle(a: Point, vertex: Point, b: Point, cal: Calibration) -> float:
    """The angle at ``vertex`` between the arms to ``a`` and ``b``, in degrees from 0 to 180, in real space."""
    ax, ay = (a[0] - vertex[0]) * cal.column_mm, (a[1] - vertex[1]) * cal.row_mm
    bx, by = (b[0] - vertex[0]) * cal.column_mm, (b[1] - vertex[1]) * cal.row_mm
    return math.degrees(abs(math.atan2(ax * by - ay * bx, ax * bx + ay * by)))


def region_area(measurement: Measurement, cal: Calibration) -> float:
    """The shape's own area in mm² (or px²): exact, not a count of pixels, as other viewers give it."""
    (x0, y0), (x1, y1) = measurement.points
    area = abs(x1 - x0) * cal.column_mm * abs(y1 - y0) * cal.row_mm
    return area * math.pi / 4 if measurement.kind is Kind.ELLIPSE else area


def region_bounds(measurement: Measurement, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the pixels whose centres can lie inside the shape, clipped to the frame."""
    (x0, y0), (x1, y1) = measurement.points
    rows = slice(max(0, math.floor(min(y0, y1))), min(shape[0], math.ceil(max(y0, y1))))
    columns = slice(max(0, math.floor(min(x0, x1))), min(shape[1], math.ceil(max(x0, x1))))
    return rows, columns


def region_mask(measurement: Measurement, rows: slice, columns: slice) -> np.ndarray:
    """Which pixels of ``[rows, columns]`` have their centre inside the shape (boundary included)."""
    (x0, y0), (x1, y1) = measurement.points
    y, x = np.mgrid[rows, columns].astype(np.float64) + 0.5
    inside = (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))
    if measurement.kind is not Kind.ELLIPSE:
        return inside
    half_x, half_y = abs(x1 - x0) / 2, abs(y1 - y0) / 2
    if half_x == 0 or half_y == 0:
        return np.zeros_like(inside)
    return ((x - (x0 + x1) / 2) / half_x) ** 2 + ((y - (y0 + y1) / 2) / half_y) ** 2 <= 1.0


@dataclass(frozen=True)
class RegionStats:
    """Modality values inside a region. ``sd`` is the population standard deviation, as OHIF and
    Horos give it, so a single pixel reads SD 0 rather than nothing."""

    mean: float
    sd: float
    minimum: float
    maximum: float
    pixels: int


def region_stats(measurement: Measurement, image: FrameImage) -> RegionStats | None:
    """Statistics of the region's pixels after the modality LUT; None for a colour frame or no pixel.

    Only the pixels under the shape's bounding box are converted, so dragging a region over a large
    radiograph stays fast. Values that are not finite (a hostile rescale) are left out.
    """
    if image.modality is None:
        return None
    rows, columns = region_bounds(measurement, image.stored.shape)
    values = np.asarray(image.modality.apply(image.stored[rows, columns]), dtype=np.float64)
    if values.size == 0:
        return None
    values = values[region_mask(measurement, rows, columns) & np.isfinite(values)]
    if values.size == 0:
        return None
    return RegionStats(float(values.mean()), float(values.std()), float(values.min()), float(values.max()),
                       int(values.size))


def number(value: float) -> str:
    """A value as a reader wants it: one decimal, a minus sign where negative, no ``-0.0``."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def pixel_value(value: float) -> str:
    """A pixel's own value: whole as stored (HU are), one decimal when it has a fraction."""
    return f"{value:.0f}" if value.is_integer() else number(value)


def with_note(text: str, cal: Calibration) -> str:
    return f"{text} {cal.note}" if cal.note else text


def describe(measurement: Measurement, image: FrameImage, cal: Calibration) -> tuple[str, ...]:
    """The lines shown beside a measurement and listed in the report, e.g. ``("42.1 mm (detector)",)``."""
    kind, points = measurement.kind, measurement.points
    if kind is Kind.LENGTH:
        return (with_note(f"{number(length(*points, cal))} {cal.unit}", cal),)
    if kind is Kind.ANGLE:
        return (f"{number(angle(*points, cal))}°",)
    area = with_note(f"Area {number(region_area(measurement, cal))} {cal.unit}²", cal)
    stats = region_stats(measurement, image)
    if stats is None:
        return (area, "No pixel values" if image.modality is not None else "No values: colour image")
    units = f" {image.modality.units}" if image.modality.units else ""
    return (f"Mean {number(stats.mean)}{units}  SD {number(stats.sd)}",
            f"Min {pixel_value(stats.minimum)}  Max {pixel_value(stats.maximum)}{units}", area)
