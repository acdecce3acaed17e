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

    The image comes first: the explanation side (torch, the methods) is imported in the
    background after the first paint, then ``model``, or the bundled demo model, loads in
    another thread while the panel says so. With ``screenshot`` the window is rendered
    offscreen at a fixed size, with settings of its own so the reader's layout and recent files
    are neither used nor changed, and saved as PNG as soon as the image is painted; with
    ``explain`` the model is loaded and the method run to its end first. The exit code is 0
    once the picture is written.
    """
    if screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = application()
    # After the platform is chosen: these load pyqtgraph, not torch.
    from viewer.engine_loader import EngineLoader, FirstPaint, loading_dock
    from viewer.main_window import MainWindow

    targets = list(paths) or ([str(DEMO_STUDY)] if DEMO_STUDY.exists() else [])
    model_path = model or (DEMO_MODEL if DEMO_MODEL.exists() else None)
    if screenshot is None:
        window = MainWindow()
        loading_dock(window)
        loader = EngineLoader(window)
        loader.ready.connect(lambda module: start_explanations(module.ExplanationUi(window, model_path)))
        loader.failed.connect(lambda line: window.statusBar().showMessage(line))
        FirstPaint(window.view.viewport(), loader.start)
        window.show()
        if targets:
            window.open_paths(targets)
        return app.exec()

    with tempfile.TemporaryDirectory() as folder:
        window = MainWindow(settings=QSettings(str(Path(folder) / "lightbox.ini"), QSettings.Format.IniFormat))
        loading_dock(window)
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        if targets:
            window.open_paths(targets)
        window.browser.wait_for_thumbnails()
        ui = None
        if explain is not None:
            from viewer.explanation_ui import ExplanationUi

            ui = ExplanationUi(window, model_path)
            ui.wait_until_ready()
            report_model_error(ui)
        explained = ui is None or wait_for_explanation(app, ui, explain)
        for _ in range(5):  # deliver the thumbnails and let layout and painting settle
            app.processEvents()
        saved = window.grab().save(screenshot, "PNG")
        if ui is not None:
            ui.shutdown()
        window.close()
    if not explained:
        print(f"error: the explanation did not finish: {ui.panel.status.text()}", file=sys.stderr)
    return 0 if saved and explained else 1


def start_explanations(ui: ExplanationUi) -> None:
    """The explanation side is in the window: say in the terminal too when its model fails to load."""
    ui.model_loaded.connect(lambda _adopted: report_model_error(ui))
