"""What the reader is told before and after an explanation that could mislead, and the way back to defaults.

An image outside what the model's card expects is warned of in the panel (and may still be
explained); an insertion curve from a baseline the model already scores as high as the image is
called meaningless in the trust panel; a method's parameters and display go back to their defaults.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import Qt

from dicom.bundled import DEMO_MODEL, DEMO_STUDY
from explain.methods import METHODS
from tests.dicom_factory import write_radiograph
from tests.model_factory import RegionDetector, card_for, export_model
from viewer.explanation_ui import ExplanationUi

BOX = (8, 24, 30, 50)


@pytest.fixture
def demo_ui(window):
    ui = ExplanationUi(window, DEMO_MODEL)
    ui.wait_until_ready()
    yield ui
    ui.shutdown()


def test_a_ct_slice_with_the_chest_model_is_warned_of_in_one_line_and_can_still_be_explained(qtbot, window, demo_ui):
    window.open_paths([get_testdata_file("CT_small.dcm")])
    warning = demo_ui.panel.image_check
    qtbot.waitUntil(warning.isVisible)
    assert warning.text() == ("This model expects modality CR or DX, at least 224 rows, at least 224 columns; "
                              "this image has modality CT, 128 rows, 128 columns")
    assert demo_ui.panel.explain_button.isEnabled(), "a warning, not a refusal"
    window.open_paths([str(DEMO_STUDY)])
    qtbot.waitUntil(lambda: not warning.isVisible())
    assert warning.text() == ""


def test_reset_to_defaults_puts_back_every_parameter_and_the_display(qtbot, demo_ui):
    panel = demo_ui.panel
    panel.method.setCurrentIndex(panel.method.findData("ig"))
    method, editors = METHODS["ig"], panel.forms.currentWidget().editors
    editors["steps"].setValue(7)
    editors["baseline"].setCurrentText("blur")
    editors["rule"].setCurrentIndex((editors["rule"].currentIndex() + 1) % editors["rule"].count())
    panel.sign_choice.setCurrentIndex(panel.sign_choice.findData("signed"))
    panel.smoothing.setValue(0.0)
    assert panel.parameters() != method.params() and panel.display() != method.display
    qtbot.mouseClick(panel.reset_button, Qt.MouseButton.LeftButton)
    defaults = method.params()
    assert editors["steps"].value() == defaults.steps and editors["baseline"].currentText() == str(defaults.baseline)
    assert editors["rule"].currentText() == defaults.rule
    assert panel.parameters() == defaults and [f.name for f in fields(defaults)] == list(editors)
    assert panel.display() == method.display and panel.smoothing.text() == "2.0"


def test_the_trust_panel_calls_an_insertion_curve_from_a_sure_baseline_meaningless(qtbot, window, tmp_path):
    # Offset 6: the blank baseline alone scores 0.998, as high as the image itself.
    ui = ExplanationUi(window, export_model(RegionDetector(BOX, offset=6.0), card_for(48, 64), tmp_path / "model"))
    ui.wait_until_ready()
    try:
        window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
        editors = ui.panel.forms.currentWidget().editors
        editors["window"].setValue(8)
        editors["baseline"].setCurrentText("0.0")  # the blank image this model is sure of
        with qtbot.waitSignal(ui.trust_finished, timeout=60000):
            ui.explain()
        table = ui.trust.figures.text()
        assert "The insertion curve means nothing here: with every pixel removed the finding probability is " \
               "already 1.00" in ui.trust.verdict.text()
        assert "<i>meaningless on this image</i>" in table
        assert "higher is better" in table, "AOPC keeps its hint"
        assert table.count("higher is better") == 1
    finally:
        ui.shutdown()
