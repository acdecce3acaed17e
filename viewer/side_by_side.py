"""Side by side: two linked views, how a radiologist compares.

The left pane is the main view, with its explanation map. The right pane shows the same image
without the map (the anatomy beside the heat), or the previous map made of this image (two
methods, or two settings, side by side), or another series of the study, at the slice nearest
in position (:func:`dicom.slice_position.matching_slice`). Zoom and pan are linked both ways,
in millimetres about the same centre; window/level and inversion are linked whenever the two
panes' values mean the same (one series, or both in HU). The wheel over either pane pages the
left series, and the right follows. Each pane's header says what it shows, so the reader never
mistakes which side carries which map.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QObject, QRectF, Qt, Signal, SignalInstance
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from dicom.files import DicomReadError
from dicom.image import FrameCache
from dicom.series import Collection, Frame, Series
from dicom.slice_position import matching_slice
from viewer.image_view import ImageView
from viewer.series_browser import dropped_series

HEADER_STYLE = "QLabel { background: #202022; color: #e6e6e6; padding: 3px 8px; font-weight: bold; }"


class Compare(Enum):
    """What the right pane shows of the left pane's series."""

    IMAGE_ONLY = "Image only (no map)"
    PREVIOUS_MAP = "Previous map of this image"


class MapSource(Protocol):
    """What the panes need of the explanation side (:class:`viewer.explanation_ui.ExplanationUi`)."""

    explanation_finished: SignalInstance  # a final map is drawn on the left view
    explained: SignalInstance  # carries None when the map on screen is forgotten
    current: Any  # the explanation on show, with ``method.title``; None when there is none


@dataclass(frozen=True, eq=False)
class MapDrawing:
    """A finished map as the left view drew it, to draw again in the right pane."""

    frame: Frame
    heat: np.ndarray
    levels: tuple[float, float]
    lut: np.ndarray
    title: str

    def label(self) -> str:
        """``Grad-CAM map (scale 0–3.2)``: the method and what its colours span, short enough for a narrow pane."""
        low, high = self.levels
        return f"{self.title} map (scale {low:.3g}\N{EN DASH}{high:.3g})"


def drawn_map(view: ImageView, frame: Frame, title: str) -> MapDrawing | None:
    """The map on a view's overlay as it is drawn now, None when there is none."""
    overlay = view.overlay
    if overlay.image is None or overlay.levels is None or overlay.lut is None:
        return None
    low, high = (float(v) for v in overlay.levels)
    return MapDrawing(frame, overlay.image.copy(), (low, high), np.array(overlay.lut), title)


def shown_frame(view: ImageView) -> Frame | None:
    """The frame a view shows decoded, None when it shows none."""
    return view.image.frame if view.image is not None else None


def linked_index(left_frames: list[Frame], index: int, right: Series) -> tuple[int, bool]:
    """The right series' slice for the left's ``index``, and whether it was matched by position.

    Without comparable positions the right one goes as far through its series as the left one.
    """
    matched = matching_slice(left_frames[index], right.frames)
    if matched is not None:
        return matched, True
    return round(index * (len(right.frames) - 1) / max(len(left_frames) - 1, 1)), False


class Pane(QWidget):
    """One side: a header naming what it shows, over its image view.

    A series dragged from the browser and dropped here emits :attr:`series_dropped`; files
    dropped go on to the main window.
    """

    series_dropped = Signal(int)

    def __init__(self, view: ImageView) -> None:
        super().__init__()
        self.view = view
        self.header = QLabel()
        self.header.setStyleSheet(HEADER_STYLE)
        # A long header must not widen its pane: the two panes share the width evenly.
        self.header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.header.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(view, 1)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_series(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        index = dropped_series(event.mimeData())
        if index is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.series_dropped.emit(index)


class SideBySide(QObject):
    """The central splitter of the main window: the main view, and a linked second pane.

    The main window calls :meth:`follow` whenever it shows a frame; the explanation side calls
    :meth:`watch`. ``step_requested`` is the right pane's wheel, for the main window to page.
    """

    step_requested = Signal(int)
    toggled = Signal(bool)

    def __init__(self, left: ImageView, cache: FrameCache, parent: QWidget) -> None:
        super().__init__(parent)
        self.cache = cache
        self.left, self.right = left, ImageView()
        self.left_pane, self.right_pane = Pane(left), Pane(self.right)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.left_pane)
        self.splitter.addWidget(self.right_pane)
        for pane in (0, 1):  # a dock opening or closing widens or narrows both panes alike
            self.splitter.setStretchFactor(pane, 1)
        self.right_pane.setAcceptDrops(True)
        self.right_pane.hide()
        self.on = False
        self.compare = Compare.IMAGE_ONLY
        self.right_series: Series | None = None  # None: the left pane's series
        self.collection: Collection | None = None
        self.all_series: list[Series] = []
        self.left_series: Series | None = None
        self.left_index = 0
        self.by_position = True
        self.maps: MapSource | None = None
        self.left_map: MapDrawing | None = None
        self.previous_map: MapDrawing | None = None
        self._syncing = False

        for source, target in ((self.left, self.right), (self.right, self.left)):
            source.box.sigRangeChanged.connect(lambda *_, s=source, t=target: self._copy_range(s, t))
            source.display_changed.connect(lambda s=source, t=target: self._copy_display(s, t))
        self.right.step_requested.connect(self.step_requested)
        self.right_pane.series_dropped.connect(self.set_right_series)
        self.left.overlay_toggled.connect(self._update_headers)
        self.left.overlay.sigImageChanged.connect(self._update_headers)

    # --- what the window tells

    def follow(self, collection: Collection, series: Series, index: int) -> None:
        """The left pane shows image ``index`` of ``series``: the right pane follows."""
        if collection is not self.collection:
            self.collection, self.all_series = collection, collection.all_series()
            self.right_series = None
        self.left_series, self.left_index = series, index
        self.refresh()

    def watch(self, maps: MapSource) -> None:
        """Keep each finished map, so that the right pane can show the one before the latest."""
        self.maps = maps
        maps.explanation_finished.connect(self._on_map_finished)
        maps.explained.connect(self._on_explained)

    def set_enabled(self, on: bool) -> None:
        """Show or hide the right pane; both headers go with it."""
        if on == self.on:
            return
        self.on = on
        self.right_pane.setVisible(on)
        self.left_pane.header.setVisible(on)
        self.right_pane.header.setVisible(on)
        if on:
            half = max(self.splitter.width() // 2, 1)
            self.splitter.setSizes([half, half])
        self.refresh()
        self.toggled.emit(on)

    def set_compare(self, compare: Compare) -> None:
        """Image only, or the previous map; the right pane goes back to the left's series."""
        self.compare, self.right_series = compare, None
        self.refresh()

    def set_right_series(self, index: int | None) -> None:
        """Show another open series in the right pane (None: the left's), scrolled with the left by position."""
        chosen = self.all_series[index] if index is not None and 0 <= index < len(self.all_series) else None
        self.right_series = None if chosen is self.left_series else chosen
        if not self.on:
            self.set_enabled(True)
        self.refresh()

    # --- the right pane

    @property
    def shown_series(self) -> Series | None:
        """The series in the right pane."""
        return self.right_series or self.left_series

    def refresh(self) -> None:
        """Put the right frame in the right pane, with its map if any, then link it to the left."""
        if not self.on or self.left_series is None:
            self._update_headers()
            return
        series = self.shown_series
        index, self.by_position = (self.left_index, True) if series is self.left_series else linked_index(
            self.left_series.frames, self.left_index, series)
        self._syncing = True
        try:
            self._show_right(series, index)
        finally:
            self._syncing = False
        self._copy_display(self.left, self.right)
        self._copy_range(self.left, self.right)
        self._update_headers()

    def _show_right(self, series: Series, index: int) -> None:
        frame = series.frames[index]
        position = (index, len(series.frames))
        try:
            self.right.show_image(self.cache.get(frame), position, keep_display=True)
        except DicomReadError as error:
            self.right.show_error(frame, f"This image cannot be shown: {error}", position)
            return
        drawing = self.right_map()
        if drawing is None:
            self.right.overlay.clear()
        else:
            self.right.show_heatmap(drawing.heat, drawing.levels, drawing.lut)

    def right_map(self) -> MapDrawing | None:
        """The map the right pane draws: the previous one of this very frame, when asked for."""
        previous = self.previous_map
        wanted = self.compare is Compare.PREVIOUS_MAP and self.right_series is None
        return previous if wanted and previous is not None and previous.frame is shown_frame(self.right) else None

    # --- linking

    def _copy_range(self, source: ImageView, target: ImageView) -> None:
        """Same centre and millimetres per screen pixel, whatever the size of each pane."""
        if self._syncing or not self.on or source.image_rect().isEmpty() or target.image_rect().isEmpty():
            return
        shown = source.box.viewRect()  # the range as set; the transform only follows at the next paint
        centre, mm_per_pixel = shown.center(), shown.width() / max(source.box.width(), 1.0)
        width, height = target.box.width() * mm_per_pixel, target.box.height() * mm_per_pixel
        self._syncing = True
        try:
            target.box.setRange(QRectF(centre.x() - width / 2, centre.y() - height / 2, width, height), padding=0.0)
        finally:
            self._syncing = False

    def _copy_display(self, source: ImageView, target: ImageView) -> None:
        """The same window and inversion, when the two images' values mean the same."""
        if self._syncing or not self.on or not self.window_linked():
            return
        self._syncing = True
        try:
            if target.voi != source.voi and source.voi is not None:
                target.set_voi(source.voi)
            if target.inverted != source.inverted:
                target.set_inverted(source.inverted)
        finally:
            self._syncing = False

    def window_linked(self) -> bool:
        """One series, or two in HU: a window means the same tissue in both."""
        left, right = self.left.image, self.right.image
        if left is None or right is None or left.is_colour or right.is_colour:
            return False
        return self.right_series is None or left.modality.units == right.modality.units == "HU"

    # --- maps and headers

    def _on_map_finished(self, _update: object) -> None:
        frame = shown_frame(self.left)
        title = self.maps.current.method.title if self.maps is not None and self.maps.current else "Explanation"
        self.left_map = drawn_map(self.left, frame, title) if frame is not None else None
        self.refresh()

    def _on_explained(self, explained: object) -> None:
        """The map on screen is forgotten (a new run, another image): it becomes the previous one."""
        if explained is None and self.left_map is not None:
            self.previous_map, self.left_map = self.left_map, None
            self.refresh()

    def _update_headers(self, *_: object) -> None:
        if not self.on:
            return
        for pane, text in ((self.left_pane, self.left_text()), (self.right_pane, self.right_text())):
            pane.header.setText(text)
            pane.header.setToolTip(text)

    def left_text(self) -> str:
        """What the left pane shows: its map and scale, or that there is none (or it is hidden)."""
        if self.left.overlay.image is None:
            text = "No map"
        elif self.left_map is not None and self.left_map.frame is shown_frame(self.left):
            text = self.left_map.label()
        else:
            text = "Map being made"
        hidden = self.left.overlay.image is not None and not self.left.overlay.isVisible()
        return f"Left{self._series_name(self.left_series)}: {text}{' (hidden: H shows it)' if hidden else ''}"

    def right_text(self) -> str:
        """What the right pane shows, and how it follows the left."""
        if self.right_series is not None:
            link = "linked by slice position" if self.by_position else "no common slice positions, linked by order"
            return f"Right{self._series_name(self.right_series)}: {link}, no map"
        if self.compare is Compare.IMAGE_ONLY:
            return "Right: no map (image only)"
        drawing = self.right_map()
        return f"Right: previous {drawing.label()}" if drawing else "Right: no previous map of this image"

    def _series_name(self, series: Series | None) -> str:
        """`` · 3: Lung (20)`` when the panes show different series, else nothing."""
        return f" · {series.title()}" if self.right_series is not None and series is not None else ""

    # --- menu

    def make_menu(self, parent: QWidget, toggle: QAction) -> QMenu:
        """View > Side by side: the toggle, what the right pane compares, and which series it shows."""
        menu = QMenu("Side &by side", parent)
        menu.addAction(toggle)
        menu.addSection("Right pane")
        group = QActionGroup(menu)
        for compare in Compare:
            action = menu.addAction(compare.value, lambda _=False, c=compare: self.set_compare(c))
            action.setCheckable(True)
            action.setChecked(compare is self.compare)
            group.addAction(action)
        self.series_menu = menu.addMenu("Right pane &series")
        self.series_menu.aboutToShow.connect(self._fill_series_menu)
        return menu

    def _fill_series_menu(self) -> None:
        """The left's series, then every other open series (a series can also be dragged from the browser)."""
        self.series_menu.clear()
        same = self.series_menu.addAction("Same as the left pane", lambda: self.set_right_series(None))
        same.setCheckable(True)
        same.setChecked(self.right_series is None)
        for index, series in enumerate(self.all_series):
            if series is self.left_series:
                continue
            action = self.series_menu.addAction(series.title(), lambda _=False, i=index: self.set_right_series(i))
            action.setCheckable(True)
            action.setChecked(series is self.right_series)
