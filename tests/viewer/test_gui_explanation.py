"""Explaining in the viewer: the overlay lands on the right pixels, follows the image, never goes stale."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.dicom_factory import write_ct_series, write_radiograph
from tests.model_factory import SmallCnn, card_for, export_model
from tests.viewer.conftest import BOX
from viewer.explanation_ui import ExplanationUi


def explain_and_wait(qtbot, ui):
    with qtbot.waitSignal(ui.explanation_finished, timeout=30000) as finished:
        qtbot.mouseClick(ui.panel.explain_button, Qt.MouseButton.LeftButton)
    return finished.args[0]


def test_the_finished_overlay_covers_what_the_model_looks_at(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=120, cols=200)])
    ui.panel.forms.currentWidget().editors["window"].setValue(4)
    ui.panel.forms.currentWidget().editors["stride"].setValue(2)
    final = explain_and_wait(qtbot, ui)
    heat = window.view.overlay.image
    assert heat.shape == (48, 64), "the overlay is the model's grid, stretched over the image"
    overlay_box = window.view.overlay.mapRectToParent(window.view.overlay.boundingRect())
    assert overlay_box == window.view.image_rect()
    rows, columns = np.unravel_index(np.nanargmax(heat), heat.shape)
    assert BOX[0] <= rows < BOX[1] and BOX[2] <= columns < BOX[3]
    assert window.view.overlay.isVisible()
    assert ui.levels == (0.0, pytest.approx(float(np.nanmax(final.heatmap))))
    assert ui.panel.colour_bar.high.text() != "" and ui.panel.progress.value() == 1000
    assert "probability" in ui.panel.status.text()


def test_h_hides_the_overlay_and_the_checkbox_follows(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=64, cols=64)])
    explain_and_wait(qtbot, ui)
    window.view.toggle_overlay()
    assert not window.view.overlay.isVisible() and not ui.panel.show_heat.isChecked()
    ui.panel.show_heat.setChecked(True)
    assert window.view.overlay.isVisible()


def test_opacity_and_threshold_change_only_the_colour_table(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=64, cols=64)])
    explain_and_wait(qtbot, ui)
    heat = window.view.overlay.image
    ui.panel.opacity.setValue(30)
    ui.panel.threshold.setValue(50)
    lut = window.view.overlay.lut
    assert lut[255, 3] == round(255 * 0.3) and lut[100, 3] == 0 and lut[200, 3] > 0
    np.testing.assert_array_equal(window.view.overlay.image, heat)


def test_moving_to_another_image_cancels_and_no_stale_map_appears(qtbot, window, tmp_path):
    folder = tmp_path / "ct"
    write_ct_series(folder, 3, rows=64, cols=64)
    ui = ExplanationUi(window, export_model(SmallCnn(), card_for(64, 64), tmp_path / "slow"))
    ui.wait_until_ready()
    try:
        window.open_paths([folder])
        finished = []
        ui.explanation_finished.connect(finished.append)
        editors = ui.panel.forms.currentWidget().editors
        editors["window"].setValue(2)
        editors["stride"].setValue(1)
        with qtbot.waitSignal(ui.controller.progressed, timeout=30000):
            ui.explain()
        window.step(1)
        qtbot.waitUntil(lambda: not ui.controller.busy, timeout=10000)
        qtbot.wait(200)
        assert finished == []
        assert window.view.overlay.image is None, "the old image's map never reaches the new image"
        assert ui.panel.explain_button.isEnabled() and not ui.panel.cancel_button.isEnabled()
    finally:
        ui.shutdown()


def test_a_bad_model_file_keeps_the_current_model(qtbot, window, ui, tmp_path):
    bogus = tmp_path / "bogus.pt2"
    bogus.write_bytes(b"not an archive")
    bogus.with_suffix(".json").write_text('{"labels": ["a", "b"]}')
    current = ui.model
    assert not ui.open_model(bogus)
    assert ui.model is current
    assert ui.panel.status.text().startswith("Model not loaded:") and "\n" not in ui.panel.status.text()


def test_target_list_shows_the_models_probabilities(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=64, cols=64)])
    qtbot.waitUntil(lambda: "(" in ui.panel.target.itemText(1), timeout=5000)
    values = [float(ui.panel.target.itemText(i).split("(")[1].rstrip(")")) for i in range(2)]
    assert sum(values) == pytest.approx(1.0, abs=0.011)


def test_trust_figures_follow_the_finished_map(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    with qtbot.waitSignal(ui.trust_finished, timeout=30000) as trusted:
        qtbot.mouseClick(ui.panel.explain_button, Qt.MouseButton.LeftButton)
    figures = trusted.args[0].figures
    assert figures["aopc"] > figures["aopc_random"], "occlusion of a box detector beats chance"
    assert ui.trust.verdict.text().startswith("<b>Removing the top 10% of highlighted pixels changes the finding")
    xs, ys = ui.trust.deletion.getData()
    assert len(xs) == 21 and ys[0] == pytest.approx(figures["score"])
    assert "Deletion area" in ui.trust.figures.text()
    assert ui.trust.sanity_button.isEnabled()
    with qtbot.waitSignal(ui.controller.finished, timeout=30000, check_params_cb=lambda kind, _: kind == "sanity"):
        ui.trust.sanity_button.click()
    assert "Sanity check" in ui.trust.sanity.text()


def test_another_image_clears_the_trust_figures(qtbot, window, ui, tmp_path):
    folder = tmp_path / "ct"
    write_ct_series(folder, 2, rows=48, cols=64)
    window.open_paths([folder])
    with qtbot.waitSignal(ui.trust_finished, timeout=30000):
        ui.explain()
    window.step(1)
    assert ui.trust.figures.text() == "" and not ui.trust.sanity_button.isEnabled()
    assert ui.current is None and window.view.overlay.image is None


def test_lime_superpixels_are_outlined_on_request(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("lime"))
    ui.panel.forms.currentWidget().editors["samples"].setValue(120)
    explain_and_wait(qtbot, ui)
    assert ui.segment_outlines.image is None
    ui.panel.show_outlines.setChecked(True)
    outline = ui.segment_outlines.image
    assert outline.shape == (96, 128, 4) and 0.02 < (outline[..., 3] > 0).mean() < 0.5
    ui.panel.show_outlines.setChecked(False)
    assert ui.segment_outlines.image is None


@pytest.mark.parametrize("method, options", [
    ("occlusion", {"window": 8, "stride": 4}), ("ig", {"steps": 8}), ("lime", {"samples": 80}),
    ("perturbation", {"iterations": 20}),
])
def test_every_method_runs_from_the_panel(qtbot, window, ui, tmp_path, method, options):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    ui.panel.method.setCurrentIndex(ui.panel.method.findData(method))
    editors = ui.panel.forms.currentWidget().editors
    for name, value in options.items():
        editors[name].setValue(value)
    final = explain_and_wait(qtbot, ui)
    assert final.final and final.attribution.shape == (1, 48, 64)
    assert ui.panel.method_name() == method and window.view.overlay.image.shape == (48, 64)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_grad_cam_runs_from_the_panel_on_the_layer_typed_in(qtbot, window, ui, tmp_path, method):
    assert ui.open_model(export_model(SmallCnn(), card_for(48, 64), tmp_path / "cnn"))
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    ui.panel.method.setCurrentIndex(ui.panel.method.findData(method))
    ui.panel.forms.currentWidget().editors["layer"].setCurrentText("relu")
    final = explain_and_wait(qtbot, ui)
    assert final.notes[0].startswith("layer relu (features.1): 8 feature maps of 24 x 32")
    assert window.view.overlay.image.shape == (48, 64)


def test_grad_cam_refuses_a_model_without_feature_maps_in_one_line(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("gradcam"))
    with qtbot.waitSignal(ui.controller.failed, timeout=30000):
        qtbot.mouseClick(ui.panel.explain_button, Qt.MouseButton.LeftButton)
    status = ui.panel.status.text()
    assert "Grad-CAM needs a convolutional feature map" in status and "choose another method" in status
    assert "\n" not in status and ui.panel.explain_button.isEnabled()


def test_parameter_editors_start_at_each_methods_defaults(ui):
    from dataclasses import asdict

    from explain.methods import METHODS

    for index, method in enumerate(METHODS.values()):
        ui.panel.method.setCurrentIndex(index)
        assert ui.panel.parameters() == method.params(), method.name
        assert set(asdict(ui.panel.parameters())) == set(ui.panel.forms.currentWidget().editors)


def test_fast_mode_is_labelled_and_the_trust_figures_use_the_exact_model(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    ui.panel.fast.setChecked(True)
    with qtbot.waitSignal(ui.trust_finished, timeout=30000):
        qtbot.mouseClick(ui.panel.explain_button, Qt.MouseButton.LeftButton)
    assert ui.current.model.fast and not ui.model.fast, "fast mode belongs to the one explanation"
    assert "fast mode (bfloat16)" in window.statusBar().currentMessage() + ui.panel.status.text()
    assert "fast mode" in ui.panel.colour_bar.unit.text()
    ui.panel.fast.setChecked(False)
    explain_and_wait(qtbot, ui)
    assert "fast mode" not in ui.panel.status.text() and "fast mode" not in ui.panel.colour_bar.unit.text()


def test_the_model_never_runs_on_the_gui_thread_and_pending_scores_say_so(qtbot, window, ui, tmp_path, monkeypatch):
    import threading

    from explain.model_file import LoadedModel

    threads = []
    original = LoadedModel.probabilities

    def recording(self, *args, **kwargs):
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LoadedModel, "probabilities", recording)
    folder = tmp_path / "ct"
    write_ct_series(folder, 4, rows=48, cols=64)
    window.open_paths([folder])
    for _ in range(3):
        window.step(1)
        assert ui.panel.target.itemText(1).endswith("scoring…"), "no label shows the last image's score"
    qtbot.waitUntil(lambda: "(" in ui.panel.target.itemText(1) and "scoring" not in ui.panel.target.itemText(1),
                    timeout=10000)
    with qtbot.waitSignal(ui.trust_finished, timeout=30000):
        ui.explain()
    assert threads and threading.main_thread() not in threads


def test_the_panels_trust_options_reach_the_session(qtbot, window, ui, tmp_path):
    from explain.session import ExplanationRequest, finish

    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    ui.panel.removal.setCurrentIndex(ui.panel.removal.findData("blur"))
    with qtbot.waitSignal(ui.trust_finished, timeout=30000) as trusted:
        ui.explain()
    request = ui.current.request
    assert request.settings.removal == "blur"
    expected = finish(ExplanationRequest(request.settings, request.model_input))
    assert trusted.args[0].figures == expected.trust, "the viewer shows what the command line would print"
    assert ui.exports.explained.outcome.trust == expected.trust

    ui.panel.trust_figures.setChecked(False)
    assert not ui.panel.removal.isEnabled()
    trusted_again = []
    ui.trust_finished.connect(trusted_again.append)
    with qtbot.waitSignal(ui.controller.idle, timeout=30000):
        ui.explain()
    assert trusted_again == [] and ui.outcome.final is not None and ui.outcome.trust == {}
    assert ui.exports.actions["parametric_map"].isEnabled(), "a map without figures can still be exported"


def test_only_a_method_with_regions_offers_their_outlines(ui):
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("occlusion"))
    assert not ui.panel.show_outlines.isEnabled()
    ui.panel.method.setCurrentIndex(ui.panel.method.findData("lime"))
    assert ui.panel.show_outlines.isEnabled() and ui.panel.show_outlines.text() == "Show superpixels"


def test_a_blank_map_says_why_on_screen(qtbot, window, tmp_path):
    from tests.model_factory import Indifferent

    ui = ExplanationUi(window, export_model(Indifferent(), card_for(48, 64), tmp_path / "indifferent"))
    ui.wait_until_ready()
    try:
        window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
        ui.panel.method.setCurrentIndex(ui.panel.method.findData("perturbation"))
        ui.panel.forms.currentWidget().editors["iterations"].setValue(20)
        with qtbot.waitSignal(ui.explanation_finished, timeout=30000) as finished:
            ui.explain()
        assert finished.args[0].notes and np.nanmax(finished.args[0].heatmap) == 0
        assert "No region found" in ui.panel.status.text() and "not an explanation" in ui.panel.status.text()
    finally:
        ui.shutdown()
