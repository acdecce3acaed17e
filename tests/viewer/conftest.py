"""What the viewer's GUI tests share: the main window, and mouse wheel turns."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget


def turn_wheel(viewport: QWidget, notches: int, at: QPointF) -> None:
    """Turn the mouse wheel over a widget; negative notches turn it toward the reader (down)."""
    event = QWheelEvent(
        at,
        QPointF(viewport.mapToGlobal(at)),
        QPoint(),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, event)


@pytest.fixture
def window(qtbot, qt_settings):
    """A shown main window with settings of the test's own."""
    from viewer.main_window import MainWindow

    window = MainWindow(settings=qt_settings)
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    return window
