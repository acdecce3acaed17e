"""What the viewer's GUI tests share: the main window, a CT slice, and mouse wheel turns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from tests.dicom_factory import write_image


def lung_phantom(path: Path, spacing: float = 0.7) -> Path:
    """One 64 x 64 CT slice: -600 HU on the left half, 40 HU on the right (stored HU + 1024)."""
    hu = np.full((64, 64), -600, dtype=np.int16)
    hu[:, 32:] = 40
    return write_image(path, (hu + 1024).astype(np.uint16), modality="CT", bits_stored=12, slope=1,
                       intercept=-1024, windows=[(40, 400, "SOFT TISSUE")], pixel_spacing=spacing)


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
