"""Starting the GUI: the application and its dark theme, the window, and screenshots."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEventLoop, QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from dicom.bundled import DEMO_MODEL, DEMO_STUDY

if TYPE_CHECKING:
    from viewer.explanation_ui import ExplanationUi

SCREENSHOT_SIZE = (1400, 900)


def dark_palette() -> QPalette:
    """Dark grey panels around a black image, as in reading rooms: the eye adapts to the image."""
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: QColor(37, 37, 38),
        QPalette.ColorRole.WindowText: QColor(220, 220, 220),
        QPalette.ColorRole.Base: QColor(24, 24, 24),
        QPalette.ColorRole.AlternateBase: QColor(32, 32, 33),
        QPalette.ColorRole.ToolTipBase: QColor(45, 45, 48),
        QPalette.ColorRole.ToolTipText: QColor(220, 220, 220),
        QPalette.ColorRole.PlaceholderText: QColor(130, 130, 130),
        QPalette.ColorRole.Text: QColor(220, 220, 220),
        QPalette.ColorRole.Button: QColor(45, 45, 48),
        QPalette.ColorRole.ButtonText: QColor(220, 220, 220),
        QPalette.ColorRole.BrightText: QColor(255, 90, 90),
        QPalette.ColorRole.Link: QColor(90, 160, 230),
        QPalette.ColorRole.Highlight: QColor(38, 95, 153),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Light: QColor(60, 60, 63),
        QPalette.ColorRole.Midlight: QColor(50, 50, 53),
        QPalette.ColorRole.Mid: QColor(40, 40, 42),
        QPalette.ColorRole.Dark: QColor(20, 20, 20),
        QPalette.ColorRole.Shadow: QColor(0, 0, 0),
    }
    for role, colour in colours.items():
        palette.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(110, 110, 110))
    return palette


def application() -> QApplication:
    """The running QApplication, created and themed on first use."""
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Lightbox")
    app.setOrganizationName("Lightbox")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    return app


def wait_for_explanation(app: QApplication, ui: ExplanationUi, method: str) -> bool:
    """Run one explanation session (the map and its trust figures) to the end, for a screenshot of the result."""
    index = ui.panel.method.findData(method)
    if index < 0:
        names = ", ".join(ui.panel.method.itemData(k) for k in range(ui.panel.method.count()))
        ui.panel.status.setText(f"there is no method {method!r}; choose one of {names}")
        return False
    ui.panel.method.setCurrentIndex(index)
    stopped: list[bool] = []
    ui.controller.idle.connect(lambda: stopped.append(True))
    ui.explain()
    if not ui.controller.busy:  # nothing started: no model, no image, or bad parameters
        return False
    while not stopped:
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
    app.processEvents()
    return ui.outcome is not None and ui.outcome.final is not None


def report_model_error(ui: ExplanationUi) -> None:
    """Say in the terminal, in one line, why the model asked for is not loaded (the panel says it too)."""
    if ui.load_error:
        print(f"error: {ui.load_error}", file=sys.stderr)


def run_gui(paths: list[str], screenshot: str | None = None, explain: str | None = None,
            model: Path | None = None) -> int:
    """Open the viewer on ``paths`` (the demo study when none) and run until it closes.

    The explanation panel starts with ``model``, or the bundled demo model. With ``screenshot``
    the window is rendered offscreen at a fixed size, with settings of its own so the reader's
    layout and recent files are neither used nor changed, after running the ``explain`` method
    to its end if one is named; it is saved as PNG and the exit code is 0 once it is written.
    """
    if screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = application()
    # After the platform is chosen: these load pyqtgraph, and the explanation side loads torch.
    from viewer.explanation_ui import ExplanationUi
    from viewer.main_window import MainWindow

    targets = list(paths) or ([str(DEMO_STUDY)] if DEMO_STUDY.exists() else [])
    model_path = model or (DEMO_MODEL if DEMO_MODEL.exists() else None)
    if screenshot is None:
        window = MainWindow()
        ui = ExplanationUi(window, model_path)
        report_model_error(ui)
        window.show()
        if targets:
            window.open_paths(targets)
        code = app.exec()
        ui.shutdown()
        return code

    with tempfile.TemporaryDirectory() as folder:
        window = MainWindow(settings=QSettings(str(Path(folder) / "lightbox.ini"), QSettings.Format.IniFormat))
        ui = ExplanationUi(window, model_path)
        report_model_error(ui)
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        if targets:
            window.open_paths(targets)
        window.browser.wait_for_thumbnails()
        explained = explain is None or wait_for_explanation(app, ui, explain)
        for _ in range(5):  # deliver the thumbnails and let layout and painting settle
            app.processEvents()
        saved = window.grab().save(screenshot, "PNG")
        ui.shutdown()
        window.close()
    if not explained:
        print(f"error: the explanation did not finish: {ui.panel.status.text()}", file=sys.stderr)
    return 0 if saved and explained else 1
