"""What the viewer's GUI tests share: the main window, a CT slice, mouse wheel turns, and the view's pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from tests.dicom_factory import write_image
from tests.model_factory import RegionDetector, card_for, export_model


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


def view_rgb(view: QWidget) -> np.ndarray:
    """What a view shows, as rows x columns x RGB in device pixels: what a screenshot of it holds."""
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(height, image.bytesPerLine())[:, : 3 * width]
    return pixels.reshape(height, width, 3).astype(int)


def on_screen(view, x: float, y: float) -> tuple[int, int]:
    """The device pixel (row, column) of an image view that shows the point ``x``, ``y`` in millimetres."""
    point = view.box.mapViewToDevice(QPointF(x, y))
    ratio = view.devicePixelRatioF()
    return int(point.y() * ratio), int(point.x() * ratio)


def coloured(rgb: np.ndarray) -> np.ndarray:
    """Which pixels are coloured rather than grey: their channels differ by more than 30 levels."""
    return rgb.max(axis=-1) - rgb.min(axis=-1) > 30


def coloured_fraction(window) -> float:
    """The share of the view's pixels inside the image that are coloured rather than grey."""
    view = window.view
    rect = view.image_rect()
    top, left = on_screen(view, rect.left(), rect.top())
    bottom, right = on_screen(view, rect.right(), rect.bottom())
    inside = view_rgb(view)[max(top, 0): bottom, max(left, 0): right]
    assert inside.size, "the image is on screen"
    return float(coloured(inside).mean())


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


#: The box the region detector finds: rows 8-24, columns 30-50 of its 48 x 64 model input.
BOX = (8, 24, 30, 50)


@pytest.fixture
def ui(window, tmp_path):
    """The explanation dock on a model that scores a bright box (:data:`BOX`), shut down after the test."""
    from viewer.explanation_ui import ExplanationUi

    ui = ExplanationUi(window, export_model(RegionDetector(BOX), card_for(48, 64), tmp_path / "model"))
    ui.wait_until_ready()
    yield ui
    ui.shutdown()
