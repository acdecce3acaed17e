"""The image first, torch later: the explanation side is imported once the first image is painted.

Importing torch and the methods takes longer than reading and painting a study, so the window
opens without them: the Explanation dock says :data:`LOADING` meanwhile, and a background
thread imports :mod:`viewer.explanation_ui` (and torch with it) after the view's first paint,
so the import does not compete with that paint for the interpreter. This module imports
neither torch nor anything that does.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QDockWidget, QLabel, QWidget

from viewer.main_window import MainWindow

#: What the explanation panel says until the engine and its model are ready.
LOADING = "loading model…"
#: The module that brings the engine (and torch); imported in the background.
EXPLANATION_MODULE = "viewer.explanation_ui"


def loading_dock(window: MainWindow) -> QDockWidget:
    """The Explanation dock, saying the model is loading; the explanation panel takes it over."""
    label = QLabel(LOADING)
    label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    label.setMargin(8)
    return window.add_dock("Explanation", "explain_dock", label, Qt.DockWidgetArea.RightDockWidgetArea,
                           tab_with=window.tags_dock)


class FirstPaint(QObject):
    """Calls ``callback`` once, just after ``widget`` has painted for the first time."""

    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self.callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            watched.removeEventFilter(self)
            QTimer.singleShot(0, self.callback)  # after this paint, not before it
        return False


class EngineLoader(QObject):
    """Imports the explanation side in a thread; ``ready`` carries the module, ``failed`` a line."""

    ready = Signal(object)
    failed = Signal(str)

    def start(self) -> None:
        threading.Thread(target=self._load, name="engine loader").start()

    def _load(self) -> None:
        try:
            module = importlib.import_module(EXPLANATION_MODULE)
        except ImportError as error:
            self.failed.emit(f"the explanation engine could not be loaded: {error}")
        else:
            self.ready.emit(module)
