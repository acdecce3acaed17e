"""The series browser: patients, their studies, and a thumbnail, title and modality for every series.

Thumbnails are decoded on a background thread, one series after another, so a study opens
on its first image at once and the list fills in while the reader starts reading.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from pydicom.valuerep import PersonName
from PySide6.QtCore import QByteArray, QMimeData, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from dicom.files import DicomReadError
from dicom.image import FrameCache
from dicom.series import Frame, Series, Study
from viewer.image_view import shrink

THUMBNAIL_SIZE = 112
#: The drag format of a series taken from the browser: its index, as text.
SERIES_MIME = "application/x-lightbox-series"


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


def study_heading(study: Study) -> str:
    """A study as the reader finds it: its date (as 2024-01-31) and description."""
    date = study.date
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return "  ".join(part for part in (date, study.description) if part) or "Study"


def patient_heading(study: Study) -> str:
    """The patient of a study: name (Family, Given) and ID, whichever the files give."""
    name = PersonName(study.patient_name).family_comma_given() if study.patient_name else ""
    id_text = f"ID {study.patient_id}" if study.patient_id else ""
    return "  ".join(part for part in (name, id_text) if part) or "Unnamed patient"


def heading(text: str, bold: bool) -> QTreeWidgetItem:
    """A patient or study line: not selectable nor draggable, so choosing always means a series."""
    item = QTreeWidgetItem([text])
    item.setFlags(Qt.ItemFlag.ItemIsEnabled)
    font = item.font(0)
    font.setBold(bold)
    item.setFont(0, font)
    item.setToolTip(0, text)
    return item


def series_mime(index: int) -> QMimeData:
    """What dragging a series carries: its index among the open series."""
    data = QMimeData()
    data.setData(SERIES_MIME, QByteArray(str(index).encode()))
    return data


def dropped_series(data: QMimeData) -> int | None:
    """The series index a drag from the browser carries, None for anything else (files, text)."""
    if not data.hasFormat(SERIES_MIME):
        return None
    text = bytes(data.data(SERIES_MIME).data()).decode(errors="replace")
    return int(text) if text.isdigit() else None


class SeriesBrowser(QTreeWidget):
    """Every open series under its patient and study, as Horos and Weasis show them.

    A series is known by its index in :meth:`~dicom.series.Collection.all_series` order, which
    is also the order of the tree; choosing one emits :attr:`series_selected`, and dragging one
    carries its index (see :func:`dropped_series`).
    """

    series_selected = Signal(int)
    _thumbnail_ready = Signal(int, int, QImage)  # generation, series index, image: from the worker thread

    def __init__(self, cache: FrameCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cache = cache
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._generation = 0
        self._items: list[QTreeWidgetItem] = []
        self.setHeaderHidden(True)
        self.setIndentation(10)
        self.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.setWordWrap(True)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setMinimumWidth(THUMBNAIL_SIZE + 40)
        self.currentItemChanged.connect(self._on_current_changed)
        self._thumbnail_ready.connect(self._on_thumbnail)

    def set_studies(self, studies: list[Study]) -> None:
        """Show new studies, grouped by patient; thumbnails of any earlier list still on their way are dropped."""
        self._generation += 1
        self._pool.clear()
        self.blockSignals(True)
        self.clear()
        self._items = []
        patients: dict[tuple[str, str], QTreeWidgetItem] = {}
        for study in studies:
            key = (study.patient_id, study.patient_name)
            if key not in patients:
                patients[key] = heading(patient_heading(study), bold=True)
                self.addTopLevelItem(patients[key])
            study_item = heading(study_heading(study), bold=False)
            patients[key].addChild(study_item)
            for series in study.series:
                study_item.addChild(self._series_item(series))
        self.expandAll()
        self.select(0 if self._items else -1)
        self.blockSignals(False)

    def _series_item(self, series: Series) -> QTreeWidgetItem:
        """A series' line, its thumbnail queued for the worker thread."""
        index = len(self._items)
        item = QTreeWidgetItem([caption(series)])
        item.setIcon(0, placeholder())
        item.setData(0, Qt.ItemDataRole.UserRole, index)
        item.setToolTip(0, f"{series.title()}\n{series.modality} {series.description}".strip())
        self._items.append(item)
        middle = series.frames[len(series.frames) // 2]
        self._pool.start(partial(self._make_thumbnail, self._generation, index, middle))
        return item

    def series_item(self, index: int) -> QTreeWidgetItem:
        """The line of the series with this index."""
        return self._items[index]

    @property
    def series_count(self) -> int:
        return len(self._items)

    def current_index(self) -> int:
        """The index of the highlighted series, -1 when none is."""
        item = self.currentItem()
        index = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        return index if isinstance(index, int) else -1

    def mimeData(self, items: list[QTreeWidgetItem]) -> QMimeData:
        """A dragged series carries its index, for the side-by-side pane to show it."""
        indices = [item.data(0, Qt.ItemDataRole.UserRole) for item in items]
        return series_mime(indices[0]) if indices and isinstance(indices[0], int) else QMimeData()

    def select(self, index: int) -> None:
        """Highlight a series without announcing it: the caller already shows it."""
        self.blockSignals(True)
        self.setCurrentItem(self._items[index] if 0 <= index < len(self._items) else None)
        self.blockSignals(False)

    def wait_for_thumbnails(self, timeout_ms: int = 30000) -> bool:
        """Block until every thumbnail is decoded (for screenshots and shutdown)."""
        return self._pool.waitForDone(timeout_ms)

    def shutdown(self) -> None:
        """Drop pending thumbnails and wait for the one being made, before the widget goes."""
        self._generation += 1
        self._pool.clear()
        self._pool.waitForDone()

    def _make_thumbnail(self, generation: int, index: int, frame: Frame) -> None:
        """Runs on the worker thread; a frame that cannot be decoded keeps its placeholder."""
        if generation != self._generation:
            return
        try:
            image = thumbnail(self._cache, frame)
        except DicomReadError:
            return
        self._thumbnail_ready.emit(generation, index, image)

    def _on_thumbnail(self, generation: int, index: int, image: QImage) -> None:
        if generation == self._generation and 0 <= index < len(self._items):
            self._items[index].setIcon(0, untinted(QPixmap.fromImage(image)))

    def _on_current_changed(self, item: QTreeWidgetItem | None) -> None:
        """A series chosen is shown; a heading reached by the keyboard chooses nothing."""
        index = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        if isinstance(index, int):
            self.series_selected.emit(index)
