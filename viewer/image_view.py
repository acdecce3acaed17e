"""The image view: one DICOM frame on a pyqtgraph ViewBox, shown the way radiologists read.

Geometry: arrays are row-major, DICOM row 0 is at the top, and one view unit is one
millimetre, so Pixel Spacing gives square millimetres on screen whatever the pixel shape.

Speed: a grey frame is handed to pyqtgraph once, as the uint16 index image of its
:class:`~dicom.pixels.GreyDisplay`. A new window only builds a new 8-bit table, which
pyqtgraph gathers through when it next paints, so window/level dragging never re-normalises
the pixels and runs at the pace of the display however fast the mouse reports.

Quality: zoomed in, pixels are drawn as crisp squares (nearest neighbour). Zoomed out, the
view shows an area-averaged copy at the largest whole reduction and smooths only the rest,
so a 2048-pixel radiograph on a 900-pixel view neither aliases nor sparkles.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import zip_longest

import numpy as np
import pyqtgraph as pg
from pyqtgraph.GraphicsScene.mouseEvents import MouseDragEvent
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsSceneWheelEvent, QWidget

from dicom.corner_text import Orientation, as_window, describe_voi, image_lines, orientation, patient_lines, study_lines
from dicom.image import FrameImage
from dicom.pixels import Voi, Window
from dicom.series import Frame
from viewer.bindings import MOUSE_DRAGS, WHEEL_DOWN_STEP, Drag

pg.setConfigOptions(imageAxisOrder="row-major", background="k")

#: Mouse travel, in screen pixels, that moves the window across the image's whole value range.
WINDOW_DRAG_PIXELS = 1024.0
#: Zoom factor per screen pixel of right-drag, and per zoom key press.
ZOOM_PER_PIXEL = 1.01
ZOOM_STEP = 1.25
#: One wheel notch, in the eighths of a degree Qt reports.
WHEEL_NOTCH = 120

OPEN_HINT = "Drop DICOM files or folders here, or use File > Open"
#: Corner text: distance from the view's edges, and room around each line for its outline.
MARGIN = 8.0
OUTLINE_PAD = 2
TEXT_COLOUR = QColor(235, 235, 235)
OUTLINE_COLOUR = QColor(0, 0, 0, 230)
MESSAGE_COLOUR = QColor(255, 200, 120)


# ----------------------------------------------------------------------------- pixels


def shrink(array: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks: what one screen pixel over them should show.

    The ragged last rows and columns (less than one screen pixel) are dropped.
    """
    if factor == 1:
        return array
    rows, cols = array.shape[0] // factor, array.shape[1] // factor
    blocks = array[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor, *array.shape[2:])
    total = blocks.sum(axis=(1, 3), dtype=np.uint32)
    return ((total + factor * factor // 2) // (factor * factor)).astype(array.dtype)


class PixelImageItem(pg.ImageItem):
    """An ImageItem drawn nearest-neighbour when magnified and smoothed when reduced."""

    def paint(self, painter: QPainter, *args: object) -> None:
        transform = painter.deviceTransform()
        reduced = math.hypot(transform.m11(), transform.m12()) < 1.0
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, reduced)
        super().paint(painter, *args)


# ----------------------------------------------------------------------------- mouse


class ReadingViewBox(pg.ViewBox):
    """A ViewBox whose mouse does what :data:`~viewer.bindings.MOUSE_DRAGS` says.

    It only reports gestures; the :class:`ImageView` decides what they change.
    """

    dragged = Signal(object, float, float, object)  # Drag, dx, dy in screen pixels, view point pressed
    wheeled = Signal(int)  # images to step

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self._wheel_left = 0

    def mouseDragEvent(self, ev: MouseDragEvent, axis: int | None = None) -> None:
        drag = MOUSE_DRAGS.get(ev.button())
        if drag is None:
            ev.ignore()
            return
        ev.accept()
        delta = ev.scenePos() - ev.lastScenePos()
        self.dragged.emit(drag, delta.x(), delta.y(), self.mapSceneToView(ev.buttonDownScenePos()))

    def wheelEvent(self, ev: QGraphicsSceneWheelEvent, axis: int | None = None) -> None:
        """One image per notch; fine-grained wheels and touchpads add up to whole notches."""
        ev.accept()
        self._wheel_left += ev.delta()
        notches = int(self._wheel_left / WHEEL_NOTCH)
        if notches:
            self._wheel_left -= notches * WHEEL_NOTCH
            self.wheeled.emit(-notches * WHEEL_DOWN_STEP)


# ----------------------------------------------------------------------------- the view


class ImageView(pg.GraphicsView):
    """One frame, with window/level, zoom, pan, corner text and a slot for a heatmap overlay.

    Signals
    -------
    step_requested(int)
        The wheel asks for the image this many steps away; the owner knows the series.
    cursor_moved(int, int)
        Row and column under the mouse, ``(-1, -1)`` off the image.
    display_changed()
        Window, inversion or zoom changed.
    overlay_toggled(bool)
        The heatmap layer was shown or hidden.
    """

    step_requested = Signal(int)
    cursor_moved = Signal(int, int)
    display_changed = Signal()
    overlay_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="k")
        self.setAcceptDrops(False)  # files dropped here are the main window's to open
        self.viewport().setAcceptDrops(False)
        self.box = ReadingViewBox()
        self.setCentralItem(self.box)
        self.image_item = PixelImageItem()
        self.box.addItem(self.image_item, ignoreBounds=True)
        #: The heatmap layer: above the image, hidden until given data. Put a heatmap on the
        #: image's pixel grid with ``overlay.setImage(heatmap, levels=..., lut=...)`` and
        #: ``overlay.setRect(view.image_rect())``; ``toggle_overlay`` shows and hides it.
        self.overlay = pg.ImageItem()
        self.overlay.setZValue(1)
        self.box.addItem(self.overlay, ignoreBounds=True)

        self._image: FrameImage | None = None
        self._frame: Frame | None = None
        self._position = (0, 0)
        self._voi: Voi | None = None
        self._user_inverted = False
        self._base: np.ndarray | None = None  # what the item shows at full size
        self._shrunk: dict[int, np.ndarray] = {}
        self._factor = 0
        self._mm = (1.0, 1.0)  # row and column spacing of the frame on show
        self._orientation: Orientation | None = None
        self._message: str | None = OPEN_HINT
        self._show_text = True

        self.box.dragged.connect(self._on_drag)
        self.box.wheeled.connect(self.step_requested)
        self.box.sigTransformChanged.connect(self._on_transform_changed)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # --- what is shown

    def show_image(self, image: FrameImage, position: tuple[int, int], keep_display: bool = False) -> None:
        """Show a decoded frame, image ``position[0]`` of ``position[1]`` in its series.

        With ``keep_display`` the window, inversion, zoom and pan stay as the reader left
        them (paging through a series); otherwise they start from the file's defaults.
        """
        old_rect = self.image_rect()
        self._set_frame(image.frame, position)
        self._image, self._message, self._base = image, None, None
        if not keep_display or self._voi is None:
            self._voi, self._user_inverted = image.default_voi(), False
        if not keep_display or self.image_rect() != old_rect:
            self.fit()
        self._set_base()  # after fitting, so the copy made is the one the new zoom needs
        self._update_lut()
        self._refresh_text()

    def show_error(self, frame: Frame, message: str, position: tuple[int, int]) -> None:
        """Show why a frame cannot be displayed, in place of its pixels."""
        self._set_frame(frame, position)
        self._image, self._message, self._base = None, message, None
        self.image_item.clear()
        self._refresh_text()

    def _set_frame(self, frame: Frame, position: tuple[int, int]) -> None:
        """Take on a frame's geometry; a heatmap made for another frame must not stay over it."""
        if frame is not self._frame:
            self.overlay.clear()
        self._frame, self._position = frame, position
        self._mm = frame.pixel_spacing() or (1.0, 1.0)
        self._orientation = orientation(frame)

    @property
    def image(self) -> FrameImage | None:
        """The frame on show, None when there is none or it failed to decode."""
        return self._image

    @property
    def message(self) -> str | None:
        """The text shown in place of an image, if any."""
        return self._message

    def image_rect(self) -> QRectF:
        """The whole frame in view coordinates (millimetres), for layers on its pixel grid."""
        if self._frame is None:
            return QRectF()
        row_mm, col_mm = self._mm
        return QRectF(0.0, 0.0, self._frame.columns * col_mm, self._frame.rows * row_mm)

    # --- window/level and inversion

    @property
    def voi(self) -> Voi | None:
        return self._voi

    @property
    def inverted(self) -> bool:
        """Whether black and white are swapped on screen (MONOCHROME1 is, to begin with)."""
        default = self._image is not None and self._image.inverted_by_default
        return default != self._user_inverted

    def set_voi(self, voi: Voi) -> None:
        """Window the frame: a new 8-bit table, the pixels are untouched."""
        self._voi = voi
        self._update_lut()
        self._refresh_text()

    def adjust_window(self, dx: float, dy: float) -> None:
        """Drag the window: right widens, down raises the level (OHIF's directions).

        One pixel of travel moves ``1/WINDOW_DRAG_PIXELS`` of the image's value range, so
        the feel is the same for an 8-bit MR and a 16-bit radiograph.
        """
        if self._image is None or self._image.is_colour or self._voi is None:
            return
        levels = self._image.grey.levels
        step = max(float(levels[-1] - levels[0]), 1.0) / WINDOW_DRAG_PIXELS
        window = as_window(self._voi)
        width = max(window.width + dx * step, step)
        self.set_voi(Window(window.center + dy * step, width, "", window.function))

    def set_inverted(self, inverted: bool) -> None:
        self._user_inverted = inverted != (self._image is not None and self._image.inverted_by_default)
        if self._image is not None and self._image.is_colour:
            self._set_base()
        self._update_lut()
        self._refresh_text()

    def toggle_invert(self) -> None:
        self.set_inverted(not self.inverted)

    def _update_lut(self) -> None:
        if self._image is None or self._image.is_colour:
            return
        lut = self._image.grey.lut(self._voi or self._image.grey.auto_window(), self.inverted)
        self.image_item.setLookupTable(lut)

    # --- zoom and pan

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel across a row: 1.0 shows every pixel once."""
        if self._frame is None:
            return 1.0
        return self._mm[1] / self.box.viewPixelSize()[0]

    def fit(self) -> None:
        """Show the whole frame as large as the view allows, centred."""
        if self._frame is not None:
            self.box.setRange(self.image_rect(), padding=0.0)

    def zoom_by(self, factor: float, centre: QPointF | None = None) -> None:
        """Magnify by ``factor`` about a point in view coordinates (the view's centre by default)."""
        self.box.scaleBy(s=(1.0 / factor, 1.0 / factor), center=centre)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image with the mouse by ``dx``, ``dy`` screen pixels."""
        x_size, y_size = self.box.viewPixelSize()
        self.box.translateBy(x=-dx * x_size, y=-dy * y_size)

    def reset(self) -> None:
        """The file's window and grey scale, fitted: how the frame first appeared."""
        if self._image is not None:
            self._voi = self._image.default_voi()
            self.set_inverted(self._image.inverted_by_default)
        self.fit()

    # --- overlays

    @property
    def corner_text_visible(self) -> bool:
        return self._show_text

    def set_corner_text_visible(self, visible: bool) -> None:
        self._show_text = visible
        self.viewport().update()

    def toggle_overlay(self) -> None:
        """Show or hide the heatmap layer."""
        self.set_overlay_visible(not self.overlay.isVisible())

    def set_overlay_visible(self, visible: bool) -> None:
        if visible != self.overlay.isVisible():
            self.overlay.setVisible(visible)
            self.overlay_toggled.emit(visible)

    def show_heatmap(self, heat: np.ndarray, levels: tuple[float, float], lut: np.ndarray) -> None:
        """Stretch a heatmap over the whole frame; NaN (not yet known) stays transparent.

        Any grid works: the model's own is drawn over the frame's rectangle, which is where the
        model's resize took it from.

        ``levels`` are fixed by the caller for a whole explanation, so the colours do not
        shift as partial maps arrive; ``lut`` is RGBA, its alpha carrying opacity and threshold.
        """
        self.overlay.setImage(heat, levels=levels, lut=lut, autoLevels=False)
        self.overlay.setRect(self.image_rect())

    # --- internals

    def _set_base(self) -> None:
        """Choose the full-size array for the item: the index image, or RGB for colour."""
        image = self._image
        self._base = image.render(None, self.inverted) if image.is_colour else image.grey.index
        self._shrunk = {}
        self._factor = 0
        self._show_shrunk()

    def _reduction(self) -> int:
        """The largest whole factor by which the frame is shown smaller than its pixels."""
        if self._frame is None:
            return 1
        image_per_device = self.box.viewPixelSize()[0] / self._mm[1] / self.devicePixelRatioF()
        return max(1, int(image_per_device + 1e-6)) if math.isfinite(image_per_device) else 1

    def _show_shrunk(self) -> None:
        """Hand the item the copy that matches the current zoom, once per change of factor."""
        if self._base is None:
            return
        factor = self._reduction()
        if factor == self._factor:
            return
        self._factor = factor
        if factor not in self._shrunk:
            self._shrunk[factor] = shrink(self._base, factor)
        shown = self._shrunk[factor]
        row_mm, col_mm = self._mm
        grey = shown.ndim == 2
        levels = (0, len(self._image.grey.levels)) if grey else None
        self.image_item.setImage(shown, levels=levels, autoLevels=False)
        self.image_item.setRect(QRectF(0.0, 0.0, shown.shape[1] * factor * col_mm, shown.shape[0] * factor * row_mm))

    def _on_transform_changed(self) -> None:
        self._show_shrunk()
        self._refresh_text()

    def _on_drag(self, drag: Drag, dx: float, dy: float, pressed: QPointF) -> None:
        if drag is Drag.WINDOW:
            self.adjust_window(dx, dy)
        elif drag is Drag.ZOOM:
            self.zoom_by(ZOOM_PER_PIXEL**dy, pressed)
        else:
            self.pan_by(dx, dy)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if self._frame is None:
            return
        point = self.box.mapSceneToView(scene_pos)
        row_mm, col_mm = self._mm
        row, col = math.floor(point.y() / row_mm), math.floor(point.x() / col_mm)
        inside = 0 <= row < self._frame.rows and 0 <= col < self._frame.columns
        self.cursor_moved.emit(*((row, col) if inside else (-1, -1)))

    def leaveEvent(self, event: QEvent) -> None:
        super().leaveEvent(event)
        self.cursor_moved.emit(-1, -1)

    def _refresh_text(self) -> None:
        self.display_changed.emit()
        self.viewport().update()

    # --- painting the text

    def corner_text(self) -> dict[Qt.Corner, list[str]]:
        """The four corners' lines, as a reading workstation shows them."""
        if self._frame is None:
            return {}
        header = self._frame.header
        view_lines = []
        if self._image is not None:
            view_lines = [
                "" if self._image.is_colour else describe_voi(self._voi),
                f"Zoom {self.zoom * 100:.0f}%",
                "Inverted" if self._user_inverted else "",
            ]
        return {
            Qt.Corner.TopLeftCorner: patient_lines(header),
            Qt.Corner.TopRightCorner: study_lines(header),
            Qt.Corner.BottomLeftCorner: image_lines(self._frame, self._position),
            Qt.Corner.BottomRightCorner: [line for line in view_lines if line],
        }

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        """Corner text, orientation letters and messages, in screen pixels over the image."""
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        area = QRectF(self.viewport().rect())
        font = QFont(self.font())
        font.setPointSizeF(10.5)
        if self._show_text:
            letters = self._orientation if self._image is not None else None
            for corner, lines in fit_corners(self.corner_text(), area.width(), font, letters).items():
                draw_lines(painter, area, font, lines, corner)
            if letters is not None:
                draw_orientation(painter, area, font, letters)
        if self._message:
            big = QFont(font)
            big.setPointSizeF(13)
            draw_centred(painter, area, big, self._message)
        painter.restore()


@lru_cache(maxsize=512)
def outlined_text(text: str, font_key: str, colour: int, ratio: float) -> QImage:
    """Light text with a dark outline, readable on black air and on white bone alike.

    Stroking glyph outlines costs about a millisecond a line, too much to repeat on every
    frame of a window/level drag, so each line is drawn once into an image and kept.
    """
    font = QFont()
    font.fromString(font_key)
    metrics = QFontMetricsF(font)
    width = metrics.horizontalAdvance(text) + 2 * OUTLINE_PAD
    height = metrics.height() + 2 * OUTLINE_PAD
    image = QImage(math.ceil(width * ratio), math.ceil(height * ratio), QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(ratio)
    image.fill(Qt.GlobalColor.transparent)
    path = QPainterPath()
    path.addText(OUTLINE_PAD, OUTLINE_PAD + metrics.ascent(), font, text)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    outline = QPen(OUTLINE_COLOUR, 3.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
    painter.strokePath(path, outline)
    painter.fillPath(path, QColor.fromRgba(colour))
    painter.end()
    return image


def outlined(
    painter: QPainter, x: float, baseline: float, font: QFont, text: str, colour: QColor = TEXT_COLOUR
) -> None:
    """Draw one line of outlined text with its baseline starting at ``x``, ``baseline``."""
    image = outlined_text(text, font.toString(), colour.rgba(), painter.device().devicePixelRatioF())
    top = baseline - QFontMetricsF(font).ascent() - OUTLINE_PAD
    painter.drawImage(QPointF(x - OUTLINE_PAD, top), image)


#: The corners that face each other across the top and the bottom edge, with the edge's name.
EDGES = (
    (Qt.Corner.TopLeftCorner, Qt.Corner.TopRightCorner, "top"),
    (Qt.Corner.BottomLeftCorner, Qt.Corner.BottomRightCorner, "bottom"),
)


def fit_corners(
    corners: dict[Qt.Corner, list[str]], width: float, font: QFont, letters: Orientation | None
) -> dict[Qt.Corner, list[str]]:
    """Cut corner lines short with an ellipsis where facing corners would meet in a narrow view.

    Facing lines share their row: a short line keeps what it needs and leaves the rest to the long
    one opposite (so the window "W 400 L 40" survives beside "Im 1/1"), and on the row of the
    edge's orientation letter each side stops short of the letter.
    """
    metrics = QFontMetricsF(font)
    gap = 2 * metrics.averageCharWidth()
    room = width - 2 * MARGIN - gap
    fitted = dict(corners)
    for left_corner, right_corner, edge in EDGES:
        # Rows count from the edge, where the letter is: the bottom corners stack upwards.
        step = 1 if edge == "top" else -1
        left, right = corners.get(left_corner, [])[::step], corners.get(right_corner, [])[::step]
        new_left, new_right = [], []
        for row, (a, b) in enumerate(zip_longest(left, right)):
            if letters is not None and row == 0:
                letter = metrics.horizontalAdvance(getattr(letters, edge))
                limit_a = limit_b = (room - letter - gap) / 2
            else:
                limit_a, limit_b = share_row(metrics.horizontalAdvance(a or ""), metrics.horizontalAdvance(b or ""),
                                             room)
            if a is not None:
                new_left.append(elide(a, metrics, limit_a))
            if b is not None:
                new_right.append(elide(b, metrics, limit_b))
        fitted[left_corner], fitted[right_corner] = new_left[::step], new_right[::step]
    return fitted


def share_row(left: float, right: float, room: float) -> tuple[float, float]:
    """Widths for two facing lines: both whole if they fit, else the shorter whole up to half."""
    if left + right <= room:
        return left, right
    half = room / 2
    return room - min(right, half), room - min(left, half)


def elide(line: str, metrics: QFontMetricsF, width: float) -> str:
    """The line, or as much of it as fits ``width`` followed by an ellipsis."""
    if metrics.horizontalAdvance(line) <= width:
        return line
    return metrics.elidedText(line, Qt.TextElideMode.ElideRight, max(width, 0.0))


def draw_lines(painter: QPainter, area: QRectF, font: QFont, lines: list[str], corner: Qt.Corner) -> None:
    """Stack lines into a corner, aligned to its edges."""
    metrics = QFontMetricsF(font)
    step = metrics.lineSpacing()
    right = corner in (Qt.Corner.TopRightCorner, Qt.Corner.BottomRightCorner)
    bottom = corner in (Qt.Corner.BottomLeftCorner, Qt.Corner.BottomRightCorner)
    first = (
        area.bottom() - MARGIN - metrics.descent() - step * (len(lines) - 1)
        if bottom
        else area.top() + MARGIN + metrics.ascent()
    )
    for i, line in enumerate(lines):
        x = area.right() - MARGIN - metrics.horizontalAdvance(line) if right else area.left() + MARGIN
        outlined(painter, x, first + i * step, font, line)


def draw_orientation(painter: QPainter, area: QRectF, font: QFont, labels: Orientation) -> None:
    """Patient direction letters at the middle of each edge of the view."""
    metrics = QFontMetricsF(font)
    middle_x, middle_y = area.center().x(), area.center().y() + metrics.ascent() / 2
    outlined(painter, area.left() + MARGIN, middle_y, font, labels.left)
    outlined(painter, area.right() - MARGIN - metrics.horizontalAdvance(labels.right), middle_y, font, labels.right)
    outlined(
        painter,
        middle_x - metrics.horizontalAdvance(labels.top) / 2,
        area.top() + MARGIN + metrics.ascent(),
        font,
        labels.top,
    )
    outlined(
        painter,
        middle_x - metrics.horizontalAdvance(labels.bottom) / 2,
        area.bottom() - MARGIN - metrics.descent(),
        font,
        labels.bottom,
    )


def draw_centred(painter: QPainter, area: QRectF, font: QFont, text: str) -> None:
    """A message in the middle of the view, wrapped to its width."""
    metrics = QFontMetricsF(font)
    lines = wrap(text, metrics, area.width() - 4 * MARGIN)
    top = area.center().y() - metrics.lineSpacing() * len(lines) / 2 + metrics.ascent()
    for i, line in enumerate(lines):
        x = area.center().x() - metrics.horizontalAdvance(line) / 2
        outlined(painter, x, top + i * metrics.lineSpacing(), font, line, MESSAGE_COLOUR)


def wrap(text: str, metrics: QFontMetricsF, width: float) -> list[str]:
    """Greedy word wrap to a pixel width."""
    lines: list[str] = []
    for word in text.split():
        if lines and metrics.horizontalAdvance(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines
