"""The series list: a thumbnail, the series title and its modality for every open series.

Thumbnails are decoded on a background thread, one series after another, so a study opens
on its first image at once and the list fills in while the reader starts reading.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from PySide6.QtCore import QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

from dicom.files import DicomReadError
from dicom.image import FrameCache
from dicom.series import Frame, Series
from viewer.image_view import shrink

THUMBNAIL_SIZE = 112


def thumbnail(cache: FrameCache, frame: Frame, size: int = THUMBNAIL_SIZE) -> QImage:
    """A frame at its default window, in square millimetres, fitting a ``size`` square.

    Safe off the GUI thread: it touches only the thread-safe cache and ``QImage``.
    """
    image = cache.get(frame)
    pixels = image.render(image.default_voi(), image.inverted_by_default)
    pixels = np.ascontiguousarray(shrink(pixels, max(1, max(pixels.shape[:2]) // (2 * size))))
    rows, cols = pixels.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if pixels.ndim == 2 else QImage.Format.Format_RGB888
    qimage = QImage(pixels.data, cols, rows, pixels.strides[0], fmt).copy()
    row_mm, col_mm = frame.pixel_spacing() or (1.0, 1.0)
    width_mm, height_mm = frame.columns * col_mm, frame.rows * row_mm
    scale = size / max(width_mm, height_mm)
    shape = QSize(max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    return qimage.scaled(shape, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)


def untinted(pixmap: QPixmap) -> QIcon:
    """An icon that looks the same selected: a tinted thumbnail would misrepresent the grey scale."""
    icon = QIcon(pixmap)
    icon.addPixmap(pixmap, QIcon.Mode.Selected)
    return icon


def placeholder(size: int = THUMBNAIL_SIZE) -> QIcon:
    """A dark square standing in for a thumbnail not decoded yet (or that cannot be)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(32, 32, 32))
    return untinted(pixmap)


def caption(series: Series) -> str:
    """The series title, with the modality under it unless the title already is the modality."""
    return series.title() if not series.description else f"{series.title()}\n{series.modality}"


class SeriesBrowser(QListWidget):
    """Every open series, top to bottom; choosing one emits :attr:`series_selected`."""

    series_selected = Signal(int)
    _thumbnail_ready = Signal(int, int, QImage)  # generation, row, image: from the worker thread

    def __init__(self, cache: FrameCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cache = cache
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._generation = 0
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.TopToBottom)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.setSpacing(6)
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.setMinimumWidth(THUMBNAIL_SIZE + 40)
        self.currentRowChanged.connect(self._on_row_changed)
        self._thumbnail_ready.connect(self._on_thumbnail)

    def set_series(self, series: list[Series]) -> None:
        """Show a new list; thumbnails of any earlier list still on their way are dropped."""
        self._generation += 1
        self._pool.clear()
        self.blockSignals(True)
        self.clear()
        icon = placeholder()
        for row, item in enumerate(series):
            entry = QListWidgetItem(icon, caption(item))
            entry.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            entry.setToolTip(f"{item.title()}\n{item.modality} {item.description}".strip())
            self.addItem(entry)
            middle = item.frames[len(item.frames) // 2]
            self._pool.start(partial(self._make_thumbnail, self._generation, row, middle))
        self.setCurrentRow(0 if series else -1)
        self.blockSignals(False)

    def select(self, row: int) -> None:
        """Highlight a series without announcing it: the caller already shows it."""
        self.blockSignals(True)
        self.setCurrentRow(row)
        self.blockSignals(False)

    def wait_for_thumbnails(self, timeout_ms: int = 30000) -> bool:
        """Block until every thumbnail is decoded (for screenshots and shutdown)."""
        return self._pool.waitForDone(timeout_ms)

    def shutdown(self) -> None:
        """Drop pending thumbnails and wait for the one being made, before the widget goes."""
        self._generation += 1
        self._pool.clear()
        self._pool.waitForDone()

    def _make_thumbnail(self, generation: int, row: int, frame: Frame) -> None:
        """Runs on the worker thread; a frame that cannot be decoded keeps its placeholder."""
        if generation != self._generation:
            return
        try:
            image = thumbnail(self._cache, frame)
        except DicomReadError:
            return
        self._thumbnail_ready.emit(generation, row, image)

    def _on_thumbnail(self, generation: int, row: int, image: QImage) -> None:
        if generation == self._generation and 0 <= row < self.count():
            self.item(row).setIcon(untinted(QPixmap.fromImage(image)))

    def _on_row_changed(self, row: int) -> None:
        if row >= 0:
            self.series_selected.emit(row)
