"""The main window: the image in the middle, series on the left, tags on the right.

It owns what is open (a :class:`~dicom.series.Collection`) and where the reader is
in it (series and image), turns the bindings into menu actions, reports the pixel under
the cursor in the status bar, and remembers recent paths and its own layout in QSettings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom.valuerep import PersonName
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dicom import series as dicom_series
from dicom.corner_text import describe_voi
from dicom.files import DicomReadError, ReadError
from dicom.image import FrameCache, FrameImage
from dicom.series import Collection, Series
from viewer import bindings
from viewer.cine import RATES, Cine
from viewer.image_view import ZOOM_STEP, ImageView
from viewer.measurement_tools import MeasurementTools
from viewer.series_browser import SeriesBrowser
from viewer.side_by_side import SideBySide
from viewer.tag_panel import TagPanel

MAX_RECENT = 10
#: Default widths of the series browser (a thumbnail beside its title) and of the tags dock.
DOCK_WIDTHS = [260, 420]
RECENT_KEY = "recent"


def number(value: object) -> str:
    """A pixel value without noise: ``40`` rather than ``40.0``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_pixel(image: FrameImage, row: int, column: int) -> str:
    """What the status bar says about one pixel: ``stored 1064 → 40 HU``."""
    values = image.value_at(row, column)
    if values is None:
        return ""
    stored, modality = values
    if image.modality is None:
        return "RGB " + ", ".join(str(v) for v in stored)
    if image.modality.lut is None and image.modality.slope is None:
        return f"value {number(stored)}"
    return f"stored {number(stored)} → {number(modality)} {image.modality.units}".rstrip()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class ShortcutsDialog(QDialog):
    """The bindings table, for Help > Keyboard shortcuts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse")
        rows = bindings.table()
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Input", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        for i, (keys, action) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(keys))
            self.table.setItem(i, 1, QTableWidgetItem(action))
        self.table.resizeColumnsToContents()
        self.table.resizeRowsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        height = self.table.verticalHeader().length() + self.table.horizontalHeader().height()
        self.resize(self.table.horizontalHeader().length() + 40, min(height + 70, 760))


class MainWindow(QMainWindow):
    """The viewer's window. ``open_paths`` is what the command line and drops call.

    Signals
    -------
    frame_shown(Frame)
        Another frame is on show (or failed to decode): what an explanation overlay follows.
    """

    frame_shown = Signal(object)

    def __init__(self, settings: QSettings | None = None, cache: FrameCache | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings("Lightbox", "Lightbox")
        self.cache = cache if cache is not None else FrameCache()
        self.collection = Collection([], [])
        self.series_index = -1
        self.frame_index = 0
        self.error_box: QMessageBox | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.pacs_window: QWidget | None = None
        #: Every dock with its default place: (dock, area, dock it is tabbed with or None).
        self.dock_defaults: list[tuple[QDockWidget, Qt.DockWidgetArea, QDockWidget | None]] = []
        self.docks_menu: QMenu | None = None

        self.setWindowTitle("Lightbox")
        self.setAcceptDrops(True)
        self.view = ImageView()
        self.measurements = MeasurementTools(self.view, self)
        self.addToolBar(self.measurements.toolbar())
        self.compare = SideBySide(self.view, self.cache, self)
        self.setCentralWidget(self.compare.splitter)
        self.cine = Cine(self)
        self.browser = SeriesBrowser(self.cache)
        self.tags = TagPanel()
        self.series_dock = self.add_dock("Series", "series_dock", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tags_dock = self.add_dock("Tags", "tags_dock", self.tags, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.series_dock, self.tags_dock], DOCK_WIDTHS, Qt.Orientation.Horizontal)

        self.pixel_label, self.position_label, self.window_label, self.zoom_label = (QLabel() for _ in range(4))
        for label, width in (
            (self.pixel_label, 200),
            (self.position_label, 110),
            (self.window_label, 190),
            (self.zoom_label, 90),
        ):
            label.setMinimumWidth(width)
            self.statusBar().addPermanentWidget(label)

        self.key_actions = self._make_actions()
        self.preset_actions = self._make_preset_actions()
        self._make_menus()

        self.view.step_requested.connect(self.step)
        self.view.cursor_moved.connect(self._show_pixel)
        self.view.display_changed.connect(self._show_display)
        self.browser.series_selected.connect(self.show_series)
        self.compare.step_requested.connect(self.step)
        self.compare.toggled.connect(self.key_actions["side_by_side"].setChecked)
        self.cine.tick.connect(self.next_cine_frame)
        self.cine.changed.connect(self._show_cine)
        self._restore_layout()

    # --- opening

    def open_paths(self, paths: Sequence[str | Path]) -> bool:
        """Open files, folders or DICOMDIRs; True when something new is now shown.

        Files that fail are listed in a dismissible message and the status bar. When nothing
        at all could be read, what was open stays open.
        """
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            collection = dicom_series.open_paths(paths)
        finally:
            QGuiApplication.restoreOverrideCursor()
        self._report_errors(collection.errors, opened=bool(collection.studies))
        if not collection.studies:
            return False
        self._remember(paths)
        self.collection = collection
        self.series_index = -1
        self.show_series(0)
        self.browser.set_studies(collection.studies)
        study = collection.studies[0]
        patient = PersonName(study.patient_name).family_comma_given() if study.patient_name else study.patient_id
        self.setWindowTitle(f"{patient} – Lightbox" if patient else "Lightbox")
        images = sum(len(s.frames) for s in self.series)
        if not collection.errors:
            self.statusBar().showMessage(f"Opened {len(self.series)} series, {plural(images, 'image')}", 5000)
        return True

    def refresh_paths(self, paths: Sequence[str | Path]) -> None:
        """Read ``paths`` again as files arrive (a PACS retrieve), staying on the series and image on show."""
        collection = dicom_series.open_paths(paths)
        if not collection.studies:
            return
        uid = self.current_series.uid if self.current_series is not None else None
        self.collection = collection
        self.browser.set_studies(collection.studies)
        self.series_index = next((k for k, series in enumerate(self.series) if series.uid == uid), 0)
        self.browser.select(self.series_index)
        self._show_frame(min(self.frame_index, len(self.current_series.frames) - 1), keep_display=True)
        images = sum(len(s.frames) for s in self.series)
        self.statusBar().showMessage(f"Opened {len(self.series)} series, {plural(images, 'image')}", 5000)

    def open_from_pacs(self) -> None:
        """File > Open from PACS: the query/retrieve window, made on first use (it loads the DICOM network stack)."""
        if self.pacs_window is None:
            from viewer.pacs_window import PacsWindow

            self.pacs_window = PacsWindow(self, self)
        self.pacs_window.show()
        self.pacs_window.raise_()
        self.pacs_window.activateWindow()

    def edit_pacs_nodes(self) -> None:
        from viewer.pacs_nodes_dialog import PacsNodesDialog

        PacsNodesDialog(self).open()

    def _report_errors(self, errors: list[ReadError], opened: bool) -> None:
        if not errors:
            return
        headline = f"{plural(len(errors), 'file')} could not be opened"
        self.statusBar().showMessage(headline + ("" if opened else "; nothing new to show"))
        if self.error_box is not None:
            self.error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, "Lightbox", headline, QMessageBox.StandardButton.Close, self)
        box.setInformativeText("The other files are shown." if opened else "What was open stays open.")
        box.setDetailedText("\n".join(f"{error.path}: {error.error}" for error in errors))
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._forget_error_box)
        box.show()
        self.error_box = box

    def _forget_error_box(self) -> None:
        self.error_box = None

    def open_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open DICOM files", self._last_folder(), "All files (*);;DICOM (*.dcm *.DCM *.dicom *.ima DICOMDIR)"
        )
        if paths:
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a DICOM folder", self._last_folder())
        if folder:
            self.open_paths([folder])

    def _last_folder(self) -> str:
        recent = self.recent_paths()
        if not recent:
            return str(Path.home())
        path = Path(recent[0])
        return str(path if path.is_dir() else path.parent)

    # --- recent paths

    def recent_paths(self) -> list[str]:
        """Paths opened before, most recent first."""
        value = self.settings.value(RECENT_KEY, [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, paths: Sequence[str | Path]) -> None:
        opened = [str(Path(p).resolve()) for p in paths]
        recent = list(dict.fromkeys([*opened, *self.recent_paths()]))[:MAX_RECENT]
        self.settings.setValue(RECENT_KEY, recent)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_paths():
            self.recent_menu.addAction(path, lambda _checked=False, p=path: self.open_paths([p]))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    # --- where the reader is

    @property
    def series(self) -> list[Series]:
        return self.collection.all_series()

    @property
    def current_series(self) -> Series | None:
        return self.series[self.series_index] if 0 <= self.series_index < len(self.series) else None

    def show_series(self, index: int) -> None:
        """Go to a series, on its first image, with its own default window."""
        index = min(max(index, 0), len(self.series) - 1)
        if index == self.series_index or index < 0:
            return
        self.series_index = index
        self.cine.stop()
        self.browser.select(index)
        self._show_frame(0, keep_display=False)

    def step_series(self, delta: int) -> None:
        if self.series:
            self.show_series(self.series_index + delta)

    def go_to(self, index: int) -> None:
        """Go to an image of the current series; past either end stops at the end."""
        series = self.current_series
        if series is None:
            return
        index = min(max(index, 0), len(series.frames) - 1)
        if index != self.frame_index:
            self._show_frame(index, keep_display=True)

    def step(self, delta: int) -> None:
        self.go_to(self.frame_index + delta)

    def _show_frame(self, index: int, keep_display: bool) -> None:
        series = self.current_series
        frame = series.frames[index]
        self.frame_index = index
        position = (index, len(series.frames))
        try:
            image = self.cache.get(frame)
        except DicomReadError as error:
            self.view.show_error(frame, f"This image cannot be shown: {error}", position)
        else:
            self.view.show_image(image, position, keep_display)
        self.tags.set_dataset(frame.header)
        self._update_presets()
        self.compare.follow(self.collection, series, index)
        self.frame_shown.emit(frame)

    # --- cine

    def toggle_cine(self) -> None:
        """Play the current series (or multi-frame image) as a loop, or pause it."""
        series = self.current_series
        if self.cine.playing or series is None:
            self.cine.stop()
        elif len(series.frames) < 2:
            self.statusBar().showMessage("Cine: one image only, nothing to play", 4000)
        else:
            self.cine.play(series.frames[self.frame_index])

    def next_cine_frame(self) -> None:
        """The cine timer's slot: the next image, back to the first after the last."""
        series = self.current_series
        if series is None:
            self.cine.stop()
        else:
            self.go_to((self.frame_index + 1) % len(series.frames))

    def _show_cine(self) -> None:
        state = "playing" if self.cine.playing else "paused"
        chosen = "the file's rate" if self.cine.fps is None else "chosen"
        self.statusBar().showMessage(f"Cine {state}, {self.cine.rate:g} frames/s ({chosen})", 4000)

    # --- display

    def apply_preset(self, number: int) -> None:
        """Key ``number`` (1 to 9): see :func:`viewer.bindings.presets`."""
        image = self.view.image
        choices = bindings.presets(image) if image is not None else []
        if 1 <= number <= len(choices):
            self.view.set_voi(choices[number - 1])

    def _update_presets(self) -> None:
        image = self.view.image
        choices = bindings.presets(image) if image is not None else []
        for number, action in enumerate(self.preset_actions, start=1):
            voi = choices[number - 1] if number <= len(choices) else None
            action.setText(describe_voi(voi) if voi is not None else f"Preset {number}")
            action.setVisible(voi is not None)

    def _show_pixel(self, row: int, column: int) -> None:
        image = self.view.image
        inside = image is not None and row >= 0
        self.pixel_label.setText(describe_pixel(image, row, column) if inside else "")
        self.position_label.setText(f"x {column}  y {row}" if inside else "")

    def _show_display(self) -> None:
        has_image = self.view.image is not None
        self.window_label.setText(describe_voi(self.view.voi) if has_image and not self.view.image.is_colour else "")
        self.zoom_label.setText(f"Zoom {self.view.zoom * 100:.0f}%" if has_image else "")

    # --- actions and menus

    def _handlers(self) -> dict[str, object]:
        """What each action of :data:`viewer.bindings.KEYS` does."""
        return {
            "previous_image": lambda: self.step(-1),
            "next_image": lambda: self.step(1),
            "previous_series": lambda: self.step_series(-1),
            "next_series": lambda: self.step_series(1),
            "back_ten": lambda: self.step(-10),
            "forward_ten": lambda: self.step(10),
            "first_image": lambda: self.go_to(0),
            "last_image": lambda: self.go_to(len(self.current_series.frames) - 1 if self.current_series else 0),
            "invert": self.view.toggle_invert,
            "reset": self.view.reset,
            "fit": self.view.fit,
            "zoom_in": lambda: self.view.zoom_by(ZOOM_STEP),
            "zoom_out": lambda: self.view.zoom_by(1 / ZOOM_STEP),
            "toggle_corner_text": self.view.set_corner_text_visible,
            "toggle_overlay": self.view.toggle_overlay,
            "side_by_side": self.compare.set_enabled,
            "cine": self.toggle_cine,
            "cine_slower": lambda: self.cine.step_rate(faster=False),
            "cine_faster": lambda: self.cine.step_rate(faster=True),
        }

    def _make_actions(self) -> dict[str, QAction]:
        handlers = self._handlers()
        actions = {}
        for binding in bindings.KEYS:
            action = QAction(binding.description, self)
            action.setShortcuts(binding.shortcuts())
            action.triggered.connect(handlers[binding.action])
            self.addAction(action)
            actions[binding.action] = action
        actions["toggle_corner_text"].setCheckable(True)
        actions["toggle_corner_text"].setChecked(self.view.corner_text_visible)
        actions["side_by_side"].setCheckable(True)
        return actions

    def _make_preset_actions(self) -> list[QAction]:
        actions = []
        for number, key in enumerate(bindings.PRESET_KEYS, start=1):
            action = QAction(f"Preset {number}", self)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(lambda _=False, n=number: self.apply_preset(n))
            self.addAction(action)
            actions.append(action)
        return actions

    def _make_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu.addAction("Open &File...", QKeySequence.StandardKey.Open, self.open_file_dialog)
        file_menu.addAction("Open F&older...", QKeySequence("Ctrl+Shift+O"), self.open_folder_dialog)
        [pacs_key] = bindings.PACS_KEYS
        file_menu.addAction("Open from &PACS…", pacs_key.shortcuts()[0], self.open_from_pacs)
        file_menu.addAction("PACS &nodes…", self.edit_pacs_nodes)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        self.export_menu = file_menu.addMenu("&Export")  # filled by viewer.export_actions
        self.file_menu = file_menu  # viewer.pacs_send adds its item after Export
        file_menu.addSeparator()
        file_menu.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)

        view_menu = menus.addMenu("&View")
        self.docks_menu = view_menu
        self.docks_end = view_menu.addSeparator()
        for dock, _area, _tab in self.dock_defaults:
            view_menu.insertAction(self.docks_end, dock.toggleViewAction())
        self.reset_layout_action = view_menu.addAction("Reset &layout", self.reset_layout)
        view_menu.addSeparator()
        for name in ("toggle_corner_text", "toggle_overlay", "invert", "reset", "fit", "zoom_in", "zoom_out"):
            view_menu.addAction(self.key_actions[name])
        window_menu: QMenu = view_menu.addMenu("&Window presets")
        window_menu.addActions(self.preset_actions)
        view_menu.addSeparator()
        view_menu.addMenu(self.compare.make_menu(self, self.key_actions["side_by_side"]))
        view_menu.addMenu(self._make_cine_menu())

        go_menu = menus.addMenu("&Go")
        for name in (
            "previous_image",
            "next_image",
            "back_ten",
            "forward_ten",
            "first_image",
            "last_image",
            "previous_series",
            "next_series",
        ):
            go_menu.addAction(self.key_actions[name])

        self.measurements.fill_menu(menus.addMenu("&Tools"))

        help_menu = menus.addMenu("&Help")
        help_menu.addAction("&Keyboard shortcuts", QKeySequence.StandardKey.HelpContents, self.show_shortcuts)

    def _make_cine_menu(self) -> QMenu:
        """View > Cine: play/pause, slower/faster, and the frame rate: the file's, or a fixed one."""
        menu = QMenu("&Cine", self)
        menu.addActions([self.key_actions[name] for name in ("cine", "cine_slower", "cine_faster")])
        menu.addSection("Frame rate")
        group = QActionGroup(menu)
        for fps in (None, *RATES):
            text = "The file's rate (else 10 frames/s)" if fps is None else f"{fps:g} frames/s"
            action = menu.addAction(text, lambda _=False, f=fps: self.cine.set_fps(f))
            action.setCheckable(True)
            action.setChecked(fps is None)
            group.addAction(action)
        self.cine.changed.connect(lambda: self._check_rate(group))
        return menu

    def _check_rate(self, group: QActionGroup) -> None:
        """Tick the rate in use once the slower/faster keys have moved it."""
        choices = [None, *RATES]
        for action, fps in zip(group.actions(), choices, strict=True):
            action.setChecked(fps == self.cine.fps)

    def show_shortcuts(self) -> None:
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    def add_dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea,
                 tab_with: QDockWidget | None = None) -> QDockWidget:
        """Put a panel beside the image (tabbed with ``tab_with``); ``name`` keys its place in the saved layout.

        Every dock is listed in the View menu, so a closed one can be opened again. A dock of
        that name already there (a placeholder, such as the Explanation dock while the engine
        loads) takes ``widget`` and keeps its place.
        """
        dock = self.findChild(QDockWidget, name)
        if dock is not None:
            placeholder = dock.widget()
            dock.setWidget(widget)
            placeholder.deleteLater()
            return dock
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState() finds docks by name
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        if tab_with is not None:
            self.tabifyDockWidget(tab_with, dock)
            dock.raise_()
        self.dock_defaults.append((dock, area, tab_with))
        if self.docks_menu is not None:
            self.docks_menu.insertAction(self.docks_end, dock.toggleViewAction())
        return dock

    def reset_layout(self) -> None:
        """Every dock back in its default place, shown, docked, tabbed as at first start."""
        for dock, _area, _tab in self.dock_defaults:
            self.removeDockWidget(dock)
        for dock, area, tab_with in self.dock_defaults:
            dock.setFloating(False)
            self.addDockWidget(area, dock)
            dock.setFloating(False)
            dock.show()
            if tab_with is not None:
                self.tabifyDockWidget(tab_with, dock)
                dock.raise_()
        self.resizeDocks([self.series_dock, self.tags_dock], DOCK_WIDTHS, Qt.Orientation.Horizontal)

    # --- layout memory, drops and closing

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            screen = QGuiApplication.primaryScreen().availableGeometry()
            self.resize(min(1440, int(screen.width() * 0.9)), min(920, int(screen.height() * 0.9)))
        state = self.settings.value("window_state")
        if state is not None:
            self.restoreState(state)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.sync()
        self.browser.shutdown()
        if self.pacs_window is not None:
            self.pacs_window.close()
        super().closeEvent(event)
