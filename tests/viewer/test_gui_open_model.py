"""The Explanation panel's Open model… loads off the GUI thread, as the start-up model does.

A wrong file says so in one line and keeps the model in use.

Reading and checking a ``.pt2`` takes seconds on a large model: on the GUI thread that froze the
image. Here the loader is held back until the test lets it go, so a load on the GUI thread would
block the click itself and fail the test rather than slip through.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QPushButton

import viewer.explanation_ui as explanation_ui
from tests.model_factory import RegionDetector, card_for, export_model
from viewer.engine_loader import LOADING


def choose_file(monkeypatch, path: Path) -> None:
    """The file dialog answers ``path`` at once, as a reader picking that file would."""

    class Dialog:
        @staticmethod
        def getOpenFileName(*_args, **_kwargs) -> tuple[str, str]:
            return str(path), ""

    monkeypatch.setattr(explanation_ui, "QFileDialog", Dialog)


def open_model_button(ui) -> QPushButton:
    return next(button for button in ui.panel.findChildren(QPushButton) if button.text() == "Open model…")


def test_open_model_loads_on_another_thread_while_the_gui_thread_stays_responsive(qtbot, ui, tmp_path, monkeypatch):
    other = export_model(RegionDetector((0, 8, 0, 8)), card_for(48, 64), tmp_path / "other", name="other")
    choose_file(monkeypatch, other)
    release, entered = threading.Event(), threading.Event()
    loader_threads: list[threading.Thread] = []
    real_load = explanation_ui.load_model

    def held_load(*args, **kwargs):
        loader_threads.append(threading.current_thread())
        entered.set()
        release.wait(timeout=20)  # on the GUI thread this would hold the click for 20 s
        return real_load(*args, **kwargs)

    monkeypatch.setattr(explanation_ui, "load_model", held_load)
    previous = ui.model

    open_model_button(ui).click()
    assert entered.wait(timeout=10), "the load started"
    assert not release.is_set() and loader_threads[0] is not threading.main_thread()
    assert ui.loading and ui.panel.model_label.text() == LOADING and not ui.panel.explain_button.isEnabled()
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=5000)  # the event loop runs while the model loads
    timer.stop()
    assert ui.model is previous and ui.loading, "the model in use stays until the new one is in"

    with qtbot.waitSignal(ui.model_loaded, timeout=30000) as ended:
        release.set()
    assert ended.args == [True]
    assert ui.model is not previous and "other.pt2" in ui.panel.model_label.text()
    assert ui.panel.explain_button.isEnabled()


def test_a_wrong_model_file_says_so_in_one_line_and_keeps_the_previous_model(qtbot, window, ui, tmp_path, monkeypatch):
    bogus = tmp_path / "bogus.pt2"
    bogus.write_bytes(b"not an archive\nat all")
    bogus.with_suffix(".json").write_text(json.dumps(card_for(48, 64).to_dict()))  # a good card, a broken archive
    choose_file(monkeypatch, bogus)
    previous, previous_label = ui.model, ui.panel.model_label.text()

    with qtbot.waitSignal(ui.model_loaded, timeout=30000) as ended:
        open_model_button(ui).click()
    assert ended.args == [False]
    assert ui.model is previous and not ui.loading
    line = ui.panel.status.text()
    assert line.startswith("Model not loaded:") and "\n" not in line and "bogus.pt2" in line
    assert window.statusBar().currentMessage() == line
    assert ui.panel.model_label.text() == previous_label, "the panel names the model still in use"
    assert ui.panel.explain_button.isEnabled()
