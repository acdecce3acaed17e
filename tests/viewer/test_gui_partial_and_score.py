"""A map a cancel stopped is marked partial on screen; the score explained is chosen, named and warned about."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.dicom_factory import write_radiograph
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model
from tests.viewer.conftest import view_rgb
from viewer.explanation_ui import PARTIAL_COLOUR, ExplanationUi

BOX = (8, 24, 30, 50)  # rows 8-24, columns 30-50 of the 48 x 64 model input


def label_pixels(window, ui) -> np.ndarray:
    """The view's device pixels under the partial label, as a screenshot of the view holds them."""
    view, label = window.view, ui.partial_label
    corners = view.mapFromScene(label.mapRectToScene(label.boundingRect())).boundingRect()
    ratio = view.devicePixelRatioF()
    rgb = view_rgb(view)
    top, left = max(int(corners.top() * ratio), 0), max(int(corners.left() * ratio), 0)
    return rgb[top:int(corners.bottom() * ratio), left:int(corners.right() * ratio)]


def amber(rgb: np.ndarray) -> int:
    """How many pixels are the label's amber."""
    return int((np.abs(rgb - np.array(PARTIAL_COLOUR)).max(axis=-1) < 40).sum())


def test_a_cancelled_map_is_marked_partial_on_screen_and_a_finished_one_is_not(qtbot, window, tmp_path):
    ui = ExplanationUi(window, export_model(SmallCnn(), card_for(64, 64), tmp_path / "slow"))
    ui.wait_until_ready()
    try:
        window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
        editors = ui.panel.forms.currentWidget().editors
        editors["window"].setValue(2)
        editors["stride"].setValue(1)
        with qtbot.waitSignal(ui.controller.progressed, timeout=30000):
            ui.explain()
        qtbot.keyClick(window.view, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: not ui.controller.busy, timeout=10000)
        qtbot.wait(100)
        assert window.view.overlay.image is not None, "the partial map stays on screen"
        unit = ui.panel.colour_bar.unit
        assert unit.isVisible() and "partial: cancelled at" in unit.text()
        assert ui.partial_label.isVisible() and ui.partial_label.textItem.toPlainText().startswith("PARTIAL — CANCELLED AT")
        assert amber(label_pixels(window, ui)) > 20, "the label is drawn on the view, and so in a picture of it"

        editors["window"].setValue(16)
        editors["stride"].setValue(16)
        with qtbot.waitSignal(ui.explanation_finished, timeout=30000):
            qtbot.mouseClick(ui.panel.explain_button, Qt.MouseButton.LeftButton)
        assert not ui.partial_label.isVisible() and "partial" not in unit.text()
    finally:
        ui.shutdown()


def test_a_saturated_probability_is_said_before_a_run_and_the_log_odds_map_is_named(qtbot, window, tmp_path):
    ui = ExplanationUi(window, export_model(RegionDetector(BOX, offset=30.0), card_for(48, 64), tmp_path / "sure"))
    ui.wait_until_ready()
    try:
        window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
        saturation = ui.panel.saturation
        qtbot.waitUntil(saturation.isVisible, timeout=10000)
        assert saturation.text().startswith("probability saturated at 1.000") and "log-odds" in saturation.text()
        ui.panel.score.setCurrentText("log-odds")
        assert not saturation.isVisible()
        editors = ui.panel.forms.currentWidget().editors
        editors["window"].setValue(8)
        editors["stride"].setValue(4)
        with qtbot.waitSignal(ui.explanation_finished, timeout=30000) as finished:
            qtbot.mouseClick(ui.panel.explain_button, Qt.MouseButton.LeftButton)
        assert np.abs(finished.args[0].heatmap).max() > 0
        assert ui.panel.colour_bar.unit.text().startswith("drop in log-odds")
        assert "its log-odds explained" in ui.panel.status.text()
        qtbot.waitUntil(lambda: ui.exports.on_screen() is not None, timeout=30000)
        assert ui.exports.on_screen().units == "drop in log-odds"
        ui.panel.score.setCurrentText("probability")
        assert saturation.isVisible()
        ui.panel.method.setCurrentIndex(ui.panel.method.findData("gradcam"))
        assert not saturation.isVisible(), "Grad-CAM explains the log-odds whatever is chosen"
    finally:
        ui.shutdown()


@pytest.mark.parametrize("score", ["probability", "log-odds"])
def test_the_panels_score_reaches_the_settings(ui_model, score):
    ui, model = ui_model
    ui.panel.score.setCurrentText(score)
    assert ui.panel.settings(model).score == score


@pytest.fixture
def ui_model(window, tmp_path):
    ui = ExplanationUi(window, export_model(RegionDetector(BOX), card_for(48, 64), tmp_path / "model"))
    ui.wait_until_ready()
    yield ui, ui.model
    ui.shutdown()
