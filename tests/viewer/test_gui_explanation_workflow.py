"""What a reader sees in the explanation workflow: heat on screen, the wheel, fixed buttons, status lines, docks."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QScrollArea

from tests.dicom_factory import write_ct_series, write_radiograph
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model
from tests.viewer.conftest import BOX, coloured_fraction, turn_wheel
from viewer.explanation_ui import ExplanationUi

METHOD_OPTIONS = {
    "occlusion": {"window": 8, "stride": 4}, "ig": {"steps": 8}, "lime": {"samples": 80},
    "perturbation": {"iterations": 20}, "gradcam": {}, "gradcampp": {},
}


@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_every_methods_final_overlay_shows_heat_on_screen(qtbot, window, ui, tmp_path, method):
    from explain.methods import METHODS

    assert set(METHOD_OPTIONS) == set(METHODS), "every registered method is tested"
    if method.startswith("gradcam"):
        assert ui.open_model(export_model(SmallCnn(), card_for(48, 64), tmp_path / "cnn"))
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    assert coloured_fraction(window) == 0.0, "a radiograph alone is grey"
    ui.panel.method.setCurrentIndex(ui.panel.method.findData(method))
    editors = ui.panel.forms.currentWidget().editors
    for name, value in METHOD_OPTIONS[method].items():
        editors[name].setValue(value)
    if method.startswith("gradcam"):
        editors["layer"].setCurrentText("relu")
    with qtbot.waitSignal(ui.explanation_finished, timeout=60000) as finished:
        ui.explain()
    final = finished.args[0]
    assert np.nanmax(final.heatmap) > 0
    assert ui.levels[1] == pytest.approx(float(np.nanmax(np.abs(ui.shown_heat)))), "the scale follows the map as drawn"
    qtbot.wait(50)
    assert coloured_fraction(window) > 0.005, f"{method}: heat is visible on the image"


def test_all_nan_updates_do_not_fix_the_scale_at_one(qtbot, window, ui, tmp_path):
    from dataclasses import replace

    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    with qtbot.waitSignal(ui.explanation_finished, timeout=30000) as finished:
        ui.explain()
    final = finished.args[0]
    ui.levels = ui.known_top = None
    blank = np.full_like(final.heatmap, np.nan)
    ui._show(replace(final, heatmap=blank, final=False))
    small = final.heatmap * (0.09 / np.nanmax(final.heatmap))
    ui._show(replace(final, heatmap=small, final=False))
    assert ui.levels[1] == pytest.approx(0.09)
    assert ui.panel.colour_bar.high.text() == "0.09"
    qtbot.wait(50)
    assert coloured_fraction(window) > 0.005, "a small map is visible once its values arrive"


def test_the_wheel_over_an_unfocused_parameter_scrolls_the_panel_instead(qtbot, window, ui):
    window.resize(1200, 400)
    ui.dock.show()
    ui.dock.raise_()
    qtbot.wait(50)
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("occlusion"))
    editor = ui.panel.forms.currentWidget().editors["window"]
    before = editor.value()
    area = ui.dock.widget().findChild(QScrollArea)
    turn_wheel(editor, -1, QPointF(5, 5))
    turn_wheel(ui.panel.method, -1, QPointF(5, 5))
    assert editor.value() == before and ui.panel.method.currentData() == "occlusion"
    assert area.verticalScrollBar().value() > 0, "the panel scrolled"
    editor.setFocus()
    qtbot.waitUntil(editor.hasFocus)
    turn_wheel(editor, 1, QPointF(5, 5))
    assert editor.value() != before, "a focused box still takes the wheel"


def test_every_parameter_says_what_it_does_on_hover(qtbot, window, ui):
    from dataclasses import fields

    forms = [ui.panel.forms.widget(index) for index in range(ui.panel.forms.count())]
    assert {form.method.name for form in forms} == {data for data in map(ui.panel.method.itemData,
                                                                           range(ui.panel.method.count()))}
    for form in forms:
        for field in fields(form.method.params):
            tip = form.editors[field.name].toolTip()
            assert tip == form.method.hints[field.name] and len(tip.split()) >= 4, (form.method.name, field.name)
    lime = next(form for form in forms if form.method.name == "lime")
    assert "samples 0" in lime.editors["precision"].toolTip(), "it says when it applies"


def test_explain_and_cancel_stay_put_and_have_keys(qtbot, window, ui, tmp_path):
    from viewer import bindings

    area = ui.dock.widget().findChild(QScrollArea)
    assert not area.isAncestorOf(ui.panel.explain_button) and not area.isAncestorOf(ui.panel.cancel_button)
    window.resize(1200, 400)
    qtbot.wait(50)
    place = ui.panel.explain_button.mapTo(window, ui.panel.explain_button.rect().topLeft())
    area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    assert ui.panel.explain_button.mapTo(window, ui.panel.explain_button.rect().topLeft()) == place
    assert ui.panel.explain_button.isVisible() and ui.panel.cancel_button.isVisible()
    rows = dict(bindings.table())
    assert "E" in rows and "Esc" in rows
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    with qtbot.waitSignal(ui.explanation_finished, timeout=30000):
        qtbot.keyClick(window.view, Qt.Key.Key_E)
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("perturbation"))
    ui.panel.forms.currentWidget().editors["iterations"].setValue(2000)
    with qtbot.waitSignal(ui.controller.progressed, timeout=30000):
        ui.explain()
    qtbot.keyClick(window.view, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not ui.controller.busy, timeout=10000)
    assert ui.panel.status.text() == "Cancelled" and ui.panel.explain_button.isEnabled()


def test_moving_to_another_image_clears_a_running_status(qtbot, window, ui, tmp_path):
    folder = tmp_path / "ct"
    write_ct_series(folder, 2, rows=48, cols=64)
    window.open_paths([folder])
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("perturbation"))
    ui.panel.forms.currentWidget().editors["iterations"].setValue(2000)
    with qtbot.waitSignal(ui.controller.progressed, timeout=30000):
        ui.explain()
    assert "running" in ui.panel.status.text()
    window.step(1)
    assert "running" not in ui.panel.status.text() and ui.panel.progress.text() in ("", "0%")
    qtbot.waitUntil(lambda: not ui.controller.busy, timeout=10000)
    ui.panel.set_status("a colour image cannot be explained by this model")
    window.step(-1)
    assert ui.panel.status.text() == ""


def test_every_dock_is_in_the_view_menu_and_reset_layout_brings_them_back(qtbot, window, ui):
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    texts = [a.text() for a in view_menu.actions()]
    for title in ("Series", "Tags", "Explanation", "Trust"):
        assert title in texts
    assert "Reset &layout" in texts
    ui.dock.close()
    ui.trust_dock.setFloating(True)
    assert not ui.dock.isVisible()
    window.reset_layout()
    qtbot.wait(20)
    assert not ui.trust_dock.isFloating()
    assert window.dockWidgetArea(ui.dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert ui.dock.isVisible() and not ui.dock.visibleRegion().isEmpty(), "the Explanation tab is on top"
    assert ui.dock in window.tabifiedDockWidgets(window.tags_dock)


def test_a_missing_card_is_named_in_the_panel_and_the_terminal(qtbot, window, tmp_path, capsys):
    from viewer.app import report_model_error

    model = export_model(RegionDetector(BOX), card_for(48, 64), tmp_path / "model")
    model.with_suffix(".json").unlink()
    ui = ExplanationUi(window, model)
    ui.wait_until_ready()
    try:
        report_model_error(ui)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "model.json" in err
        assert "model.json" in ui.panel.model_label.text() and "model.json" in ui.panel.status.text()
    finally:
        ui.shutdown()
